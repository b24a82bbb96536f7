"""``GET /v1/dead-letters``: the events refused after they were accepted, with the reason."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated

import orjson
from clickhouse_connect.driver.client import Client
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.access.guard import OperationsReader
from storage.connection import as_utc
from storage.tables import DEAD_LETTERS

router = APIRouter(prefix="/v1", tags=["operations"])


class DeadLetter(BaseModel):
    event_id: str = Field(description="Empty when the event had no readable id")
    source: str
    reason: str
    refused_at: datetime
    event: object = Field(description="The event as it came")


class DeadLetters:
    """Reads the refusals the sink stored; one lock: an embedded engine handle is not for concurrent use."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{DEAD_LETTERS}"
        self._lock = threading.Lock()

    def latest(self, source: str | None, limit: int) -> list[DeadLetter]:
        with self._lock:
            rows = self._client.query(
                f"SELECT event_id, source, reason, refused_at, event FROM {self._table} FINAL "
                "WHERE {source:Nullable(String)} IS NULL OR source = {source:Nullable(String)} "
                "ORDER BY refused_at DESC, event_id LIMIT {limit:UInt32}",
                parameters={"source": source, "limit": limit},
            ).result_rows
        return [
            DeadLetter(event_id=ident, source=src, reason=reason, refused_at=as_utc(at), event=orjson.loads(event))
            for ident, src, reason, at, event in rows
        ]


@router.get("/dead-letters", response_model=list[DeadLetter])
def dead_letters(
    request: Request,
    _caller: OperationsReader,
    source: Annotated[str | None, Query(max_length=256, description="Only this CloudEvents source")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    """The latest refusals of the pipeline: events that broke the contract on the events topic,
    conflicts (an identity already used for other content), events nobody can price."""
    reader: DeadLetters = request.app.state.dead_letters
    return reader.latest(source, limit)
