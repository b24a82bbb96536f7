"""``GET /v1/dead-letters``: the events refused after they were accepted, with the reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.access.guard import OperationsReader
from api.services import services_of
from storage.dead_letters import DeadLetters

router = APIRouter(prefix="/v1", tags=["operations"])


class DeadLetter(BaseModel):
    event_id: str = Field(description="Empty when the event had no readable id")
    source: str
    reason: str
    refused_at: datetime
    event: object = Field(description="The event as it came")


@router.get("/dead-letters", response_model=list[DeadLetter])
def dead_letters(
    request: Request,
    _caller: OperationsReader,
    source: Annotated[str | None, Query(max_length=256, description="Only this CloudEvents source")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    """The latest refusals of the pipeline: events that broke the contract on the events topic,
    conflicts (an identity already used for other content), events nobody can price."""
    reader: DeadLetters = services_of(request).dead_letters
    return [DeadLetter(**letter) for letter in reader.latest(source, limit)]
