"""Client settings every meterline Kafka producer shares."""

from __future__ import annotations

from typing import Any

from meterline.settings import Settings

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


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
