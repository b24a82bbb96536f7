"""The API serves no SQL: what reached ClickHouse's HTTP interface at ``/clickhouse/`` finds nothing.

That interface (removed) could not be made safe on the embedded engine: client-side ``param_*``
substitution let a reader key run any SQL, ``IN <table>`` reached other tables, errors named
tables, table functions read files and URLs. Each of those attacks is sent here the ways the
interface took them (query string, POST body, ``param_*``, Basic auth, ``?password=``,
``X-ClickHouse-Key``), with a reader key and with the admin key: each is a 404 that names no
table and no engine, and nothing is written. Credentials travel in the Authorization header
only, on every route of the OpenAPI document.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterline.brokers import Broker
from storage.tables import (
    API_KEYS,
    AUDIT_LOG,
    CATALOG_ENTRIES,
    RATED_USAGE,
    RAW_MESSAGES,
    READ_TOKENS,
    STORED_MESSAGES,
    USAGE_BY_DAY,
    USAGE_BY_HOUR,
    USAGE_EVENTS,
)
from tests.integration.harness import System

pytestmark = pytest.mark.integration

TABLES = [USAGE_BY_DAY, USAGE_BY_HOUR, USAGE_EVENTS, RATED_USAGE, RAW_MESSAGES, API_KEYS, READ_TOKENS]
TABLES += [AUDIT_LOG, STORED_MESSAGES, CATALOG_ENTRIES, "system.", "meterline."]
ENGINE_WORDS = ["clickhouse", "chdb", "db::exception", "code: ", "sqlglot", "syntax error", "exception", "traceback"]
OUTFILE = "leaked.csv"


@dataclass(frozen=True)
class Attempt:
    """One request as the removed interface took it; ``{key}`` and ``{outfile}`` are filled in."""

    name: str
    query: str = ""
    body: str = ""
    params: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    path: str = "/clickhouse/"


QUERIES = {
    "a rollup": "SELECT count() FROM meterline.usage_by_day",
    "the key table": "SELECT * FROM meterline.api_keys",
    "IN a table": "SELECT 1 FROM usage_by_day WHERE 1 IN api_keys",
    "IN a qualified table": "SELECT customer_id FROM meterline.usage_by_hour WHERE key_hash IN meterline.api_keys",
    "file()": "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "file() as a function": "SELECT file('/etc/passwd')",
    "url()": "SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')",
    "INTO OUTFILE": "SELECT * FROM meterline.api_keys INTO OUTFILE '{outfile}'",
    "SETTINGS": "SELECT count() FROM meterline.usage_by_hour SETTINGS readonly = 0, max_execution_time = 0",
    "SETTINGS in a subquery": "SELECT * FROM (SELECT * FROM meterline.usage_by_day SETTINGS readonly = 0)",
    "system.tables": "SELECT database, name FROM system.tables",
    "a subquery": "SELECT * FROM (SELECT key_hash FROM meterline.api_keys)",
    "a scalar subquery": "SELECT (SELECT any(key_hash) FROM meterline.api_keys) FROM meterline.usage_by_day",
    "a CTE": "WITH k AS (SELECT * FROM meterline.api_keys) SELECT * FROM k",
    "a JOIN": "SELECT * FROM meterline.usage_by_day AS d JOIN meterline.api_keys AS k ON 1 = 1",
    "a UNION": "SELECT customer_id FROM meterline.usage_by_day UNION ALL SELECT key_hash FROM meterline.api_keys",
    "ARRAY JOIN": "SELECT k FROM meterline.usage_by_day ARRAY JOIN [1, 2] AS k",
    "dictGet": "SELECT dictGet('meterline.keys', 'key_hash', toUInt64(1))",
    "FORMAT": "SELECT * FROM meterline.api_keys FORMAT JSONEachRow",
    "FORMAT Native": "SELECT 1 FORMAT Native",
    "a block comment": "SELECT 1 /* FROM meterline.usage_by_day */ FROM meterline.api_keys",
    "a line comment": "SELECT 1 -- FROM meterline.usage_by_day\nFROM meterline.api_keys",
    "two statements": "SELECT 1; DROP TABLE meterline.usage_by_day",
    "an INSERT": "INSERT INTO meterline.api_keys SELECT * FROM meterline.api_keys",
    "an ALTER": "ALTER TABLE meterline.api_keys DELETE WHERE 1",
    "a user": "CREATE USER grafana IDENTIFIED BY 'x'",
    "a look-alike SELECT": "\u0405ELECT * FROM meterline.api_keys",
    "a look-alike underscore": "SELECT * FROM meterline.api\uff3fkeys",
    "sleep": "SELECT sleepEachRow(3) FROM meterline.usage_by_hour",
}
ATTEMPTS = [Attempt(f"GET {name}", query=text) for name, text in QUERIES.items()]
ATTEMPTS += [Attempt(f"POST {name}", body=text, method="POST") for name, text in QUERIES.items()]
ATTEMPTS += [
    Attempt(
        "param_ closing a quote",
        query="SELECT count() FROM meterline.usage_by_hour WHERE customer_id = {c:String}",
        params={"param_c": "x' UNION ALL SELECT key_hash FROM meterline.api_keys --"},
    ),
    Attempt(
        "param_ substituted by the client",
        query="SELECT count() FROM meterline.usage_by_hour WHERE customer_id = %(p)s",
        params={"param_p": "'' UNION ALL SELECT key_hash FROM meterline.api_keys"},
    ),
    Attempt("another database", query="SELECT 1", params={"database": "system"}),
    Attempt("a default format", query="SELECT * FROM meterline.api_keys", params={"default_format": "JSON"}),
    Attempt("?password=", query="SELECT 1", params={"user": "grafana", "password": "{key}"}),
    Attempt("the ping", path="/clickhouse/ping"),
    Attempt("the play page", path="/clickhouse/play"),
    Attempt("no trailing slash", query="SELECT 1", path="/clickhouse"),
    Attempt("another case", query="SELECT 1", path="/ClickHouse/"),
    Attempt("a look-alike path", query="SELECT 1", path="/\u0441lickhouse/"),
    Attempt("the root", query="SELECT * FROM meterline.api_keys", path="/"),
]
CREDENTIALS = ["bearer", "basic", "x-clickhouse-key"]


@dataclass(frozen=True)
class Running:
    system: System
    keys: dict[str, str]


@pytest.fixture(scope="module")
def running(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The API alone, with its admin key and a reader key."""
    system = System(broker, tmp_path_factory.mktemp("sql"))
    try:
        system.start_api()
        reader = system.http.post("/v1/keys", json={"name": "grafana", "role": "reader"}).json()["key"]
        yield Running(system, {"admin": system.env["METERLINE_ADMIN_KEY"], "reader": reader})
    finally:
        system.stop_all()


def send(system: System, attempt: Attempt, key: str, credential: str) -> httpx.Response:
    """``attempt`` with ``key`` presented one of the ways ClickHouse clients present a password."""
    headers = {"Content-Type": "text/plain"}
    if credential == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    elif credential == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"grafana:{key}".encode()).decode()
    else:
        headers["X-ClickHouse-Key"] = key
        headers["X-ClickHouse-User"] = "grafana"
    outfile = str(system.data_dir / OUTFILE)
    params = {name: value.replace("{key}", key) for name, value in attempt.params.items()}
    if attempt.query:
        params["query"] = attempt.query.replace("{outfile}", outfile)
    body = attempt.body.replace("{outfile}", outfile).encode()
    with httpx.Client(base_url=system.url, timeout=30) as client:
        return client.request(attempt.method, attempt.path, params=params, content=body or None, headers=headers)


def what_is_stored(system: System) -> dict[str, Any]:
    """The keys, the audit log and the costs, as the admin reads them."""
    keys = sorted(key["key_id"] for key in system.http.get("/v1/keys").json())
    audit = system.http.get("/v1/audit", params={"from": "2020-01-01T00:00:00Z"}).json()
    costs = system.http.get("/v1/costs", params={"from": "2020-01-01T00:00:00Z", "granularity": "month"}).json()
    return {"keys": keys, "audit": len(audit), "costs": costs["totals"]}


@pytest.mark.parametrize("role", ["reader", "admin"])
def test_every_sql_attempt_finds_no_route_names_nothing_and_writes_nothing(running: Running, role: str):
    system = running.system
    before = what_is_stored(system)
    for attempt in ATTEMPTS:
        for credential in CREDENTIALS:
            answer = send(system, attempt, running.keys[role], credential)
            where = f"{attempt.name} ({credential})"
            assert answer.status_code == 404, (where, answer.status_code, answer.text)
            text = answer.text.lower()
            named = [word for word in [*TABLES, *ENGINE_WORDS] if word in text]
            assert not named, (where, named, answer.text)
            assert not [h for h in answer.headers if h.lower().startswith("x-clickhouse")], where
    assert what_is_stored(system) == before
    assert not (system.data_dir / OUTFILE).exists()


def test_a_credential_counts_only_in_the_authorization_header(running: Running):
    """The admin key in the query string, a ClickHouse header or Basic auth is no credential."""
    system, key = running.system, running.keys["admin"]
    basic = "Basic " + base64.b64encode(f"grafana:{key}".encode()).decode()
    with httpx.Client(base_url=system.url, timeout=30) as client:
        for params, headers in (
            ({"password": key}, {}),
            ({"key": key}, {}),
            ({"token": key}, {}),
            ({}, {"X-ClickHouse-Key": key}),
            ({}, {"X-Api-Key": key}),
            ({}, {"Authorization": basic}),
        ):
            answer = client.get("/v1/keys", params=params, headers=headers)
            assert answer.status_code == 401, (params, headers, answer.text)
        assert client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 200


CREDENTIAL_NAMES = re.compile(
    r"(pass(word|wd)?|secret|(access_|bearer_)?token|api[-_]?key|key|auth(orization)?|credentials?|user(name)?)",
    re.IGNORECASE,
)
"""Query parameters that would carry a credential (``key_id``, ``token_id`` name one, publicly)."""


def test_no_route_of_the_openapi_document_takes_a_credential_elsewhere_than_the_authorization_header(
    running: Running,
):
    document = running.system.http.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes and all(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values()), schemes
    for path, operations in document["paths"].items():
        assert "clickhouse" not in path.lower(), path
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                where = (method, path, parameter["in"], parameter["name"])
                # the one header a route reads besides Authorization names a request, not a caller
                assert parameter["in"] in ("path", "query") or parameter["name"] == "Idempotency-Key", where
                assert not (parameter["in"] == "query" and CREDENTIAL_NAMES.fullmatch(parameter["name"])), where


def test_the_sql_interface_is_gone_from_the_code():
    """No module serves it and no dependency parses SQL for it any more."""
    assert not Path("api/routes_clickhouse.py").exists()
    assert "sqlglot" not in Path("pyproject.toml").read_text()
