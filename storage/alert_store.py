"""Credit alerts as stored: rules, their state per customer, fired alerts, webhook endpoints and
deliveries, and enforcement statuses (migration 57). Each row type is a dataclass whose fields
are its table's columns; a later version of a row replaces it (read with FINAL)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from storage.connection import as_utc
from storage.tables import (
    ALERT_RULES,
    ALERT_STATES,
    ALERTS,
    ENFORCEMENT,
    TOP_UP_PLANS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
)


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    owner_id: str
    target_kind: str
    target_id: str
    condition: str
    threshold: Decimal
    deleted: bool
    created_by: str
    changed_at: datetime


@dataclass(frozen=True)
class RuleState:
    rule_id: str
    customer_id: str
    firing: bool
    crossings: int
    changed_at: datetime


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    rule_id: str
    customer_id: str
    condition: str
    reason: str
    payload: str
    fired_at: datetime


@dataclass(frozen=True)
class EndpointRow:
    endpoint_id: str
    owner_id: str
    url: str
    secrets: list[str]
    secrets_until: list[datetime | None]
    """When each secret stops being used to sign (None: while it is the newest)."""
    deleted: bool
    created_by: str
    changed_at: datetime


@dataclass(frozen=True)
class DeliveryRow:
    delivery_id: str
    endpoint_id: str
    message_id: str
    customer_id: str
    body: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    updated_at: datetime


@dataclass(frozen=True)
class TopUpPlanRow:
    plan_id: str
    holder_id: str
    kind: str
    """``recurring`` (``amount`` each month) or ``threshold`` (up to ``target`` under ``floor``)."""
    amount: Decimal
    floor: Decimal
    target: Decimal
    deleted: bool
    created_by: str
    changed_at: datetime


@dataclass(frozen=True)
class EnforcementRow:
    customer_id: str
    status: str
    reason: str
    changed_at: datetime


Row = TypeVar("Row", RuleRow, RuleState, AlertRow, EndpointRow, DeliveryRow, EnforcementRow, TopUpPlanRow)
AnyRow = RuleRow | RuleState | AlertRow | EndpointRow | DeliveryRow | EnforcementRow | TopUpPlanRow
TABLES: dict[type[Any], str] = {
    RuleRow: ALERT_RULES,
    RuleState: ALERT_STATES,
    AlertRow: ALERTS,
    EndpointRow: WEBHOOK_ENDPOINTS,
    DeliveryRow: WEBHOOK_DELIVERIES,
    EnforcementRow: ENFORCEMENT,
    TopUpPlanRow: TOP_UP_PLANS,
}


class AlertStore:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database
        self._lock = threading.Lock()
        self.changing = threading.Lock()
        """Held while a change is checked against what is stored and written (a limit, a
        duplicate, a rotation): concurrent requests to this process take turns."""

    def save(self, rows: Sequence[AnyRow]) -> None:
        """Rows of one type, in one insert."""
        if not rows:
            return
        kind = type(rows[0])
        columns = [f.name for f in fields(kind)]
        with self._lock:
            # not astuple: it deep-copies every field of rows that are flat already
            table = [[getattr(row, column) for column in columns] for row in rows]
            self._client.insert(self._table(kind), table, column_names=columns)

    def rules(self) -> list[RuleRow]:
        return self._read(RuleRow, "NOT deleted")

    def states(self) -> list[RuleState]:
        return self._read(RuleState)

    def alerts(self, customer_id: str | None = None) -> list[AlertRow]:
        """Every alert (of one customer), the newest first."""
        if customer_id is None:
            found = self._read(AlertRow)
        else:
            found = self._read(AlertRow, "customer_id = {customer:String}", {"customer": customer_id})
        return sorted(found, key=lambda alert: (alert.fired_at, alert.alert_id), reverse=True)

    def queued_messages(self, message_ids: list[str]) -> set[str]:
        """Those of ``message_ids`` already in the outbox (for some destination)."""
        if not message_ids:
            return set()
        query = f"SELECT DISTINCT message_id FROM {self._table(DeliveryRow)} WHERE message_id IN {{ids:Array(String)}}"
        with self._lock:
            rows = self._client.query(query, parameters={"ids": message_ids}).result_rows
        return {row[0] for row in rows}

    def endpoints(self) -> list[EndpointRow]:
        return self._read(EndpointRow, "NOT deleted")

    def deliveries(self, endpoint_id: str) -> list[DeliveryRow]:
        found = self._read(DeliveryRow, "endpoint_id = {endpoint:String}", {"endpoint": endpoint_id})
        return sorted(found, key=lambda delivery: delivery.updated_at, reverse=True)

    def due_deliveries(self, now: datetime) -> list[DeliveryRow]:
        """Waiting to be sent (or sent again) by ``now``, the earliest first."""
        found = self._read(
            DeliveryRow,
            "status IN ('pending', 'retrying') AND next_attempt_at <= {now:DateTime64(3, 'UTC')}",
            {"now": now},
        )
        return sorted(found, key=lambda delivery: delivery.next_attempt_at)

    def top_up_plans(self) -> list[TopUpPlanRow]:
        return self._read(TopUpPlanRow, "NOT deleted")

    def enforcement(self) -> list[EnforcementRow]:
        return self._read(EnforcementRow)

    def _read(self, kind: type[Row], where: str = "1", parameters: dict[str, Any] | None = None) -> list[Row]:
        """The latest version of each row of ``kind`` that ``where`` selects (bound ``parameters``)."""
        columns = [f.name for f in fields(kind)]
        query = f"SELECT {', '.join(columns)} FROM {self._table(kind)} FINAL WHERE {where}"
        with self._lock:
            rows = self._client.query(query, parameters=parameters or {}).result_rows
        return [kind(*(_utc(value) for value in row)) for row in rows]

    def _table(self, kind: type[Any]) -> str:
        return f"{self._database}.{TABLES[kind]}"


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, list):
        return [_utc(item) for item in value]
    return value
