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

import jsonschema_rs
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
    return jsonschema_rs.validator_for(load_schema("cloudevent"))


@cache
def _data_validator(event_type: EventType) -> Any:
    return jsonschema_rs.validator_for(load_schema(event_type.value))


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
    reason = (
        _first_error(_envelope_validator(), event, "")
        or _first_error(_data_validator(EventType(event["type"])), event["data"], "data")
        or _time_error(event["time"])
    )
    if reason:
        raise InvalidEvent(reason, event["id"] if isinstance(event.get("id"), str) else None)
    return event


def _first_error(validator: Any, document: Any, prefix: str) -> str | None:
    """The first offending field and why, e.g. ``data.vcpu: -1 is less than the minimum of 0``."""
    if validator.is_valid(document):
        return None
    error = next(validator.iter_errors(document))
    path = ".".join(str(part) for part in [prefix, *error.instance_path] if part != "")
    return f"{path}: {error.message}" if path else str(error.message)


def _time_error(text: str) -> str | None:
    try:
        parse_time(text)
    except ValueError as error:
        return f"time is not a valid timestamp: {error}"
    return None


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
