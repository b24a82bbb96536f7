"""The append-only audit log: every state-changing call, who made it, when, and what changed.

A middleware writes one row per call that is not a read (nor a usage push, which the stored
messages record), before the answer starts: the caller, the route, the answer's status, and the
state before and after that the route noted with ``note_change``. Refused calls are logged too,
by whoever was known.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access.guard import Caller
from storage.connection import as_utc
from storage.tables import AUDIT_LOG

log = logging.getLogger(__name__)
NOT_AUDITED = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUDITED_PATHS = frozenset({"/v1/events"})
"""Usage pushed: the stored messages record it, one row per message."""
_COLUMNS = ["at", "key_id", "role", "party_id", "method", "route", "path", "status", "before", "after"]


def note_change(request: Request, before: Any, after: Any) -> None:
    """What the call changed, for its audit row (JSON-able values; None when nothing existed)."""
    request.state.audit_change = (before, after)


class AuditLog:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{AUDIT_LOG}"
        self._lock = threading.Lock()

    def append(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._client.insert(self._table, [[row[name] for name in _COLUMNS]], column_names=_COLUMNS)

    def entries(self, start: datetime, end: datetime, key_id: str | None, limit: int) -> list[dict[str, Any]]:
        where = "at >= {start:DateTime64(6, 'UTC')} AND at < {end:DateTime64(6, 'UTC')}"
        if key_id is not None:
            where += " AND key_id = {key_id:String}"
        query = f"SELECT * FROM {self._table} WHERE {where} ORDER BY at LIMIT {{limit:UInt32}}"
        parameters = {"start": start, "end": end, "key_id": key_id, "limit": limit}
        with self._lock:
            rows = list(self._client.query(query, parameters=parameters).named_results())
        return [
            {**row, "at": as_utc(row["at"]), "before": _parsed(row["before"]), "after": _parsed(row["after"])}
            for row in rows
        ]


class AuditMiddleware:
    """Writes the audit row before the answer starts: a caller told its change was made can
    count on the row being there. Reads pass straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in NOT_AUDITED or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        written = False

        async def audited_send(message: Message) -> None:
            nonlocal written
            if message["type"] == "http.response.start" and not written:
                written = True
                await _write(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            if not written:  # no answer started: the error that stopped it is a 500
                await _write(scope, 500)


async def _write(scope: Scope, status: int) -> None:
    row = _row_of(scope, status)
    if row is not None:
        await run_in_threadpool(_append, scope["app"].state.audit_log, row)


def _row_of(scope: Scope, status: int) -> dict[str, Any] | None:
    state = scope.get("state", {})
    caller: Caller | None = state.get("caller")
    if caller is None:  # never authenticated: nothing was changed, and no one to name
        return None
    before, after = state.get("audit_change", (None, None))
    route = scope.get("route")
    return {
        "at": datetime.now(UTC),
        "key_id": caller.principal.key_id,
        "role": caller.principal.role.value,
        "party_id": caller.principal.party_id or "",
        "method": scope["method"],
        "route": getattr(route, "path", scope["path"]),
        "path": scope["path"],
        "status": status,
        "before": _json(before),
        "after": _json(after),
    }


def _append(audit_log: AuditLog, row: dict[str, Any]) -> None:
    try:
        audit_log.append(row)
    except Exception:  # the change is made; losing its row must be loud, not undo it
        log.exception("could not write the audit row of %s %s", row["method"], row["path"])


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, default=str, sort_keys=True)


def _parsed(text: str) -> Any:
    return json.loads(text) if text else None
