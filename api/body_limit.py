"""No request body larger than its route needs is read: a 30 MB customer name is refused at once.

Every body but a usage push (``POST /v1/events`` reads up to 8 MiB itself, as it streams) is a
catalog entry, a key, a token or nothing: ``MAX_BODY_BYTES`` is far above any of them. A body
is read here up to the limit (a declared length beyond it is refused before anything is read)
and handed on whole; past the limit the answer is 413, and nothing of it reaches a route.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem

MAX_BODY_BYTES = 1024 * 1024
READS_ITS_OWN = frozenset({"/v1/events"})


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in READS_ITS_OWN:
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self._limit:
            await self._refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self._app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self._limit:
                await self._refuse(scope, receive, send)
                return
        body = b"".join(chunks)
        await self._app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = problem(413, "payload-too-large", f"a request body here may hold at most {self._limit} bytes")
        await answer(scope, receive, send)


def _replay(messages: list[Message], then: Receive) -> Receive:
    """A ``receive`` that hands out ``messages``, then the server's own (which waits for the
    client to go away: a streamed answer listens for that)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive
