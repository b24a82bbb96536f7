"""An agent outside Kafka's reach pushes through the API with an ingest key, and keeps every
message it could not hand over (key revoked, API down) until it can."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.http_publisher import HttpPublisher
from agents.spool import Spool
from schemas.events import encode_batch
from tests.factories import vm_sample
from tests.integration.harness import System, wait_for
from tests.integration.test_invoicing import rated_rows

pytestmark = pytest.mark.integration
AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_an_agent_hands_its_spool_to_the_api_and_keeps_what_is_refused_to_its_key(system: System):
    system.start_all()
    made = system.http.post("/v1/keys", json={"name": "hv agent", "role": "ingest", "sources": ["test://hv-*"]})
    key = made.json()
    agent = HttpPublisher(system.url, key["key"], Spool(system.data_dir / "agent-spool"))
    try:
        agent.publish_group([("test://hv-1", encode_batch([vm_sample(f"vm-{n}", at=AT) for n in range(3)]))])
        assert agent.drain(30) == 0, "handed over: the API keeps it now"
        wait_for(lambda: rated_rows(system, "cust-1") == 12, what="three samples' four meters")

        assert system.http.delete(f"/v1/keys/{key['key_id']}").status_code == 200
        agent.publish_group([("test://hv-1", encode_batch([vm_sample("vm-late", at=AT)]))])
        assert agent.drain(1) == 1, "a revoked key's message stays in the spool"

        system.kill("api")
        reopened = HttpPublisher(system.url, key["key"], Spool(system.data_dir / "agent-spool"))
        assert reopened.backlog == 1, "the spool survives the agent too"
        reopened.close()
    finally:
        agent.close()


def test_an_ingest_key_cannot_report_or_overwrite_another_sources_usage(system: System):
    """The agent's sample of vm-1: 2 vCPU for 300 s = 600 vCPU-seconds. An ingest key bound to
    ``svc/*`` cannot report it as ``test://hv-1``, and its own copy (same id, customer, hour and
    resource, 1 vCPU: 300 vCPU-seconds) is another event: the agent's is not replaced, and the
    hour holds 900 vCPU-seconds = 0.25 h (replaced, it would hold 0.083333333333 h)."""
    system.start_all()
    real = vm_sample("vm-1", at=AT)
    assert system.http.post("/v1/events", content=encode_batch([real])).status_code == 202
    wait_for(lambda: rated_rows(system, "cust-1") == 4, what="the agent's sample")
    key = system.http.post("/v1/keys", json={"name": "svc", "role": "ingest", "sources": ["svc/*"]}).json()
    service = system.client(key["key"])

    as_the_agent = service.post("/v1/events", content=encode_batch([{**real, "data": {**real["data"], "vcpu": 1}}]))
    assert (
        as_the_agent.status_code == 422 and "may not report for source" in as_the_agent.json()["rejected"][0]["reason"]
    )
    copy = {**real, "source": "svc/evil", "data": {**real["data"], "vcpu": 1}}
    assert service.post("/v1/events", content=encode_batch([copy])).status_code == 202
    wait_for(lambda: rated_rows(system, "cust-1") == 8, what="the copy, stored as an event of its own")
    vcpu = [r for r in system.usage("cust-1")["rows"] if r["meter"] == "vcpu_hours"]
    assert [r["quantity"] for r in vcpu] == ["0.250000000000"]
