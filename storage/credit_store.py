"""Prepaid credit as stored: grants, the ledger of entries, and the rated usage that burns them.

Rows are written once and never changed; a retried write has the same ids (see migration 56)
and reads keep one row of each (``FINAL``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from billing.credits import CreditEntry, CreditGrant, EntryKind
from meterline.exceptions import MeterlineError
from storage.connection import as_utc
from storage.tables import CREDIT_ENTRIES, CREDIT_GRANTS, INVOICES, USAGE_BY_HOUR
from storage.usage_read import AMOUNT

log = logging.getLogger(__name__)
AMOUNT_PLACES = Decimal("1e-12")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StoredGrant:
    grant: CreditGrant
    origin: EntryKind
    """How it came: ``grant`` or ``top_up``."""
    idempotency_key: str
    request_digest: str
    """What the request asked, so a retry with the same key but another body is refused."""
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class UsageKey:
    """The rated usage of one customer's meter of one product in one hour: a charge on credit."""

    customer_id: str
    currency: str
    hour: datetime
    product: str
    meter: str

    @property
    def reference(self) -> str:
        # products and meters are identifiers (no "/"), so the reference reads back unambiguously
        return f"usage/{self.currency}/{_hour_label(self.hour)}/{self.product}/{self.meter}"


@functools.lru_cache(maxsize=4096)
def _hour_label(hour: datetime) -> str:
    """A settlement names the same few hours thousands of times."""
    return f"{hour:%Y-%m-%dT%H}"


class CreditStore:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._grants = f"{database}.{CREDIT_GRANTS}"
        self._entries = f"{database}.{CREDIT_ENTRIES}"
        self._hours = f"{database}.{USAGE_BY_HOUR}"
        self._invoices = f"{database}.{INVOICES}"
        self._lock = threading.Lock()
        self.unreadable: set[str] = set()
        """The holders the last read of every grant left out (a stored grant is not valid)."""

    def save_grant(self, stored: StoredGrant, entry: CreditEntry) -> None:
        """The grant, then the entry that puts its amount in the ledger: a grant without its entry
        (a crash between) holds nothing, and the request retried writes the entry."""
        grant = stored.grant
        row = [
            grant.holder_id,
            grant.grant_id,
            stored.origin.value,
            grant.currency,
            grant.amount,
            grant.effective_at,
            grant.expires_at,
            grant.priority,
            sorted(grant.scope),
            grant.paid,
            grant.paid_amount,
            stored.idempotency_key,
            stored.request_digest,
            stored.created_by,
            stored.created_at,
        ]
        with self._lock:
            self._client.insert(self._grants, [row], column_names=_GRANT_COLUMNS)
        self.append({grant.holder_id: [entry]}, stored.created_at)

    def append(self, entries: dict[str, list[CreditEntry]], recorded_at: datetime) -> None:
        """Each holder's new entries, all in one insert: a settlement is stored whole or not at all."""
        rows = [
            [holder, e.entry_id, e.grant_id, e.kind.value, e.amount, e.at, e.reference, recorded_at]
            for holder, held in entries.items()
            for e in held
        ]
        if rows:
            with self._lock:
                self._client.insert(self._entries, rows, column_names=_ENTRY_COLUMNS)

    def grants(self, holders: Collection[str] | None = None) -> dict[str, list[StoredGrant]]:
        """Every grant of ``holders`` (None: of everyone), per holder, oldest first. A holder with
        a stored grant that is not a valid one is left out (logged, and in ``unreadable`` until a
        read finds it mended): its credit is not settled until then, and the others' is."""
        where, parameters = _holders(holders)
        query = f"SELECT {', '.join(_GRANT_COLUMNS)} FROM {self._grants} FINAL WHERE {where} ORDER BY created_at"
        found: dict[str, list[StoredGrant]] = defaultdict(list)
        unreadable = set()
        with self._lock:
            rows = self._client.query(query, parameters=parameters).named_results()
            for row in rows:
                try:
                    found[row["holder_id"]].append(_stored_grant(row))
                except (MeterlineError, ValueError) as error:
                    log.error("grant %s of %s cannot be read: %s", row["grant_id"], row["holder_id"], error)
                    unreadable.add(row["holder_id"])
        self.unreadable = unreadable if holders is None else (self.unreadable - set(holders)) | unreadable
        return {holder: held for holder, held in found.items() if holder not in unreadable}

    def entries(self, holders: Collection[str] | None = None) -> dict[str, list[CreditEntry]]:
        """Every entry of ``holders`` (None: of everyone), per holder, in the order they apply."""
        where, parameters = _holders(holders)
        query = (
            f"SELECT holder_id, grant_id, kind, amount, at, reference, entry_id FROM {self._entries} FINAL "
            f"WHERE {where} ORDER BY at, recorded_at, entry_id"
        )
        found: dict[str, list[CreditEntry]] = defaultdict(list)
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        for holder, grant_id, kind, amount, at, reference, entry_id in rows:
            found[holder].append(CreditEntry(grant_id, EntryKind(kind), amount, as_utc(at), reference, entry_id))
        return dict(found)

    def ledger_sizes(self) -> dict[str, tuple[int, int]]:
        """How many grants and ledger entries each holder has stored: what another API replica
        wrote shows as a size this one does not hold."""
        counts = "SELECT holder_id, count() FROM {table} FINAL GROUP BY holder_id"
        with self._lock:
            grants: dict[str, int] = {
                h: n for h, n in self._client.query(counts.format(table=self._grants)).result_rows
            }
            entries: dict[str, int] = {
                h: n for h, n in self._client.query(counts.format(table=self._entries)).result_rows
            }
        return {holder: (grants.get(holder, 0), entries.get(holder, 0)) for holder in grants.keys() | entries.keys()}

    def closed_periods(self, until: str, holders: Collection[str] | None = None) -> dict[str, set[str]]:
        """The months before ``until`` (a period's name) that a close drafted an invoice for, per
        holder of credit (of ``holders`` only, unless None), whatever became of it. Such a month
        is the close's to pay from credit: its usage does not burn by the hour (a grant made
        after the close, even backdated, would pay it twice), nor a partner's by the month."""
        parameters: dict[str, Any] = {"until": until, "holders": sorted(holders or ())}
        whose = "" if holders is None else "AND buyer_id IN {holders:Array(String)} "
        query = (
            f"SELECT buyer_id, groupUniqArray(period) FROM {self._invoices} FINAL WHERE document_type = 'invoice' "
            f"AND period < {{until:String}} AND buyer_id IN (SELECT holder_id FROM {self._grants}) {whose}"
            "GROUP BY buyer_id"
        )
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        return {buyer: set(periods) for buyer, periods in rows}

    def customers_with_usage(
        self,
        hour_lo: datetime,
        hour_hi: datetime,
        stored_since: datetime | None = None,
        customers: Collection[str] | None = None,
    ) -> set[str]:
        """Customers (of ``customers`` only, unless None) with usage in ``[hour_lo, hour_hi)``
        (only usage stored since ``stored_since``)."""
        parameters: dict[str, Any] = {"lo": hour_lo, "hi": hour_hi, "since": stored_since or EPOCH}
        whose = ""
        if customers is not None:
            whose, parameters["customers"] = "AND customer_id IN {customers:Array(String)}", sorted(customers)
        query = (
            f"SELECT DISTINCT customer_id FROM {self._hours} WHERE hour >= {{lo:DateTime('UTC')}} "
            f"AND hour < {{hi:DateTime('UTC')}} AND stored_until >= {{since:DateTime64(3, 'UTC')}} {whose}"
        )
        with self._lock:
            return {row[0] for row in self._client.query(query, parameters=parameters).result_rows}

    def usage_marks(
        self, hour_lo: datetime, hour_hi: datetime, stored_since: datetime | None = None
    ) -> dict[tuple[str, datetime], int]:
        """A mark of what is stored of each customer's usage per hour in ``[hour_lo, hour_hi)``
        (only the hours given usage since ``stored_since``): it changes whenever a write adds
        to, or corrects, that hour. Comparing marks tells which customers' usage moved without
        reading its amounts."""
        parameters: dict[str, Any] = {"lo": hour_lo, "hi": hour_hi, "since": stored_since or EPOCH}
        window = "hour >= {lo:DateTime('UTC')} AND hour < {hi:DateTime('UTC')}"
        query = (
            "SELECT customer_id, hour, cityHash64(sum(amount_base), sum(base_sum), sum(rated_rows), "
            f"max(stored_until)) FROM {self._hours} WHERE {window} AND {self._written_since(window)} "
            "GROUP BY customer_id, hour"
        )
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        return {(customer, as_utc(hour)): mark for customer, hour, mark in rows}

    def rated_usage(
        self,
        customers: Collection[str] | None,
        hour_lo: datetime,
        hour_hi: datetime,
        stored_since: datetime | None = None,
    ) -> dict[UsageKey, Decimal]:
        """The rated amount of each customer's meter per hour in ``[hour_lo, hour_hi)`` (None: of
        every holder of credit); with ``stored_since``, only of the (customer, hour) rows given
        usage since then."""
        if (customers is not None and not customers) or hour_lo >= hour_hi:
            return {}
        parameters: dict[str, Any] = {"lo": hour_lo, "hi": hour_hi}
        if customers is None:  # the engine picks them: binding 10,000 ids cost more than the query
            whose = f"customer_id IN (SELECT holder_id FROM {self._grants})"
        else:
            whose, parameters["customers"] = "customer_id IN {customers:Array(String)}", sorted(customers)
        window = f"{whose} AND hour >= {{lo:DateTime('UTC')}} AND hour < {{hi:DateTime('UTC')}}"
        changed = ""
        if stored_since is not None:
            parameters["since"] = stored_since
            changed = f"AND {self._written_since(window)}"
        query = (
            f"SELECT customer_id, currency, hour, product, meter, {AMOUNT} FROM {self._hours} "
            f"WHERE {window} {changed} GROUP BY customer_id, currency, hour, product, meter, base_divisor"
        )
        amounts: dict[UsageKey, Decimal] = defaultdict(Decimal)
        with self._lock:
            rows = self._client.query(query, parameters=parameters).result_rows
        for customer, currency, hour, product, meter, amount in rows:
            amounts[UsageKey(customer, currency, as_utc(hour), product, meter)] += amount
        return {key: amount.quantize(AMOUNT_PLACES) for key, amount in amounts.items()}

    def _written_since(self, window: str) -> str:
        """The condition that keeps the whole of each (customer, hour) in ``window`` given usage
        since the bound ``since``: one hour's rows are read together, old and new."""
        return (
            f"(customer_id, hour) IN (SELECT customer_id, hour FROM {self._hours} WHERE {window} "
            "AND stored_until >= {since:DateTime64(3, 'UTC')})"
        )


_GRANT_COLUMNS = [
    "holder_id",
    "grant_id",
    "origin",
    "currency",
    "amount",
    "effective_at",
    "expires_at",
    "priority",
    "scope",
    "paid",
    "paid_amount",
    "idempotency_key",
    "request_digest",
    "created_by",
    "created_at",
]
_ENTRY_COLUMNS = ["holder_id", "entry_id", "grant_id", "kind", "amount", "at", "reference", "recorded_at"]


def _holders(holders: Collection[str] | None) -> tuple[str, dict[str, Any]]:
    if holders is None:
        return "1", {}
    return "holder_id IN {holders:Array(String)}", {"holders": sorted(holders)}


def _stored_grant(row: dict[str, Any]) -> StoredGrant:
    grant = CreditGrant(
        grant_id=row["grant_id"],
        holder_id=row["holder_id"],
        currency=row["currency"],
        amount=row["amount"],
        effective_at=as_utc(row["effective_at"]),
        expires_at=as_utc(row["expires_at"]) if row["expires_at"] is not None else None,
        priority=row["priority"],
        scope=frozenset(row["scope"]),
        paid=row["paid"],
        paid_amount=row["paid_amount"],
    )
    return StoredGrant(
        grant,
        EntryKind(row["origin"]),
        row["idempotency_key"],
        row["request_digest"],
        row["created_by"],
        as_utc(row["created_at"]),
    )
