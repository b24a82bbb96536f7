"""Prepaid credit kept in step with stored usage: grants written once, usage burned exactly once.

Burning is a settlement, not a stream of its own: every ``credit_settle_interval_s`` the ledger is
brought to what storage holds. For each customer's meter and hour that has ended (plus
``SETTLE_DELAY``), the charge is the hour's rated amount as stored, and ``Wallet.burn`` records
the difference from what the ledger already took for it (a first burn, or an adjustment when a
late event or a correction changed the hour). Since each pass starts from the stored ledger (held
in memory, and read again whenever a write may not have been stored) and the stored usage, a
pass cut short (kill -9, a lost answer) is redone by the next one, and usage
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
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from billing.burn_rate import RecentCost, rate_of, runs_out_at
from billing.credits import (
    INVOICE_CHARGE,
    ZERO,
    Charge,
    CreditEntry,
    CreditGrant,
    EntryKind,
    Wallet,
    granted,
    invoice_charges,
)
from billing.invoices import DocumentType
from billing.money import round_money
from billing.periods import Period
from billing.records import InvoiceRecord
from meterline.exceptions import IdempotencyConflict, MeterlineError, UnknownGrant
from meterline.late_usage import earliest_accepted
from schemas.meters import Meter
from storage.credit_store import CreditStore, StoredGrant, UsageKey
from storage.usage_read import floor_hour

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
SETTLE_DELAY = timedelta(minutes=1)
"""An hour is settled this long after it ends, so the events still on their way are in its
first burn rather than in an adjustment."""
RESETTLE_MARGIN = timedelta(minutes=1)
"""Hours given usage this long before a pass started are looked at again by the next one (the
sinks' clocks stamp ``stored_until``)."""
LAST_INSTANT = timedelta(milliseconds=1)
REREAD = timedelta(seconds=30)
EVERY_HOLDER = None
MANY_HOLDERS = 100
"""Past this many holders, a pass reads every holder's usage and keeps what it needs."""


@dataclass(frozen=True)
class GrantRequest:
    """What a caller asks to grant: the grant's id is derived from the holder and its key. A
    caller's key cannot hold a "/" (the header's pattern): keys with one are the top-up plans'."""

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
class Holdings:
    grants: dict[str, list[StoredGrant]]
    ledgers: dict[str, list[CreditEntry]]
    wallets: dict[str, Wallet] = field(default_factory=dict)
    """The wallets settlements burned, kept with their index between passes: built from
    ``grants`` and ``ledgers`` when first needed, and again once something else wrote entries."""


Pricing = Callable[[Period, set[str], datetime], dict[str, list[Charge]]]
"""(month, holders, at) -> what each of the holders owes so far in the month, as charges at ``at``."""


@dataclass(frozen=True)
class Forecast:
    currency: str
    balance: Decimal
    rate_per_hour: Fraction
    runs_out_at: datetime | None


class CreditAccounts:
    """Grants, the ledger and balances of every holder; one settlement at a time writes burns."""

    def __init__(self, store: CreditStore, late_usage_months: int, reads: CreditStore | None = None) -> None:
        """``reads`` (on a connection of its own) serves the API's reads of balances and ledgers,
        so they do not queue behind a pass's queries, nor a pass behind them."""
        self._store = store
        self._reads = reads or store
        self._late_usage_months = late_usage_months
        self._writing = threading.Lock()
        self._settled_until: datetime | None = None
        self._last_pass: datetime | None = None
        self._dirty: set[str] = set()
        """Holders whose credit the API changed since the last pass (a top-up re-arms alerts)."""
        self._rewatch: set[str] = set()
        """Customers the next pass watches whatever moved (a new rule, a pass that failed)."""
        self._marks: dict[tuple[str, datetime], int] = {}
        """What the last pass read of each customer's usage per hour (``CreditStore.usage_marks``):
        an hour is burned again, and its customer watched, only when its mark moves."""
        self._held: Holdings | None = None
        self._held_read_at = datetime.min.replace(tzinfo=UTC)

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
            if self._held is not None:
                if existing is None:
                    self._held.grants.setdefault(request.holder_id, []).append(made)
                self._held.ledgers.setdefault(request.holder_id, []).append(entry)
                self._held.wallets.pop(request.holder_id, None)
            self._dirty.add(request.holder_id)
            return made

    def void(self, holder_id: str, grant_id: str, now: datetime) -> list[CreditEntry]:
        """Take away what a grant still holds: it pays for nothing after ``now``."""
        with self._writing:
            wallet, stored = self._wallet(holder_id)
            if grant_id not in stored:
                raise UnknownGrant(f"no grant {grant_id!r} of {holder_id!r}")
            entries = wallet.void(grant_id, now)
            self._append({holder_id: entries}, now)
            self._dirty.add(holder_id)
            return entries

    def watch_again(self, customer_ids: set[str]) -> None:
        """Have the next pass look at these customers (a new alert rule, a pass that failed)."""
        with self._writing:
            self._rewatch |= customer_ids

    def holders(self, now: datetime) -> set[str]:
        """Everyone holding a grant."""
        with self._writing:
            return set(self._holdings(now).grants)

    def grants(self, holder_id: str) -> list[StoredGrant]:
        return self._reads.grants([holder_id]).get(holder_id, [])

    def ledger(self, holder_id: str) -> list[CreditEntry]:
        return self._reads.entries([holder_id]).get(holder_id, [])

    def balance(self, holder_id: str, now: datetime, at: datetime | None = None) -> Balance:
        """What ``holder_id`` may spend: now, with the usage not settled yet burned on a copy of
        its wallet; or as the ledger stood at an earlier instant ``at``."""
        wallet, _ = self._wallet(holder_id)
        when = now if at is None or at >= now else at
        if when == now:
            self._burn_not_settled({holder_id: wallet}, now)
        return Balance(when, wallet.balance(when), wallet.granted(when))

    def wallets(self, holders: set[str] | None, now: datetime) -> dict[str, Wallet]:
        """The wallets of ``holders`` (None: of everyone holding credit), the hours under way burned."""
        grants = self._reads.grants(holders)
        entries = self._reads.entries(set(grants)) if grants else {}
        wallets = {h: Wallet.of((g.grant for g in held), entries.get(h, [])) for h, held in grants.items()}
        self._burn_not_settled(wallets, now)
        return wallets

    def apply_to_invoices(self, records: list[InvoiceRecord], now: datetime) -> list[InvoiceRecord]:
        """Each draft invoice whose buyer holds credit, paid from it as far as it goes: the
        period's hourly usage burns are given back and the invoice's own charges burn instead
        (``billing.credits.invoice_charges``); a re-closed draft burns only the difference."""
        applied = []
        with self._writing:
            holders = {r.buyer_id for r in records if r.document_type is DocumentType.INVOICE}
            grants = self._store.grants(holders) if holders else {}
            ledgers = self._store.entries(set(grants)) if grants else {}
            written: dict[str, list[CreditEntry]] = {}
            for record in records:
                ended = Period.parse(record.period).end <= now  # a month under way's draft is a preview
                if record.buyer_id not in grants or record.document_type is not DocumentType.INVOICE or not ended:
                    applied.append(record)
                    continue
                wallet = Wallet.of((g.grant for g in grants[record.buyer_id]), ledgers.get(record.buyer_id, []))
                before = len(wallet.entries)
                paid = _pay_invoice(wallet, record)
                written.setdefault(record.buyer_id, []).extend(wallet.entries[before:])
                ledgers[record.buyer_id] = wallet.entries
                applied.append(replace(record, credit_applied=min(round_money(paid, record.currency), record.total)))
            self._append(written, now)
        return applied

    def release_invoice(self, record: InvoiceRecord, now: datetime) -> None:
        """Give back what an invoice took from credit (it is voided by a credit note)."""
        with self._writing:
            wallet, _ = self._wallet(record.buyer_id)
            before = len(wallet.entries)
            prefix = f"{INVOICE_CHARGE}{record.invoice_id}/"
            for reference in sorted({e.reference for e in wallet.entries if e.reference.startswith(prefix)}):
                wallet.burn(Charge(reference, record.currency, Decimal(0), now))
            self._append({record.buyer_id: wallet.entries[before:]}, now)

    def forecast(self, balance: Balance, recent: dict[str, RecentCost], now: datetime) -> list[Forecast]:
        """When each currency's credit runs out at the holder's recent rate (``billing.burn_rate``)."""
        figures = []
        for currency, held in sorted(balance.per_currency.items()):
            rate = rate_of(recent, currency)
            figures.append(Forecast(currency, held, rate, runs_out_at(held, rate, now)))
        return figures

    def burn_so_far(self, holders: set[str], months: list[Period], price: Pricing, now: datetime) -> int:
        """Burn what ``holders`` owe so far in ``months`` on invoices no close has drafted yet
        (a partner's: ``api.partner_credit``), as ``price`` says; how many entries that wrote.
        Each charge is dated ``now``, or the last instant of a month that has ended, and a month
        ending before a holder's first grant took effect is not its credit's to pay. A month a
        close drafted an invoice for is paid by the close alone (``apply_to_invoices``): asking
        under the lock the close takes keeps a pass from undoing what a close just paid."""
        with self._writing, self._burning_held():
            holdings = self._holdings(now)
            wallets = {
                holder: wallet
                for holder in holders & set(holdings.grants)
                if (wallet := self._held_wallet(holdings, holder)) and wallet.grants
            }
            this_month = Period.containing(now.date()).name
            ended = wallets and any(month.end <= now for month in months)
            closed = self._store.closed_periods(this_month, set(wallets)) if ended else {}
            written: dict[str, list[CreditEntry]] = defaultdict(list)
            for month in months:
                at = min(now, month.end - LAST_INSTANT)
                payers = {
                    h for h, w in wallets.items() if month.name not in closed.get(h, ()) and _prepaid_from(w) <= at
                }
                for holder, charges in (price(month, payers, at) if payers else {}).items():
                    wallet = wallets[holder]
                    before = len(wallet.entries)
                    for charge in charges:
                        wallet.burn(charge)
                    written[holder] += wallet.entries[before:]
            self._append({holder: entries for holder, entries in written.items() if entries}, now, wallets)
        return sum(len(entries) for entries in written.values())

    def settle(self, now: datetime) -> Settled:
        """Bring the ledger of every holder to the stored usage of the hours settled by ``now``
        and record the expiries due; then the live wallets (the hours under way burned on a copy)
        of every customer whose usage or credit changed since the last pass (every one, the first
        time), which alerts and enforcement watch."""
        settle_until = floor_hour(now - SETTLE_DELAY)
        since = None if self._last_pass is None else self._last_pass - RESETTLE_MARGIN
        with self._writing, self._burning_held():
            holdings = self._holdings(now)
            grants = holdings.grants
            holders = set(grants)
            lookback = earliest_accepted(now, self._late_usage_months)
            dirty, rewatch = self._dirty, self._rewatch  # forgotten only once the pass is stored
            # what was stored of each customer's hours since a little before the last pass, kept
            # only where it moved: the margin's hours are read again, but burned and watched once
            hi = floor_hour(now) + HOUR
            marks = self._store.usage_marks(settle_until if since is None else lookback, hi, stored_since=since)
            moved = {key for key, mark in marks.items() if self._marks.get(key) != mark}
            if self._settled_until is None or since is None:
                usage = self._store.rated_usage(EVERY_HOLDER, lookback, settle_until)
            else:
                late = {customer for customer, hour in moved if hour < self._settled_until} & holders
                usage = {
                    key: amount
                    for key, amount in self._store.rated_usage(
                        late, lookback, self._settled_until, stored_since=since
                    ).items()
                    if (key.customer_id, key.hour) in moved
                }
                usage |= self._store.rated_usage(EVERY_HOLDER, self._settled_until, settle_until)
                # a new (perhaps backdated) grant may pay for usage stored long ago: all of it again
                usage |= self._store.rated_usage(dirty & holders, lookback, settle_until)
            expiring = {h for h, held in grants.items() if any(_expires(g.grant, since, now) for g in held)}
            settling = ({key.customer_id for key in usage} | expiring | dirty) & holders
            wallets = {h: self._held_wallet(holdings, h) for h in settling}
            written: dict[str, list[CreditEntry]] = {}
            by_holder = _by_customer(usage)
            closed = _closed_months(self._store, usage if settling else {}, now, EVERY_HOLDER)
            for holder in settling:
                wallet = wallets[holder]
                if wallet is None:
                    continue
                before = len(wallet.entries)
                charges = by_holder.get(holder, [])
                _burn_hours(wallet, charges, _settled_at, closed.get(holder, set()))
                wallet.expire(now)
                if len(wallet.entries) > before:
                    written[holder] = wallet.entries[before:]
            self._append(written, now, wallets)
            unsettled = {customer for customer, hour in moved if hour >= settle_until}
            watched = set(written) | expiring | dirty | rewatch | unsettled | (holders if since is None else set())
            for holder in (watched & holders) - settling:
                wallets[holder] = self._held_wallet(holdings, holder)
            # a holder whose stored credit cannot be read is neither settled nor watched: it would
            # look like a customer without credit (logged where it was found)
            watched -= self._store.unreadable | {h for h, wallet in wallets.items() if wallet is None}
            self._settled_until, self._last_pass = settle_until, now
            self._dirty, self._rewatch = set(), set()
            # a later read returns only what was stored since: what it leaves out did not move
            self._marks = marks
            live = {h: wallet.copy() for h in watched & holders if (wallet := wallets[h]) is not None}
        self._burn_unsettled(live, settle_until, now, self._store)
        return Settled(sum(len(entries) for entries in written.values()), watched, live)

    def _holdings(self, now: datetime) -> Holdings:
        """Every holder's grants and ledger: read once and kept in memory, where this process
        adds what it writes. Every ``REREAD`` the stored sizes are compared, and the holders
        another API replica wrote to are read again (reading 10,000 ledgers took as long as a
        pass: a pass reads only usage)."""
        if self._held is None:
            grants = self._store.grants()
            self._held = Holdings(grants, self._store.entries(set(grants)))
        elif now - self._held_read_at >= REREAD:
            held = self._held
            stored = self._store.ledger_sizes()
            changed = {
                holder
                for holder in stored.keys() | held.grants.keys()
                if stored.get(holder) != (len(held.grants.get(holder, ())), len(held.ledgers.get(holder, ())))
            }
            grants = self._store.grants(changed) if changed else {}
            entries = self._store.entries(changed) if changed else {}
            for holder in changed:
                held.wallets.pop(holder, None)
                held.ledgers[holder] = entries.get(holder, [])
                if holder in grants:
                    held.grants[holder] = grants[holder]
                else:  # none stored, or one that cannot be read (logged)
                    held.grants.pop(holder, None)
        else:
            return self._held
        self._held_read_at = now
        return self._held

    def _held_wallet(self, holdings: Holdings, holder: str) -> Wallet | None:
        """The wallet of ``holder`` (it holds a grant) that settlements burn on (under ``_writing``)."""
        wallet = holdings.wallets.get(holder)
        if wallet is None:
            wallet = _wallet_of(holder, holdings.grants[holder], holdings.ledgers.get(holder, []))
            if wallet is not None:
                holdings.wallets[holder] = wallet
        return wallet

    @contextmanager
    def _burning_held(self) -> Iterator[None]:
        """Around burns on the held wallets: if their entries may not all be stored, forget every
        held figure, so the next pass starts again from what is."""
        try:
            yield
        except BaseException:
            self._held = None
            raise

    def _append(
        self, written: dict[str, list[CreditEntry]], now: datetime, recorded_on: Mapping[str, Wallet | None] = {}
    ) -> None:
        """Store ``written`` (under ``_writing``), and keep the ledgers held in memory in step; a
        held wallet stays only if ``written`` was recorded on it (``recorded_on``)."""
        self._store.append(written, now)
        if self._held is not None:
            for holder, entries in written.items():
                self._held.ledgers.setdefault(holder, []).extend(entries)
                if self._held.wallets.get(holder) is not recorded_on.get(holder):
                    self._held.wallets.pop(holder, None)

    def _burn_not_settled(self, wallets: dict[str, Wallet], now: datetime) -> None:
        """Burn on ``wallets`` (read for the API, not held) what the next settlement will: the
        settled hours given usage since a little before the last pass, then the hours not settled
        yet. A balance then follows usage as soon as the usage API shows it, whether or not a
        pass has settled it; what a pass already settled burns nothing more (the same amount)."""
        settled, last = self._settled_until or floor_hour(now - SETTLE_DELAY), self._last_pass
        if wallets and last is not None:
            lookback = earliest_accepted(now, self._late_usage_months)
            late = self._reads.rated_usage(_whose(wallets), lookback, settled, stored_since=last - RESETTLE_MARGIN)
            closed = _closed_months(self._reads, late, now, set(wallets))
            for holder, charges in _by_customer(late).items():
                if holder in wallets:
                    _burn_hours(wallets[holder], charges, _settled_at, closed.get(holder, set()))
        self._burn_unsettled(wallets, settled, now, self._reads)

    def _burn_unsettled(self, wallets: dict[str, Wallet], settled: datetime, now: datetime, store: CreditStore) -> None:
        """Burn the usage of the hours not settled yet (from ``settled``), as the next
        settlements will, on the wallets given (read from ``store``)."""
        if not wallets:
            return
        unsettled = store.rated_usage(_whose(wallets), settled, floor_hour(now) + HOUR)
        for holder, charges in _by_customer(unsettled).items():
            if holder in wallets:
                # the hours under way are of a month not invoiced yet
                _burn_hours(wallets[holder], charges, lambda key: min(now, key.hour + HOUR - LAST_INSTANT), set())

    def _wallet(self, holder_id: str) -> tuple[Wallet, dict[str, StoredGrant]]:
        stored = {g.grant.grant_id: g for g in self.grants(holder_id)}
        return Wallet.of((g.grant for g in stored.values()), self.ledger(holder_id)), stored


def _pay_invoice(wallet: Wallet, record: InvoiceRecord) -> Decimal:
    """Burn ``record``'s charges on ``wallet`` in place of its period's hourly usage burns;
    what credit paid of it, exact."""
    period = Period.parse(record.period)
    at = period.end - LAST_INSTANT
    hourly = {
        e.reference
        for e in wallet.entries
        if e.reference.startswith("usage/") and period.start <= _hour_of(e.reference) < period.end
    }
    for reference in sorted(hourly):
        wallet.burn(Charge(reference, record.currency, Decimal(0), at))
    charges = invoice_record_charges(record, at)
    own = f"{INVOICE_CHARGE}{record.invoice_id}/"
    stale = {e.reference for e in wallet.entries if e.reference.startswith(own)}
    for reference in sorted(stale - {charge.charge_id for charge in charges}):
        wallet.burn(Charge(reference, record.currency, Decimal(0), at))
    for charge in charges:
        wallet.burn(charge)
    taken = [e for e in wallet.entries if e.reference.startswith(own) and e.grant_id]
    return -sum((e.amount for e in taken), Decimal(0))


def invoice_record_charges(record: InvoiceRecord, at: datetime) -> list[Charge]:
    """What ``record`` charges on its buyer's credit at ``at`` (``billing.credits.invoice_charges``)."""
    lines = [(_product_of(line.meter, line.dimension), line.meter, line.amount) for line in record.lines]
    return invoice_charges(
        record.invoice_id,
        record.currency,
        lines,
        record.discount_percent,
        record.tax_rate_percent,
        record.tax_inclusive,
        record.total,
        at,
    )


def _burn_hours(
    wallet: Wallet,
    charges: list[tuple[UsageKey, Decimal]],
    charged_at: Callable[[UsageKey], datetime],
    closed: set[str],
) -> None:
    """Burn each hour's rated usage on ``wallet``, oldest first: the hours that end after its
    first grant took effect, of months not ``closed`` (a close drafted their invoice) and that
    no invoice has paid from credit. A closed month's usage is billed by its invoice, which the
    close pays from credit: a grant made later, even backdated, does not pay it a second time."""
    if not wallet.grants:
        return
    prepaid_from = _prepaid_from(wallet)
    billed = closed | _paid_months(wallet)
    for key, amount in charges:
        if key.hour + HOUR > prepaid_from and not (billed and _month(key) in billed):
            wallet.burn(_charge(key, amount, charged_at(key)))


def _whose(wallets: dict[str, Wallet]) -> list[str] | None:
    """The holders to read usage of for ``wallets``: past ``MANY_HOLDERS``, every holder."""
    return EVERY_HOLDER if len(wallets) > MANY_HOLDERS else list(wallets)


def _closed_months(
    store: CreditStore, usage: Collection[UsageKey], now: datetime, holders: set[str] | None
) -> dict[str, set[str]]:
    """The ended months a close drafted invoices for, per holder (of ``holders``; None: of
    everyone), asked only when ``usage`` has an hour of an ended month: most passes have none."""
    this_month = Period.containing(now.date())
    if not any(key.hour < this_month.start for key in usage):
        return {}
    return store.closed_periods(this_month.name, holders)


def _settled_at(key: UsageKey) -> datetime:
    """When a settlement charges an hour: its last instant, so the grants in force then pay it."""
    return key.hour + HOUR - LAST_INSTANT


def _prepaid_from(wallet: Wallet) -> datetime:
    """When the first of a wallet's grants took effect (it holds one at least)."""
    return min(grant.effective_at for grant in wallet.grants.values())


def _paid_months(wallet: Wallet) -> set[str]:
    """The periods an invoice charged on the wallet: their usage is paid through the invoice,
    not by the hour (an invoice id starts with its period)."""
    return {charge.split("/")[1].split(".")[0] for charge in wallet.invoice_charge_ids()}


def _month(key: UsageKey) -> str:
    return f"{key.hour:%Y-%m}"


def _hour_of(reference: str) -> datetime:
    """The hour a ``usage/<currency>/<hour>/…`` reference charges."""
    return datetime.strptime(reference.split("/")[2], "%Y-%m-%dT%H").replace(tzinfo=UTC)


def _product_of(meter: str, dimension: str) -> str:
    """The product an invoice line's usage is of, as the stream names it: a VM's, a vDC's, or
    an XaaS item's sku (the line's dimension)."""
    if not meter:
        return ""
    if Meter(meter).is_xaas:
        return dimension
    return "vdc" if meter.startswith("vdc_") else "vm"


def _wallet_of(holder: str, grants: list[StoredGrant], entries: list[CreditEntry]) -> Wallet | None:
    """The holder's wallet; None (logged) if its stored figures cannot make one: one holder's
    trouble does not stop the others' settlement."""
    try:
        return Wallet.of((g.grant for g in grants), entries)
    except MeterlineError as error:
        log.error("the credit of %s cannot be settled: %s", holder, error)
        return None


def _charge(key: UsageKey, amount: Decimal, at: datetime) -> Charge:
    return Charge(key.reference, key.currency, max(amount, ZERO), at, key.product, key.meter)


def _by_hour(item: tuple[UsageKey, Decimal]) -> datetime:
    return item[0].hour


def _by_customer(usage: dict[UsageKey, Decimal]) -> dict[str, list[tuple[UsageKey, Decimal]]]:
    """Each customer's charges, oldest hour first."""
    grouped: dict[str, list[tuple[UsageKey, Decimal]]] = defaultdict(list)
    for key, amount in usage.items():
        grouped[key.customer_id].append((key, amount))
    for charges in grouped.values():
        if len(charges) > 1:
            charges.sort(key=_by_hour)
    return dict(grouped)


def _expires(grant: CreditGrant, since: datetime | None, now: datetime) -> bool:
    """Whether ``grant`` expired in ``(since, now]`` (since None: by ``now``)."""
    return grant.expires_at is not None and (since is None or since < grant.expires_at) and grant.expires_at <= now
