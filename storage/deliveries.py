"""Invoice email deliveries as stored: the latest row of each invoice wins (``updated_at``)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from billing.mailing import Delivery, DeliveryStatus
from storage.connection import as_utc
from storage.tables import DELIVERIES


class DeliveryRecords:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.{DELIVERIES}"
        self._lock = threading.Lock()

    def of_invoice(self, invoice_id: str) -> Delivery | None:
        found = self._select("invoice_id = {id:String}", {"id": invoice_id})
        return found[0] if found else None

    def due(self, now: datetime) -> list[Delivery]:
        """Waiting to be sent, or sent again, by ``now``: the earliest first."""
        return self._select(
            "status IN ('pending', 'retrying') AND next_attempt_at <= {now:DateTime64(3, 'UTC')}", {"now": now}
        )

    def save(self, *deliveries: Delivery) -> None:
        columns = list(Delivery.__dataclass_fields__)
        rows = [[getattr(delivery, name) for name in columns] for delivery in deliveries]
        if rows:
            with self._lock:
                self._client.insert(self._table, rows, column_names=columns)

    def _select(self, where: str, parameters: dict[str, Any]) -> list[Delivery]:
        query = f"SELECT * FROM {self._table} FINAL WHERE {where} ORDER BY next_attempt_at"
        with self._lock:
            rows = self._client.query(query, parameters=parameters).named_results()
            return [
                Delivery(
                    **{
                        **row,
                        "status": DeliveryStatus(row["status"]),
                        "next_attempt_at": as_utc(row["next_attempt_at"]),
                        "updated_at": as_utc(row["updated_at"]),
                    }
                )
                for row in rows
            ]
