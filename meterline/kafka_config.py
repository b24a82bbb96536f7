"""Client settings every meterline Kafka producer shares."""

from __future__ import annotations

import logging
from typing import Any

from meterline.logs import KAFKA_LOGGER, RepeatsOnce
from meterline.settings import Settings

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def client_logging() -> dict[str, Any]:
    """librdkafka's log lines through Python logging, where repeats are held back. They are
    handed over when the client is polled: only for clients polled all the time (a client left
    idle would queue them)."""
    logger = logging.getLogger(KAFKA_LOGGER)
    if not any(isinstance(existing, RepeatsOnce) for existing in logger.filters):
        logger.addFilter(RepeatsOnce())
    return {"logger": logger}


def consumer_config(settings: Settings, group: str) -> dict[str, Any]:
    """A consumer that commits only when told to, and reads a partition it has no offset for
    (or whose log was lost) from its beginning."""
    return {
        **client_logging(),
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """Idempotent, all-replica acknowledgement: nothing is reported sent that could be lost."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }
