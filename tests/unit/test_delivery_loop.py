"""The email courier outlives a failed check: later invoices still go out."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

from api.delivery import Deliveries, deliver_when_due
from billing.catalog import Catalog
from storage.ledger import Ledger


class FlakyDeliveries:
    """The first check fails like a lost ClickHouse connection; the next ones find one email."""

    def __init__(self) -> None:
        self.checks = 0
        self.sent: list[str] = []

    def due(self, now: datetime) -> list[str]:
        self.checks += 1
        if self.checks == 1:
            raise ConnectionError("ClickHouse went away")
        return ["2026-10.acme.direct"] if not self.sent else []

    def send(self, delivery: str, ledger: Any, catalog: Any) -> None:
        self.sent.append(delivery)


def test_a_failed_check_is_retried_at_the_next_interval():
    deliveries = FlakyDeliveries()

    async def run_a_while() -> None:
        courier = asyncio.create_task(
            deliver_when_due(
                cast(Deliveries, deliveries), cast(Ledger, None), lambda: cast(Catalog, None), check_every_s=0.01
            )
        )
        for _ in range(200):
            await asyncio.sleep(0.01)
            if deliveries.sent:
                break
        courier.cancel()

    asyncio.run(run_a_while())
    assert deliveries.checks >= 2
    assert deliveries.sent == ["2026-10.acme.direct"]
