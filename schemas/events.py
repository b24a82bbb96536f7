"""Usage events: CloudEvents 1.0 JSON whose ``data`` follows one JSON Schema per event type.

The JSON Schema files beside this module are the published contract; they are compiled
once here and are the only validation rules anywhere in meterline.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from meterline.exceptions import InvalidEvent

SCHEMA_DIR = Path(__file__).resolve().parent / "events"

Event = dict[str, Any]


class EventType(StrEnum):
    VM_SAMPLE = "vm.sample"
    VDC_ALLOCATION = "vdc.allocation"
    XAAS_USAGE = "xaas.usage"

    @property
    def schema_path(self) -> Path:
        return SCHEMA_DIR / f"{self.value}.schema.json"


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema document ``name`` (``cloudevent`` or an event type)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return schema


@cache
def _envelope_validator() -> Any:
    return fastjsonschema.compile(load_schema("cloudevent"))


@cache
def _data_validator(event_type: EventType) -> Any:
    return fastjsonschema.compile(load_schema(event_type.value))


def event_id(event_type: EventType, source: str, resource_id: str, time: datetime) -> str:
    """The deterministic id of a sample: the same observation always gets the same id."""
    key = f"{event_type.value}|{source}|{resource_id}|{format_time(time)}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def format_time(time: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, the only spelling the envelope schema accepts."""
    if time.tzinfo is None:
        raise ValueError("event times must be timezone-aware UTC")
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def validate_event(event: Any) -> Event:
    """Return ``event`` if it honours the envelope and its type's data schema, else raise."""
    if not isinstance(event, dict):
        raise InvalidEvent("an event must be a JSON object")
    ident = event.get("id") if isinstance(event.get("id"), str) else None
    try:
        _envelope_validator()(event)
        _data_validator(EventType(event["type"]))(event["data"])
        parse_time(event["time"])
    except fastjsonschema.JsonSchemaValueException as error:
        raise InvalidEvent(f"{error.message}", ident) from None
    except ValueError as error:
        raise InvalidEvent(f"time is not a valid timestamp: {error}", ident) from None
    return event


def decode_batch(payload: bytes) -> list[Any]:
    """One Kafka message or HTTP body: a single event object or a JSON array of events."""
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"payload is not valid JSON: {error}") from None
    if isinstance(decoded, list):
        return decoded
    return [decoded]


def encode_batch(events: list[Event]) -> bytes:
    """The CloudEvents JSON batch format (``application/cloudevents-batch+json``)."""
    return orjson.dumps(events)
