"""Build a usage CloudEvent the one way every collector must."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.events import Event, EventType, event_id, format_time


def usage_event(kind: EventType, source: str, at: datetime, data: dict[str, Any]) -> Event:
    return {
        "specversion": "1.0",
        "id": event_id(kind, source, data["resource_id"], at),
        "source": source,
        "type": kind.value,
        "time": format_time(at),
        "datacontenttype": "application/json",
        "data": data,
    }
