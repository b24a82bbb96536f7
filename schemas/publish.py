"""Write the published JSON Schema files from the event structs: ``python -m schemas.publish``.

The files are what other teams and services read; the structs in ``schemas.events`` are what
meterline enforces. A unit test fails when the two drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import EVENT_STRUCTS, EventType, UsageEvent

SCHEMA_DIR = Path(__file__).resolve().parent / "events"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, one per event type and one for a batch of any of them."""
    documents = {f"{kind.value}.schema.json": _document(EVENT_STRUCTS[kind], kind.value) for kind in EventType}
    documents["batch.schema.json"] = _document(list[UsageEvent], "batch")
    return documents


def _document(target: Any, name: str) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "$id": f"https://meterline.io/schemas/events/{name}.schema.json",
        **msgspec.json.schema(target),
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for stale in SCHEMA_DIR.glob("*.schema.json"):
        stale.unlink()
    for name, document in schema_documents().items():
        (SCHEMA_DIR / name).write_text(render(document))


if __name__ == "__main__":
    main()
