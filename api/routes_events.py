"""``POST /v1/events``: services push usage as CloudEvents (one object or a batch array)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.models import EventsOutcome, RejectedEvent

router = APIRouter()
MAX_BODY_BYTES = 8 * 1024 * 1024


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsOutcome,
    responses={
        202: {"description": "Per-event outcome; accepted events are durably queued"},
        400: {"description": "The body is not JSON"},
        413: {"description": "The body is larger than 8 MiB"},
        422: {"description": "No event of the batch was valid", "model": EventsOutcome},
        503: {"description": "The broker did not confirm; nothing was accepted, retry"},
    },
)
async def post_events(request: Request) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"error": "PayloadTooLarge", "detail": f"at most {MAX_BODY_BYTES} bytes"}, 413)
    # publishing waits for the broker's acknowledgement: keep that off the event loop
    accepted, rejected = await run_in_threadpool(request.app.state.intake.submit, body)
    outcome = EventsOutcome(
        accepted=[event.id for event in accepted],
        rejected=[RejectedEvent(index=r.index, id=r.event_id, reason=r.reason) for r in rejected],
    )
    return JSONResponse(outcome.model_dump(), status_code=202 if accepted else 422)
