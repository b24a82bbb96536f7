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
