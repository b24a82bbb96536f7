"""Write the published JSON Schema files from the event structs: ``python -m schemas.publish``.

The files are what other teams and services read; the structs in ``schemas.events`` are what
meterline enforces. A unit test fails when the two drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas import columnar
from schemas.events import EVENT_STRUCTS, EventType, UsageEvent

SCHEMA_DIR = Path(__file__).resolve().parent / "events"
COLUMNAR_DIR = Path(__file__).resolve().parent / "columnar"
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


def columnar_documents() -> dict[str, dict[str, Any]]:
    """The Arrow schema of columnar VM samples, as JSON a reader of any language can follow."""
    schema = columnar.VM_SAMPLE_SCHEMA
    return {
        "vm.sample.v1.json": {
            "$id": columnar.DATASCHEMA,
            "name": columnar.SCHEMA_NAME,
            "content_type": columnar.CONTENT_TYPE,
            "description": "One Arrow IPC stream (LZ4 or uncompressed) of VM samples, a row per sample; "
            "the fields and rules of vm.sample.schema.json, as columns. The schema must match exactly; "
            "at most 100000 rows a stream.",
            "fields": [{"name": field.name, "type": str(field.type), "nullable": field.nullable} for field in schema],
        }
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for stale in SCHEMA_DIR.glob("*.schema.json"):
        stale.unlink()
    for name, document in schema_documents().items():
        (SCHEMA_DIR / name).write_text(render(document))
    COLUMNAR_DIR.mkdir(exist_ok=True)
    for name, document in columnar_documents().items():
        (COLUMNAR_DIR / name).write_text(render(document))


if __name__ == "__main__":
    main()
