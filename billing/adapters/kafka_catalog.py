"""The catalog on Kafka: a compacted topic with one message per entry, keyed ``kind/id``.

The API publishes every entry at start and each change as it is made; compaction keeps each
key's latest version. A Faust worker reads the topic from its start (no committed offsets: the
whole catalog, every time), then follows it, so a price change reaches rating without a restart.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from billing.catalog import Catalog
from billing.catalog_entries import Entry, EntryKind, assemble, revision
from meterline.exceptions import InvalidCatalog, MeterlineError
from meterline.kafka_config import consumer_config, producer_config
from meterline.settings import Settings

log = logging.getLogger(__name__)
QUIET_S = 1.0


def encode_entry(entry: Entry) -> bytes:
    return json.dumps(
        {"kind": entry.kind.value, "id": entry.id, "version": entry.version, "document": entry.document}
    ).encode()


def decode_entry(payload: bytes) -> Entry:
    body: dict[str, Any] = json.loads(payload)
    return Entry(EntryKind(body["kind"]), body["id"], body["document"], int(body["version"]))


class CatalogNotPublished(MeterlineError):
    """The broker did not take catalog entries (it is away): they are stored, and sent again."""

    retry_after_s = 5


class CatalogPublisher:
    def __init__(self, settings: Settings) -> None:
        # not idempotent: an entry sent twice is the same entry on a compacted topic, and an
        # idempotent client that a restarted broker no longer knows delivers nothing again
        self._config = {**producer_config(settings), "enable.idempotence": False}
        self._producer = Producer(self._config)
        self._topic = settings.topics.catalog

    def publish(self, entries: list[Entry], timeout_s: float = 30) -> None:
        """Send and wait for the broker's acknowledgement of every entry."""
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for entry in entries:
            try:
                self._producer.produce(self._topic, encode_entry(entry), key=entry.key.encode(), on_delivery=delivered)
            except (KafkaException, BufferError) as error:
                self._producer = Producer(self._config)
                raise CatalogNotPublished(f"the catalog topic did not take {entry.key}: {error}") from error
            self._producer.poll(0)
        if self._producer.flush(timeout_s) or failures:
            self._producer = Producer(self._config)  # what the old one still holds is sent again
            raise CatalogNotPublished(f"the catalog topic did not take every entry: {failures[:3] or 'timed out'}")


class CatalogFeed:
    """Follows the catalog topic; ``catalog`` is always the latest complete, valid catalog."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topics.catalog
        self._consumer = Consumer(
            consumer_config(settings, f"{settings.consumer_group}-catalog-{uuid.uuid4().hex[:8]}")
        )
        self._entries: dict[str, Entry] = {}
        self.catalog: Catalog | None = None
        self.revision = 0
        """The revision of ``catalog`` (``billing.catalog_entries.revision``)."""

    def wait_for_catalog(self, timeout_s: float = 120) -> Catalog:
        """Read the topic until it goes quiet; wait until the API has published a whole catalog.

        Quiet, rather than the high watermark: Tansu reports watermarks per batch, not per message.
        """
        deadline = time.monotonic() + timeout_s
        self._consumer.assign([TopicPartition(self._topic, p, 0) for p in self._partitions(deadline)])
        while time.monotonic() < deadline:
            while (message := self._consumer.poll(QUIET_S)) is not None:
                self._take(message)
            if self._try_assemble() and self.catalog is not None:
                return self.catalog
            log.info("waiting for the API to publish the catalog on %s", self._topic)
        raise InvalidCatalog(f"no complete catalog on topic {self._topic} after {timeout_s:.0f} s")

    def _partitions(self, deadline: float) -> list[int]:
        """The catalog topic's partitions, once the broker answers and has the topic: a worker
        (re)started while its broker is away, or back empty, waits for it as for the catalog."""
        while True:
            try:
                metadata = self._consumer.list_topics(self._topic, timeout=5).topics[self._topic]
                if metadata.error is None and metadata.partitions:
                    return list(metadata.partitions)
                why = str(metadata.error or "no partitions")
            except KafkaException as error:
                why = str(error)
            if time.monotonic() >= deadline:
                raise InvalidCatalog(f"the catalog topic {self._topic} is not there: {why}")
            log.warning("waiting for the catalog topic %s: %s", self._topic, why)
            time.sleep(1)

    def poll(self) -> bool:
        """Take whatever changed since the last call; True if the catalog was replaced."""
        changed = False
        while (message := self._consumer.poll(0)) is not None:
            changed |= self._take(message)
        return changed and self._try_assemble()

    def _take(self, message: Any) -> bool:
        if message is None or message.error():
            return False
        entry = decode_entry(message.value())
        self._entries[entry.key] = entry
        return True

    def _try_assemble(self) -> bool:
        try:
            self.catalog, self.revision = assemble(self._entries.values()), revision(self._entries.values())
        except InvalidCatalog as error:
            # between the first and last message of a start-up publication the entries can
            # reference ones not read yet; the previous catalog stays in force until they are
            log.info("the catalog on the topic is not complete yet: %s", error)
            return False
        return True
