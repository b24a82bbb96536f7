"""The schema's history: numbered migrations in ``storage/migrations``, applied in order, once.

A migration is a frozen file, ``NNNN_what.sql``: statements ending in ``;`` at the end of a
line, ``--`` lines explaining them, and ``{database}`` where the database's name goes. A
released file is never edited and names every table itself (no live constant, no call of
today's code), so a store migrated long ago and a new one reach the same tables. A file that
fails part-way is run again from its start, so each is written to be safe to repeat (``IF NOT
EXISTS``, a ``TRUNCATE`` before a fill).

Processes starting at once take turns: the first creates a lock table, the others wait until it
is dropped (ClickHouse creates a table name once: the create is the lock's compare-and-set). A
lock left by a crashed process is taken over after ``STALE_LOCK``.

``python -m storage.schema`` writes the current schema (``SCHEMA.md``), as the migrations leave
it, from a store migrated from nothing.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from storage.tables import MIGRATION_LOCK, MIGRATIONS

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SCHEMA_DOC = Path(__file__).with_name("SCHEMA.md")
STALE_LOCK = timedelta(minutes=30)
"""Longer than any migration has taken: a lock this old was left by a process that died."""
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def migrations(database: str) -> list[Migration]:
    """Every migration, in order, its statements rendered for ``database`` (a validated name)."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: a migration is named NNNN_what.sql")
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        statements = tuple(part.strip() for part in re.split(r";\s*$", code, flags=re.MULTILINE) if part.strip())
        found.append(Migration(int(match[1]), match[2], tuple(s.replace("{database}", database) for s in statements)))
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations are numbered 1, 2, 3... without gaps: {versions}")
    return found


def migrate(client: Client, database: str, *, up_to: int | None = None) -> None:
    """Apply every migration not applied yet (or those up to ``up_to``, as an older release
    would have); safe at each start, from any number of processes at once."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS} "
        "(version UInt32, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    wanted = [m for m in migrations(database) if up_to is None or m.version <= up_to]
    if not _pending(client, database, wanted):
        return
    with migration_lock(client, database):
        for migration in _pending(client, database, wanted):  # read again: another may have applied them
            for statement in migration.statements:
                client.command(statement)
            client.command(f"INSERT INTO {database}.{MIGRATIONS} (version) VALUES ({migration.version:d})")


def applied_versions(client: Client, database: str) -> set[int]:
    applied = str(client.command(f"SELECT groupUniqArray(version) FROM {database}.{MIGRATIONS}"))
    return {int(v) for v in applied.strip("[]").split(",") if v.strip()}


def _pending(client: Client, database: str, wanted: list[Migration]) -> list[Migration]:
    done = applied_versions(client, database)
    return [migration for migration in wanted if migration.version not in done]


@contextmanager
def migration_lock(client: Client, database: str, wait: timedelta = STALE_LOCK * 2) -> Iterator[None]:
    """Held by one process of all that share the store; the others wait for it."""
    lock = f"{database}.{MIGRATION_LOCK}"
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            client.command(f"CREATE TABLE {lock} (holder String) ENGINE = Memory")
            break
        except DatabaseError as error:
            if "TABLE_ALREADY_EXISTS" not in str(error):
                raise
        if _lock_age_s(client, database) > STALE_LOCK.total_seconds():
            client.command(f"DROP TABLE IF EXISTS {lock} SYNC")
        elif time.monotonic() > deadline:
            raise TimeoutError(f"another process has held {lock} for over {wait}; drop it if that process is gone")
        else:
            time.sleep(0.2)
    try:
        yield
    finally:
        client.command(f"DROP TABLE IF EXISTS {lock} SYNC")


def _lock_age_s(client: Client, database: str) -> float:
    age = client.command(
        "SELECT now() - metadata_modification_time FROM system.tables "
        "WHERE database = {database:String} AND name = {name:String}",
        parameters={"database": database, "name": MIGRATION_LOCK},
    )
    return float(str(age)) if str(age).strip() else 0.0


def current_schema(client: Client, database: str) -> str:
    """The schema as Markdown: each table's and view's definition, in name order."""
    tables = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {database:String} "
        "AND name != {migrations:String} ORDER BY name",
        parameters={"database": database, "migrations": MIGRATIONS},
    ).result_rows
    parts = [
        "# Current schema",
        "",
        "Generated by `python -m storage.schema` from a store migrated from nothing (the migrations",
        "in `storage/migrations/` are the source; a test keeps this file equal to what they make).",
    ]
    for name, engine in tables:
        ddl = str(client.query(f"SHOW CREATE TABLE {database}.`{name}`").result_rows[0][0])
        parts += ["", f"## {name} ({engine})", "", "```sql", ddl.replace(f"{database}.", "").strip(), "```"]
    return "\n".join(parts) + "\n"


def main() -> None:
    import clickhouse_connect

    with tempfile.TemporaryDirectory() as directory:
        client = clickhouse_connect.get_client(dsn=f"chdb://{directory}")
        migrate(client, "meterline")
        SCHEMA_DOC.write_text(current_schema(client, "meterline"))
    print(SCHEMA_DOC)  # noqa: T201 - the command's answer


if __name__ == "__main__":
    main()
