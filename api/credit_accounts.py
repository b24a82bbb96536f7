"""Prepaid credit kept in step with stored usage: grants written once, usage burned exactly once.

Burning is a settlement, not a stream of its own: every ``credit_settle_interval_s`` the ledger is
brought to what storage holds. For each customer's meter and hour that has ended (plus
``SETTLE_DELAY``), the charge is the hour's rated amount as stored, and ``Wallet.burn`` records
the difference from what the ledger already took for it (a first burn, or an adjustment when a
late event or a correction changed the hour). Since each pass starts from the stored ledger and
the stored usage, a pass cut short (kill -9, a lost answer) is redone by the next one, and usage
redelivered, replayed from a spool or stored twice by a broker restart is counted once because
storage counts it once: what credit paid plus what was left to bill always equals the rated
amount of the stored usage.

The hour under way is not in the ledger yet; the balance now burns it too, on a copy, in the same
order, so a balance follows usage as soon as the usage API shows it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from billing.burn_rate import RecentCost, runs_out_at
from billing.credits import Charge, CreditEntry, CreditGrant, EntryKind, Wallet, granted
from meterline.exceptions import IdempotencyConflict, UnknownGrant
from storage.credit_store import CreditStore, StoredGrant, UsageKey

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
SETTLE_DELAY = timedelta(minutes=1)
"""An hour is settled this long after it ends, so the events still on their way are in its
first burn rather than in an adjustment."""
RESETTLE_MARGIN = timedelta(minutes=1)
"""Hours given usage this long before a pass started are looked at again by the next one (the
sinks' clocks stamp ``stored_until``)."""
LAST_INSTANT = timedelta(milliseconds=1)


@dataclass(frozen=True)
class GrantRequest:
    """What a caller asks to grant: the grant's id is derived from the holder and its key."""

    holder_id: str
    currency: str
    amount: Decimal
    effective_at: datetime
    expires_at: datetime | None
    priority: int
    scope: frozenset[str]
    paid: bool
    paid_amount: Decimal | None
    idempotency_key: str
    asked: str
    """What the caller sent, as JSON: the same key with another body is a conflict (defaults such
    as "now" differ between retries, so they are not compared)."""

    def digest(self) -> str:
        return hashlib.sha256(self.asked.encode()).hexdigest()

    def grant_id(self) -> str:
        return "g-" + hashlib.sha256(f"{self.holder_id}\n{self.idempotency_key}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Balance:
    at: datetime
    per_currency: dict[str, Decimal]
    granted: dict[str, Decimal]
    """What the grants in force gave, per currency: the base of a percentage alert."""


@dataclass(frozen=True)
class Settled:
    """What a pass wrote, and what alerts and enforcement look at."""

    entries_written: int
    watched: set[str]
    """Customers whose usage or credit changed since the last pass."""
    wallets: dict[str, Wallet]
    """Of the watched customers that hold credit: the ledger with the hours under way burned."""


@dataclass(frozen=True)
class Forecast:
    currency: str
    balance: Decimal
    rate_per_hour: Fraction
    runs_out_at: datetime | None


class CreditAccounts:
    """Grants, the ledger and balances of every holder; one settlement at a time writes burns."""

    def __init__(self, store: CreditStore, late_usage_months: int) -> None:
        self._store = store
        self._late_usage_months = late_usage_months
        self._writing = threading.Lock()
        self._settled_until: datetime | None = None
        self._last_pass: datetime | None = None
        self._dirty: set[str] = set()
        """Holders whose credit the API changed since the last pass (a top-up re-arms alerts)."""

    def grant(self, request: GrantRequest, origin: EntryKind, created_by: str, now: datetime) -> StoredGrant:
        """The grant ``request`` asks for, made once: the same key again returns it (and writes
        its entry if a crash lost it); the same key with another request is a conflict."""
        grant = CreditGrant(
            grant_id=request.grant_id(),
            holder_id=request.holder_id,
            currency=request.currency,
            amount=request.amount,
            effective_at=request.effective_at,
            expires_at=request.expires_at,
            priority=request.priority,
            scope=request.scope,
            paid=request.paid,
            paid_amount=request.paid_amount,
        )
        with self._writing:
            wallet, stored = self._wallet(request.holder_id)
            existing = stored.get(grant.grant_id)
            if existing is not None and existing.request_digest != request.digest():
                raise IdempotencyConflict(f"idempotency key {request.idempotency_key!r} was used for another grant")
            made = existing or StoredGrant(grant, origin, request.idempotency_key, request.digest(), created_by, now)
            if any(e.grant_id == grant.grant_id and e.kind is origin for e in wallet.entries):
                return made
            wallet.grants[grant.grant_id] = grant
            (entry,) = wallet.record([granted(grant, origin)])
            self._store.save_grant(made, entry)
            self._dirty.add(request.holder_id)
            return made

    def void(self, holder_id: str, grant_id: str, now: datetime) -> list[CreditEntry]:
        """Take away what a grant still holds: it pays for nothing after ``now``."""
        with self._writing:
            wallet, stored = self._wallet(holder_id)
            if grant_id not in stored:
                raise UnknownGrant(f"no grant {grant_id!r} of {holder_id!r}")
            entries = wallet.void(grant_id, now)
            self._store.append({holder_id: entries}, now)
            self._dirty.add(holder_id)
            return entries

    def watch_again(self, customer_ids: set[str]) -> None:
        """Have the next pass look at these customers (a new alert rule)."""
        with self._writing:
            self._dirty |= customer_ids

    def grants(self, holder_id: str) -> list[StoredGrant]:
        return self._store.grants([holder_id]).get(holder_id, [])

    def ledger(self, holder_id: str) -> list[CreditEntry]:
        return self._store.entries([holder_id]).get(holder_id, [])

    def balance(self, holder_id: str, now: datetime, at: datetime | None = None) -> Balance:
        """What ``holder_id`` may spend: now, with the usage not settled yet burned on a copy of
        its wallet; or as the ledger stood at an earlier instant ``at``."""
        wallet, _ = self._wallet(holder_id)
        when = now if at is None or at >= now else at
        if when == now:
            self._burn_unsettled({holder_id: wallet}, self._settled_until or _floor_hour(now - SETTLE_DELAY), now)
        given: dict[str, Decimal] = {}
        for grant in wallet.grants.values():
            if grant.in_force(when):
                given[grant.currency] = given.get(grant.currency, Decimal(0)) + grant.amount
        return Balance(when, wallet.balance(when), given)

    def wallets(self, holders: set[str] | None, now: datetime) -> dict[str, Wallet]:
        """The wallets of ``holders`` (None: of everyone holding credit), the hours under way burned."""
        grants = self._store.grants(holders)
        entries = self._store.entries(set(grants)) if grants else {}
        wallets = {h: Wallet.of((g.grant for g in held), entries.get(h, [])) for h, held in grants.items()}
        self._burn_unsettled(wallets, self._settled_until or _floor_hour(now - SETTLE_DELAY), now)
        return wallets

    def forecast(self, balance: Balance, recent: dict[str, RecentCost], now: datetime) -> list[Forecast]:
        """When each currency's credit runs out at the holder's recent rate (``billing.burn_rate``)."""
        figures = []
        for currency, held in sorted(balance.per_currency.items()):
            rate = recent[currency].per_hour() if currency in recent else Fraction(0)
            figures.append(Forecast(currency, held, rate, runs_out_at(held, rate, now)))
        return figures

    def settle(self, now: datetime) -> Settled:
        """Bring the ledger of every holder to the stored usage of the hours settled by ``now``
        and record the expiries due; then the live wallets (the hours under way burned on a copy)
        of every customer whose usage or credit changed since the last pass (every one, the first
        time), which alerts and enforcement watch."""
        settle_until = _floor_hour(now - SETTLE_DELAY)
        since = None if self._last_pass is None else self._last_pass - RESETTLE_MARGIN
        with self._writing:
            grants = self._store.grants()
            holders = list(grants)
            lookback = _months_before(now, self._late_usage_months)
            dirty, self._dirty = self._dirty, set()
            if self._settled_until is None or since is None:
                usage = self._store.rated_usage(holders, lookback, settle_until)
            else:
                usage = self._store.rated_usage(holders, lookback, self._settled_until, stored_since=since)
                usage |= self._store.rated_usage(holders, self._settled_until, settle_until)
                # a new (perhaps backdated) grant may pay for usage stored long ago: all of it again
                usage |= self._store.rated_usage(dirty & set(holders), lookback, settle_until)
            expiring = {h for h, held in grants.items() if any(_expires(g.grant, since, now) for g in held)}
            changed = {key.customer_id for key in usage} | expiring | (dirty & set(holders))
            watched = (
                changed
                | dirty
                | self._store.customers_with_usage(settle_until, _floor_hour(now) + HOUR, stored_since=since)
                | (set(holders) if since is None else set())
            )
            wanted = (changed | watched) & set(grants)
            ledgers = self._store.entries(wanted) if wanted else {}
            wallets = {h: Wallet.of((g.grant for g in grants[h]), ledgers.get(h, [])) for h in wanted}
            written: dict[str, list[CreditEntry]] = {}
            for holder in changed & set(grants):
                wallet = wallets[holder]
                before = len(wallet.entries)
                prepaid_from = min(g.grant.effective_at for g in grants[holder])
                for key, amount in sorted(usage.items(), key=_by_hour):
                    if key.customer_id == holder and key.hour + HOUR > prepaid_from:
                        wallet.burn(_charge(key, amount, key.hour + HOUR - LAST_INSTANT))
                wallet.expire(now)
                if len(wallet.entries) > before:
                    written[holder] = wallet.entries[before:]
            self._store.append(written, now)
            self._settled_until, self._last_pass = settle_until, now
        live = {h: wallets[h] for h in watched & set(grants)}
        self._burn_unsettled(live, settle_until, now)
        return Settled(sum(len(entries) for entries in written.values()), watched, live)

    def _burn_unsettled(self, wallets: dict[str, Wallet], settled: datetime, now: datetime) -> None:
        """Burn the usage of the hours not settled yet (from ``settled``), as the next
        settlements will, on the wallets given."""
        unsettled = self._store.rated_usage(list(wallets), settled, _floor_hour(now) + HOUR) if wallets else {}
        for key, amount in sorted(unsettled.items(), key=_by_hour):
            wallet = wallets[key.customer_id]
            if wallet.grants and key.hour + HOUR > min(grant.effective_at for grant in wallet.grants.values()):
                wallet.burn(_charge(key, amount, min(now, key.hour + HOUR - LAST_INSTANT)))

    def _wallet(self, holder_id: str) -> tuple[Wallet, dict[str, StoredGrant]]:
        stored = {g.grant.grant_id: g for g in self.grants(holder_id)}
        return Wallet.of((g.grant for g in stored.values()), self.ledger(holder_id)), stored


def _charge(key: UsageKey, amount: Decimal, at: datetime) -> Charge:
    return Charge(key.reference, key.currency, max(amount, Decimal(0)), at, key.product, key.meter)


def _by_hour(item: tuple[UsageKey, Decimal]) -> datetime:
    return item[0].hour


def _expires(grant: CreditGrant, since: datetime | None, now: datetime) -> bool:
    """Whether ``grant`` expired in ``(since, now]`` (since None: by ``now``)."""
    return grant.expires_at is not None and (since is None or since < grant.expires_at) and grant.expires_at <= now


def _floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _months_before(now: datetime, months: int) -> datetime:
    """The start of the month ``months`` before ``now``'s: the oldest usage still accepted."""
    index = now.year * 12 + now.month - 1 - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
