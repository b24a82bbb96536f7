"""``POST /v1/events``: services push usage as CloudEvents (one object or a batch array), or VM
samples as an Arrow stream (content type ``application/vnd.apache.arrow.stream``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.access.guard import EventPusher, media_type_of
from api.errors import problem
from api.models import EventsOutcome, RejectedEvent
from api.services import services_of
from schemas import columnar

router = APIRouter()
MAX_BODY_BYTES = 8 * 1024 * 1024
REPORTED_REJECTIONS = 100
"""A batch of 100,000 refused events answers with the first 100 reasons and the count."""


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsOutcome,
    responses={
        202: {"description": "Per-event outcome; accepted events are on disk and kept until stored"},
        400: {"description": "The body is not JSON, or not an Arrow stream of schema vm.sample/1"},
        413: {"description": "The body is larger than 8 MiB"},
        422: {"description": "No event of the batch was valid", "model": EventsOutcome},
        503: {"description": "The broker is away and the intake's spool is full; nothing was accepted, retry"},
    },
)
async def post_events(request: Request, caller: EventPusher) -> JSONResponse:
    """Events of a source (or customer) the key is not bound to are refused, each with the reason."""
    body = await _body_up_to(request, MAX_BODY_BYTES)
    if body is None:
        return problem(413, "payload-too-large", f"the body may hold at most {MAX_BODY_BYTES} bytes")
    intake = services_of(request).intake
    # publishing waits for the broker's acknowledgement: keep that off the event loop
    if media_type_of(request) == columnar.CONTENT_TYPE:
        accepted, rejected = await run_in_threadpool(intake.submit_rows, body, caller.principal.reports_for)
    else:
        events, rejected = await run_in_threadpool(intake.submit, body, caller.principal.reports_for)
        accepted = [event.id for event in events]
    outcome = EventsOutcome(
        accepted=accepted,
        rejected=[RejectedEvent(index=r.index, id=r.event_id, reason=r.reason) for r in rejected[:REPORTED_REJECTIONS]],
        rejected_count=len(rejected),
    )
    if not accepted:
        return problem(422, "no-event-accepted", "no event of the batch was accepted", **outcome.model_dump())
    return JSONResponse(outcome.model_dump(), status_code=202)


async def _body_up_to(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit``: a declared length says so
    before anything is read, and a body sent in chunks is not read past the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
