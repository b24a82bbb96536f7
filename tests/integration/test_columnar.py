"""Columnar samples through the running system: the API's intake, an agent's binary-mode
CloudEvents on Kafka, refusals to the dead letters, and one sample however it is encoded."""

from __future__ import annotations

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas import columnar
from schemas.events import encode_batch
from tests.factories import vm_sample
from tests.integration.harness import System, wait_for

pytestmark = pytest.mark.integration
ARROW = {"Content-Type": columnar.CONTENT_TYPE}


@pytest.fixture
def running(system: System) -> System:
    return system.start_all()


def rated_rows(system: System, customer: str) -> int:
    return sum(row["rated_rows"] for row in system.usage(customer, granularity="month")["rows"])


def test_an_arrow_body_is_accepted_row_by_row_and_one_sample_is_one_however_encoded(running: System):
    good, bad = vm_sample("vm-1"), vm_sample("vm-2", vcpu=9000)
    answer = running.http.post("/v1/events", content=columnar.encode([good, bad]), headers=ARROW)
    assert answer.status_code == 202, answer.text
    outcome = answer.json()
    assert outcome["accepted"] == [good["id"]]
    reason = "data.vcpu: Expected `int` >= 0 and <= 4096"
    assert outcome["rejected"] == [{"index": 1, "id": bad["id"], "reason": reason}]
    wait_for(lambda: rated_rows(running, "cust-1") == 4, what="the good row's four meters")

    # the same sample again, as JSON: its identity and content are the row's, so it is a repeat
    assert running.http.post("/v1/events", content=encode_batch([good])).status_code == 202
    # with other content under its identity: a conflict, refused downstream
    conflicting = vm_sample("vm-1", customer_id="cust-2")
    assert running.http.post("/v1/events", content=encode_batch([conflicting])).status_code == 202
    # rows that bypass the API and break the contract: dead letters, each row as the event it stands for
    producer = Producer({"bootstrap.servers": running.broker.bootstrap})
    producer.produce(running.settings.topics.events, columnar.encode([bad, vm_sample("vm-3")]), key=b"hv-1")
    producer.produce(running.settings.topics.events, columnar.encode([good])[:-40], key=b"hv-1")
    producer.produce(running.settings.topics.events, _no_disk_nor_date(vm_sample("vm-4")), key=b"hv-1")
    producer.flush(10)
    letters = wait_for(
        lambda: len(found := running.http.get("/v1/dead-letters").json()) == 5 and found, what="the refusals stored"
    )
    by_reason = {letter["reason"].split(":")[0]: letter for letter in letters}
    assert by_reason["data.vcpu"]["event"]["data"]["vcpu"] == 9000
    assert by_reason["conflict"]["event"]["data"]["customer_id"] == "cust-2"
    assert any(reason.startswith("the Arrow stream") for reason in by_reason), by_reason
    assert {"data.disks", "time"} <= set(by_reason), "rows the worker once crashed on are refused"
    wait_for(lambda: rated_rows(running, "cust-1") == 8, what="the bypassing message's good row")
    assert not running.usage("cust-2")["rows"], "the conflicting copy is billed to no one"


def test_a_body_that_is_no_stream_of_samples_is_refused_whole(running: System):
    for body, reason in [
        (columnar.encode([vm_sample("vm-1")])[:-30], "Arrow"),
        (b'[{"id": "x"}]', "not an Arrow IPC stream"),
        (b"", "the Arrow stream is empty"),
    ]:
        answer = running.http.post("/v1/events", content=body, headers=ARROW)
        assert answer.status_code == 400 and reason in answer.json()["detail"], answer.text
    assert running.http.get("/readyz").status_code == 200, "the API stays up"


def test_an_agents_columnar_batch_travels_as_a_binary_mode_cloudevent(running: System):
    running.publish({"sim://hv-9": [vm_sample("vm-9", customer_id="cust-9")]})
    wait_for(lambda: rated_rows(running, "cust-9") == 4, what="the agent's sample")
    consumer = Consumer({"bootstrap.servers": running.broker.bootstrap, "group.id": "peek-headers"})
    topic = running.settings.topics.events
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, number, 0) for number in partitions])
        message = wait_for(lambda: (m := consumer.poll(1)) is not None and not m.error() and m, what="the message")
    finally:
        consumer.close()
    headers = dict(message.headers())
    assert headers["content-type"] == columnar.CONTENT_TYPE.encode()
    assert (headers["ce_specversion"], headers["ce_type"]) == (b"1.0", b"vm.sample")
    assert headers["ce_dataschema"] == columnar.DATASCHEMA.encode()
    assert columnar.is_columnar(message.value())


def _no_disk_nor_date(sample: dict) -> bytes:
    """Two rows of ``sample`` as a stream: one with a null disk, one dated in the year 20000."""
    table = columnar.read(columnar.encode([sample, sample]))
    disks = pa.array([[None], []], pa.list_(columnar.DISK))
    times = pa.array([0, 569_000_000_000_000], pa.int64()).cast(pa.timestamp("ms", "UTC"))
    table = table.set_column(table.schema.get_field_index("disks"), "disks", disks)
    table = table.set_column(table.schema.get_field_index("time"), pa.field("time", times.type), times)
    return columnar.write(table)
