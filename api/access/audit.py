"""The append-only audit log: every state-changing call, who made it, when, and what changed.

A middleware writes one row per call that is not a read (nor a usage push, which the stored
messages record), before the answer starts: the caller, the route, the answer's status, and the
state before and after that the route noted with ``note_change``. Refused calls are logged too,
by whoever was known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access.guard import Caller
from storage.audit_log import encoded

NOT_AUDITED = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUDITED_PATHS = frozenset({"/v1/events"})
"""Usage pushed: the stored messages record it, one row per message."""


def note_change(request: Request, before: Any, after: Any) -> None:
    """What the call changed, for its audit row (JSON-able values; None when nothing existed)."""
    request.state.audit_change = (before, after)


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
        await run_in_threadpool(scope["app"].state.services.audit_log.append_after_change, row)


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
        "before": encoded(before),
        "after": encoded(after),
    }
