"""A message number that never arrives shows as a gap, and a close refuses until forced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from schemas.events import encode_batch
from schemas.receipts import headers_of
from tests.factories import xaas_usage
from tests.integration.harness import System, wait_for

pytestmark = pytest.mark.integration
AT = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def test_a_missing_message_is_a_gap_and_the_close_refuses_until_forced(system: System):
    """agent/gappy sends messages 1, 2 and 4, with an hour of usage each ending at 12:00, 13:00
    and 15:00. Message 3 never arrives: its usage lies after 2's (whose last hour is 12:00) and
    before 4's (whose first hour is 14:00), so the 12:00 to 14:00 hours are missing, though 12:00
    and 14:00 hold some usage; 11:00 is whole, but late: stored weeks after the hour."""
    system.start_all()
    producer = Producer({"bootstrap.servers": system.broker.bootstrap})
    for seq, hours in ((1, 0), (2, 1), (4, 3)):
        event = xaas_usage(quantity="1", customer_id="cust-g", resource_id=f"r{seq}", at=AT + timedelta(hours=hours))
        producer.produce(
            system.settings.topics.events, encode_batch([event]), key=b"gappy", headers=headers_of("agent/gappy", seq)
        )
    producer.flush(10)

    def gappy() -> dict | None:
        report = system.http.get(
            "/v1/completeness", params={"from": "2026-11-10T00:00:00Z", "to": "2026-11-11T00:00:00Z"}
        ).json()
        sources = {source["producer"]: source for source in report["sources"]}
        return sources.get("agent/gappy") if len(sources.get("agent/gappy", {}).get("hours", [])) >= 4 else None

    source = wait_for(gappy, 120, "the three messages to be stored")
    assert not source["complete"]
    assert [(g["first_missing"], g["last_missing"]) for g in source["gaps"]] == [(3, 3)]
    assert source["hours"] == [
        {"hour": "2026-11-10T11:00:00Z", "status": "late"},
        {"hour": "2026-11-10T12:00:00Z", "status": "missing"},
        {"hour": "2026-11-10T13:00:00Z", "status": "missing"},
        {"hour": "2026-11-10T14:00:00Z", "status": "missing"},
    ]
    assert system.metric("meterline_sources_with_gaps") == 1

    refused = system.http.post("/v1/periods/2026-11/close", timeout=120)
    assert refused.status_code == 409
    assert "agent/gappy messages 3, usage 2026-11-10T12:00Z to 2026-11-10T14:00Z" in refused.json()["detail"]
    forced = system.http.post("/v1/periods/2026-11/close", params={"force": "true"}, timeout=120)
    assert forced.status_code == 200, forced.text
    invoices = system.http.get("/v1/invoices", params={"period": "2026-11"}, timeout=30).json()
    assert invoices and all(invoice["notes"].startswith("Closed by force while 1 gaps") for invoice in invoices)
    assert system.http.post("/v1/periods/2026-10/close", timeout=120).status_code == 200, "October is whole"
