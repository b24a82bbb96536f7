"""Usage rows as JSON: every value as the report's schema says, whatever the ids hold."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pyarrow as pa

from api.usage_formats import rows_json

HOSTILE = 'vm "a"\\b\n\u2028é\x01</script>'


def table(resource_ids: list[str]) -> pa.Table:
    n = len(resource_ids)
    return pa.table(
        {
            "period_start": pa.array([datetime(2026, 11, 1, 9, tzinfo=UTC)] * n, pa.timestamp("s", "UTC")),
            "resource_id": pa.array(resource_ids, pa.string()),
            "product": pa.array(["vm"] * n, pa.string()),
            "meter": pa.array(["vcpu_hours"] * n, pa.string()),
            "dimension": pa.array([""] * n, pa.string()),
            "unit": pa.array(["vCPU-hour"] * n, pa.string()),
            "currency": pa.array(["EUR"] * n, pa.string()),
            "quantity": pa.array([Decimal("2.5")] * n, pa.decimal128(38, 12)),
            "amount": pa.array([Decimal("0.05")] * n, pa.decimal128(38, 12)),
            "rated_rows": pa.array([13] * n, pa.int64()),
        }
    )


def test_rows_are_a_json_array_of_objects_with_ids_kept_as_sent():
    rows = orjson.loads(rows_json(table([HOSTILE, "vm-b"])))
    assert rows[0] == {
        "period_start": "2026-11-01T09:00:00Z",
        "resource_id": HOSTILE,
        "product": "vm",
        "meter": "vcpu_hours",
        "dimension": "",
        "unit": "vCPU-hour",
        "currency": "EUR",
        "quantity": "2.500000000000",
        "amount": "0.050000000000",
        "rated_rows": 13,
    }
    assert [row["resource_id"] for row in rows] == [HOSTILE, "vm-b"]


def test_a_grouping_without_resources_shows_them_null_and_no_rows_are_an_empty_array():
    rows = orjson.loads(rows_json(table(["vm-a"]).drop_columns(["resource_id", "product"])))
    assert (rows[0]["resource_id"], rows[0]["product"]) == (None, None)
    assert rows_json(table([])) == b"[]"
