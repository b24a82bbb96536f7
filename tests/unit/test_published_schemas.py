"""The JSON Schema files other teams read say exactly what the pipeline enforces."""

from __future__ import annotations

from schemas.publish import COLUMNAR_DIR, SCHEMA_DIR, columnar_documents, render, schema_documents


def test_published_schema_files_are_generated_from_the_event_structs():
    expected = {name: render(document) for name, document in schema_documents().items()}
    published = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.schema.json")}
    assert published == expected, "run `python -m schemas.publish` and commit the result"


def test_the_published_columnar_schema_is_the_one_enforced():
    expected = {name: render(document) for name, document in columnar_documents().items()}
    assert {path.name: path.read_text() for path in COLUMNAR_DIR.glob("*.json")} == expected
