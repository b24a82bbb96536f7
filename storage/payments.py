"""Payments, their gateway events and saved cards as stored (``billing.payments`` says what they
mean): a payment is the latest row of its id, an event is kept once per gateway and event id."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from billing.payments import EventKind, GatewayEvent, Payment, PaymentMethod, PaymentPurpose, PaymentState, SavedCard
from storage.connection import as_utc
from storage.locks import held
from storage.tables import PAYMENT_EVENTS, PAYMENTS, PAYMENTS_LOCK, SAVED_CARDS

PAYMENT_COLUMNS = [column.name for column in fields(Payment)]
EVENT_COLUMNS = [column.name for column in fields(GatewayEvent)]
STALE_LOCK = timedelta(minutes=2)
WAIT = timedelta(seconds=30)


class PaymentStore:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database
        self._payments = f"{database}.{PAYMENTS}"
        self._events = f"{database}.{PAYMENT_EVENTS}"
        self._cards = f"{database}.{SAVED_CARDS}"
        self._lock = threading.RLock()

    @contextmanager
    def settling(self) -> Iterator[None]:
        """One settlement at a time across every process sharing the store: each reads the
        events the one before it wrote, so none writes a state that misses an event."""
        with self._lock, held(self._client, self._database, PAYMENTS_LOCK, stale_after=STALE_LOCK, wait=WAIT):
            yield

    def save(self, payment: Payment) -> None:
        row = asdict(payment)
        with self._lock:
            self._client.insert(self._payments, [[row[name] for name in PAYMENT_COLUMNS]], column_names=PAYMENT_COLUMNS)

    def get(self, payment_id: str) -> Payment | None:
        found = self._select("payment_id = {id:String}", {"id": payment_id})
        return found[0] if found else None

    def by_reference(self, gateway: str, reference: str) -> Payment | None:
        found = self._select(
            "gateway = {gateway:String} AND reference = {reference:String}",
            {"gateway": gateway, "reference": reference},
        )
        return found[0] if found else None

    def of_invoice(self, invoice_id: str) -> list[Payment]:
        return self._select("invoice_id = {invoice_id:String}", {"invoice_id": invoice_id})

    def of_holders(self, holders: list[str] | None, limit: int) -> list[Payment]:
        """The latest payments of ``holders`` (None: of everyone), newest first."""
        if holders is None:
            return self._select("1", {}, limit)
        return self._select("has({holders:Array(String)}, holder_id)", {"holders": holders}, limit)

    def pending_charges(self) -> list[Payment]:
        """Automatic charges whose outcome is not known: the gateway did not answer, or is processing."""
        return self._select(
            "state = 'pending' AND method = {method:String}", {"method": PaymentMethod.SAVED_CARD.value}, None
        )

    def add_event(self, event: GatewayEvent, received_at: datetime, refused: str) -> bool:
        """Keep ``event`` (with why it was not applied, if it was not); False if it was kept already."""
        with self._lock:
            seen = self._client.command(
                f"SELECT count() FROM {self._events} WHERE gateway = {{gateway:String}} AND event_id = {{id:String}}",
                parameters={"gateway": event.gateway, "id": event.event_id},
            )
            if int(str(seen)):
                return False
            row = {**asdict(event), "received_at": received_at, "refused": refused}
            columns = [*EVENT_COLUMNS, "received_at", "refused"]
            self._client.insert(self._events, [[row[name] for name in columns]], column_names=columns)
            return True

    def events(self, payment: Payment) -> list[GatewayEvent]:
        """The events kept for ``payment``: naming it, or its gateway reference."""
        query = f"""SELECT {", ".join(EVENT_COLUMNS)} FROM {self._events} FINAL
            WHERE gateway = {{gateway:String}} AND refused = ''
                AND (payment_id = {{payment_id:String}} OR (reference != '' AND reference = {{reference:String}}))
            ORDER BY at, event_id"""
        parameters = {"gateway": payment.gateway, "payment_id": payment.payment_id, "reference": payment.reference}
        with self._lock:
            rows = list(self._client.query(query, parameters=parameters).named_results())
        return [GatewayEvent(**{**row, "kind": EventKind(row["kind"]), "at": as_utc(row["at"])}) for row in rows]

    def save_card(self, card: SavedCard, removed: bool, now: datetime) -> None:
        row = [card.holder_id, card.gateway, card.customer_ref, card.method_ref, removed, now]
        columns = ["holder_id", "gateway", "customer_ref", "method_ref", "removed", "updated_at"]
        with self._lock:
            self._client.insert(self._cards, [row], column_names=columns)

    def cards(self, holders: list[str] | None = None) -> dict[str, SavedCard]:
        """Each holder's saved card, by holder (one per holder: the latest saved)."""
        where = "NOT removed" + ("" if holders is None else " AND has({holders:Array(String)}, holder_id)")
        query = f"""SELECT holder_id, argMax(tuple(gateway, customer_ref, method_ref), updated_at)
            FROM {self._cards} FINAL WHERE {where} GROUP BY holder_id"""
        with self._lock:
            rows = self._client.query(query, parameters={"holders": holders or []}).result_rows
        return {holder: SavedCard(holder, *card) for holder, card in rows}

    def _select(self, where: str, parameters: dict[str, Any], limit: int | None = None) -> list[Payment]:
        limited = "" if limit is None else f" LIMIT {int(limit)}"
        query = f"SELECT * FROM {self._payments} FINAL WHERE {where} ORDER BY created_at DESC, payment_id{limited}"
        with self._lock:
            rows = list(self._client.query(query, parameters=parameters).named_results())
        return [_payment_of(row) for row in rows]


def _payment_of(row: dict[str, Any]) -> Payment:
    return Payment(
        **{
            **row,
            "purpose": PaymentPurpose(row["purpose"]),
            "method": PaymentMethod(row["method"]),
            "state": PaymentState(row["state"]),
            "created_at": as_utc(row["created_at"]),
            "updated_at": as_utc(row["updated_at"]),
        }
    )
