"""A read-only slice of ClickHouse's HTTP interface, for Grafana on the embedded default.

With chDB, the engine lives inside the API process and no ClickHouse server listens for
Grafana. This route speaks enough of ClickHouse's HTTP interface (``/clickhouse/?query=…`` or the
query as the POST body, ``default_format``, ``database``, ``param_<name>``, errors as
``Code: N. DB::Exception: …`` with ``X-ClickHouse-Exception-Code``) for the ClickHouse data source
and clients such as clickhouse-connect, so that the dashboards in ``grafana/`` run unchanged
against it or against a server.

It answers provider readers only (every tenant's usage) and runs one SELECT at a time that
reads only the usage rollups: the statement is parsed (sqlglot) and refused if it is anything
else, names another table or a table function, or calls a function that reaches outside the
engine. Each runs under time, row and memory limits.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Annotated

import sqlglot
from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from sqlglot import exp
from sqlglot.errors import SqlglotError
from starlette.concurrency import run_in_threadpool

from api.access.guard import Authenticator, Caller, Public, Requires
from api.access.principals import Permission
from meterline.exceptions import Forbidden
from schemas.clickhouse import USAGE_BY_DAY, USAGE_BY_HOUR
from sinks.clickhouse import ClientPool

router = APIRouter(prefix="/clickhouse", tags=["dashboards"])

READABLE = frozenset({USAGE_BY_HOUR, USAGE_BY_DAY})
SYSTEM_READABLE = frozenset({"one", "settings"})
"""What ClickHouse clients read of ``system`` when they connect: no tenant data."""
OUTSIDE = frozenset(
    {"file", "url", "s3", "hdfs", "remote", "remotesecure", "cluster", "input", "executable", "mysql", "postgresql"}
    | {"jdbc", "odbc", "sqlite", "mongodb", "redis", "azureblobstorage", "gcs", "joinget", "sleep", "sleepeachrow"}
    | {"dictget", "dictgetordefault", "dicthas", "filesystemavailable", "throwif", "generaterandom"}
)
LIMITS = {
    "max_execution_time": 10,
    "max_result_rows": 1_000_000,
    "result_overflow_mode": "throw",
    "max_memory_usage": 2 * 1024**3,
}
FORMATS = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNames": "text/tab-separated-values; charset=UTF-8",
    "TabSeparatedWithNamesAndTypes": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8",
    "CSVWithNames": "text/csv; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
    "Arrow": "application/octet-stream",
}
ACCESS_DENIED = 497
SYNTAX_ERROR = 62


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ReadsEveryTenantsUsage(Requires):
    """The route's policy (``read_operations``: provider readers), with a credential as
    ClickHouse clients send one: Basic auth whose password is the API key, ``X-ClickHouse-Key``,
    or a bearer token. A query changes nothing, so a body need not be JSON."""

    async def __call__(self, request: Request, credentials: None = None) -> Caller:  # type: ignore[override]
        authenticator: Authenticator = request.app.state.authenticator
        principal = authenticator.principal(_presented(request), datetime.now(UTC))
        caller = Caller(principal, principal.scope(request.app.state.catalog_admin.catalog))
        request.state.caller = caller
        authenticator.throttle(principal)
        if not principal.may(self.permission):
            raise Forbidden(f"a {principal.role.value} key may not read every tenant's usage")
        return caller


SqlReader = Annotated[Caller, Depends(ReadsEveryTenantsUsage(Permission.READ_OPERATIONS))]


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            _user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return password or None
    return request.headers.get("x-clickhouse-key") or request.query_params.get("password") or None


@router.get("/ping", response_class=PlainTextResponse, dependencies=[Depends(Public())])
def ping() -> str:
    """As ClickHouse's ``/ping``: whether the interface answers."""
    return "Ok.\n"


@router.api_route("/", methods=["GET", "POST"], response_class=Response)
async def query(request: Request, _caller: SqlReader) -> Response:
    """Run one read-only query over the usage rollups, answered in its format (TabSeparated by
    default, or ``default_format``, or the query's ``FORMAT``)."""
    params = request.query_params
    body = (await request.body()).decode(errors="replace") if request.method == "POST" else ""
    text = "\n".join(part for part in (params.get("query", ""), body) if part.strip())
    if not text.strip():
        return PlainTextResponse("Ok.\n")
    text, asked_format = _without_format(text)
    fmt = asked_format or params.get("default_format", "TabSeparated")
    database = request.app.state.settings.clickhouse_database
    try:
        if params.get("database", database) != database:
            raise Refused(ACCESS_DENIED, f"only database {database} is readable here")
        if fmt not in FORMATS:
            raise Refused(SYNTAX_ERROR, f"format {fmt} is not served here; one of {', '.join(FORMATS)}")
        check_readable(text, database)
    except Refused as refused:
        return _error(refused.code, str(refused), 403 if refused.code == ACCESS_DENIED else 400)
    parameters = {name.removeprefix("param_"): value for name, value in params.items() if name.startswith("param_")}
    pool: ClientPool = request.app.state.sql_pool
    try:
        answer = await run_in_threadpool(_run, pool, text, parameters, fmt)
    except Exception as error:  # the engine's own message, as ClickHouse answers it
        message = str(error)
        code = _code_of(message)
        return _error(code, message, 500)
    return Response(
        answer,
        media_type=FORMATS[fmt],
        headers={
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Query-Id": str(uuid.uuid4()),
            "X-ClickHouse-Server-Display-Name": "meterline",
        },
    )


def check_readable(text: str, database: str) -> None:
    """Refuse anything but one SELECT that reads the rollups (and harmless ``system`` tables)."""
    try:
        statements = [s for s in sqlglot.parse(text, read="clickhouse") if s is not None]
    except SqlglotError as error:
        raise Refused(SYNTAX_ERROR, f"the query could not be read: {str(error)[:300]}") from error
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise Refused(ACCESS_DENIED, "one SELECT at a time, and nothing else, is served here")
    tree = statements[0]
    if any(node.args.get("settings") for node in tree.walk()):
        raise Refused(ACCESS_DENIED, "a query's own SETTINGS are not served here: the limits are the interface's")
    named = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise Refused(ACCESS_DENIED, "table functions are not served here")
        db, name = table.db, table.name
        if (db in ("", database) and name in READABLE) or (db == "system" and name in SYSTEM_READABLE):
            continue
        if not db and name in named:
            continue
        raise Refused(ACCESS_DENIED, f"only {', '.join(sorted(READABLE))} of {database} are readable here, not {name}")
    for function in tree.find_all(exp.Func):
        name = (function.name if isinstance(function, exp.Anonymous) else function.sql_name()).lower()
        if name in OUTSIDE or name.startswith("dictget"):
            raise Refused(ACCESS_DENIED, f"function {name} is not served here")


def _run(pool: ClientPool, text: str, parameters: dict[str, str], fmt: str) -> bytes:
    with pool.client() as client:
        return client.raw_query(text, parameters=parameters or None, settings=LIMITS, fmt=fmt)


def _without_format(text: str) -> tuple[str, str | None]:
    """The query without a closing ``FORMAT name``, and the name: the engine is asked for it."""
    words = text.strip().rstrip(";").rsplit(None, 2)
    if len(words) == 3 and words[1].upper() == "FORMAT":
        return words[0], words[2]
    return text, None


def _code_of(message: str) -> int:
    marker = "Code: "
    if marker in message:
        digits = message.split(marker, 1)[1].split(".", 1)[0]
        if digits.isdigit():
            return int(digits)
    return 1000


def _error(code: int, message: str, status: int) -> Response:
    text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
    return PlainTextResponse(
        text.rstrip() + "\n", status_code=status, headers={"X-ClickHouse-Exception-Code": str(code)}
    )
