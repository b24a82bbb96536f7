"""Prepaid credit: grants, the order usage burns them in, and balances derived from a ledger.

Pure rules, no storage. A holder (a customer, or a partner for what it buys from the provider)
holds grants; every change to what they hold is an immutable ``CreditEntry`` (a grant, a burn,
an expiry...), and a balance is what the entries up to an instant add up to, so it can be shown
as it stood at any instant. A charge (rated usage, a fee) burns the grants that may pay it, in
``BURN_ORDER``:

1. grants scoped to what is charged (a product or a meter) before grants for anything;
2. then by priority, lowest number first;
3. then the soonest to expire (a grant that never expires last);
4. then free grants before paid ones;
5. then the oldest (by when it took effect, then by id).

What no grant covers is left to bill (``Burn.uncovered``, recorded as an ``uncovered`` entry that
belongs to no grant). A charge can grow or shrink after its first burn (a late event adds to an
hour's usage, a corrected invoice takes from it): burning it again with its new amount records
only the difference, as ``adjustment`` entries, so what a charge has taken always equals its
latest amount. Amounts are exact ``Decimal``s in the grant's currency; a balance is rounded only
where it is shown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from billing.money import apportioned, minor_unit, round_money
from meterline.exceptions import InvalidQuery

ZERO = Decimal(0)
NEVER = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)

INVOICE_CHARGE = "invoice/"
"""How the id of an invoice's charge starts (``invoice_charges``): ``invoice/<invoice id>/…``."""

BURN_ORDER = ("scope", "priority", "expiry", "free before paid", "oldest")
"""The order a charge burns the grants that may pay it (see the module's documentation)."""


class EntryKind(StrEnum):
    GRANT = "grant"
    TOP_UP = "top_up"
    BURN = "burn"
    EXPIRY = "expiry"
    VOID = "void"
    ADJUSTMENT = "adjustment"
    UNCOVERED = "uncovered"
    """What a charge's credit did not cover, left to bill; it belongs to no grant."""


CHARGING = frozenset({EntryKind.BURN, EntryKind.ADJUSTMENT, EntryKind.UNCOVERED})
"""The entries a charge records: together they add up to minus what was charged."""


@dataclass(frozen=True)
class CreditGrant:
    """Credit a holder may spend: ``amount`` of ``currency`` from ``effective_at`` until
    ``expires_at`` (exclusive; None: never), on what ``scope`` names (products or meters;
    empty: anything)."""

    grant_id: str
    holder_id: str
    currency: str
    amount: Decimal
    effective_at: datetime
    expires_at: datetime | None = None
    priority: int = 0
    scope: frozenset[str] = frozenset()
    paid: bool = False
    paid_amount: Decimal | None = None
    """What the holder paid for it, for a paid grant (a discount makes it less than ``amount``)."""

    def __post_init__(self) -> None:
        if self.amount <= ZERO:
            raise InvalidQuery(f"grant {self.grant_id}: an amount must be above zero, not {self.amount}")
        if self.effective_at.tzinfo is None or (self.expires_at is not None and self.expires_at.tzinfo is None):
            raise InvalidQuery(f"grant {self.grant_id}: times must be UTC")
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise InvalidQuery(f"grant {self.grant_id}: it expires at or before it takes effect")
        if self.paid_amount is not None and (not self.paid or self.paid_amount < ZERO):
            raise InvalidQuery(f"grant {self.grant_id}: only a paid grant has a paid amount, zero or more")

    def in_force(self, at: datetime) -> bool:
        return self.effective_at <= at < (self.expires_at or NEVER)

    def covers(self, charge: Charge) -> bool:
        """Whether it may pay ``charge``: same currency, in force, and in scope."""
        in_scope = not self.scope or bool(self.scope & {charge.product, charge.meter})
        return self.currency == charge.currency and self.in_force(charge.at) and in_scope

    def burn_rank(self) -> tuple[bool, int, datetime, bool, datetime, str]:
        """Its place in ``BURN_ORDER`` among the grants that cover a charge (lowest first)."""
        return (
            not self.scope,
            self.priority,
            self.expires_at or NEVER,
            self.paid,
            self.effective_at,
            self.grant_id,
        )


@dataclass(frozen=True)
class Charge:
    """Something to pay for from credit: ``amount`` of ``currency`` for usage of ``meter`` of
    ``product`` at ``at`` (or a fee, whose product is its own and meter empty)."""

    charge_id: str
    currency: str
    amount: Decimal
    at: datetime
    product: str = ""
    meter: str = ""
    step: Decimal | None = None
    """Credit pays it in whole steps (an invoice's charge: its currency's minor unit, what the
    invoice can say credit paid); None: exactly (usage as it is rated)."""


@dataclass(frozen=True)
class CreditEntry:
    """One immutable change to what a grant holds: positive adds, negative takes away."""

    grant_id: str
    kind: EntryKind
    amount: Decimal
    at: datetime
    reference: str = ""
    """What caused it: a charge's id for a burn, the grant's own id for a grant or top-up."""
    entry_id: str = ""
    """``<reference>/<n>``: the n-th entry with that reference, given as it is recorded, so
    an entry recomputed from the same ledger (a retried settlement) has the same id."""


@dataclass(frozen=True)
class Burn:
    """What a charge took from each grant, and what no grant covered (to bill)."""

    entries: tuple[CreditEntry, ...]
    uncovered: Decimal
    """How much more it left to bill (less, when credit paid what an earlier burn left)."""


@dataclass
class _Index:
    """Sums and lookups over a ledger's entries, kept as entries are recorded: a burn then
    costs the grants and the charge's own entries, not a walk over the whole ledger."""

    held: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    """What each grant holds counting every entry ("": what was left to bill, negative)."""
    latest: datetime = EARLIEST
    charged: dict[str, tuple[CreditEntry, ...]] = field(default_factory=dict)
    """Each charge's entries, by its id."""
    invoices: set[str] = field(default_factory=set)
    """The charges of invoices (``INVOICE_CHARGE``)."""
    numbered: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    """How many entries have each id base (``_id_base``)."""
    voided: dict[str, datetime] = field(default_factory=dict)
    """When each grant voided was voided."""
    expired: set[str] = field(default_factory=set)
    """The grants whose expiry was recorded."""

    @classmethod
    def of(cls, entries: Iterable[CreditEntry]) -> _Index:
        index = cls()
        for entry in entries:
            index.add(entry)
        return index

    def copy(self) -> _Index:
        # a charge's entries are tuples: the copies share them, and ``add`` replaces them
        return _Index(
            self.held.copy(),
            self.latest,
            self.charged.copy(),
            self.invoices.copy(),
            self.numbered.copy(),
            self.voided.copy(),
            self.expired.copy(),
        )

    def add(self, entry: CreditEntry) -> None:
        self.held[entry.grant_id] += entry.amount
        self.latest = max(self.latest, entry.at)
        if entry.kind in CHARGING:
            self.charged[entry.reference] = (*self.charged.get(entry.reference, ()), entry)
            if entry.reference.startswith(INVOICE_CHARGE):
                self.invoices.add(entry.reference)
        elif entry.kind is EntryKind.VOID:
            self.voided[entry.grant_id] = min(entry.at, self.voided.get(entry.grant_id, entry.at))
        elif entry.kind is EntryKind.EXPIRY:
            self.expired.add(entry.grant_id)
        self.numbered[_id_base(entry)] += 1


@dataclass
class Wallet:
    """A holder's grants and ledger: every figure is derived from the entries, which change
    only through ``record``."""

    grants: dict[str, CreditGrant] = field(default_factory=dict)
    entries: list[CreditEntry] = field(default_factory=list)
    _index: _Index | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, grants: Iterable[CreditGrant], entries: Iterable[CreditEntry] = ()) -> Wallet:
        return cls({grant.grant_id: grant for grant in grants}, list(entries))

    def copy(self) -> Wallet:
        """A wallet to burn on without changing this one (what is not settled yet, say)."""
        copied = Wallet(dict(self.grants), list(self.entries))
        copied._index = self._indexed.copy()
        return copied

    @property
    def _indexed(self) -> _Index:
        if self._index is None:
            self._index = _Index.of(self.entries)
        return self._index

    def remaining(self, at: datetime) -> dict[str, Decimal]:
        """What each grant holds at ``at``: its entries up to then, and nothing once expired
        (whether or not its expiry was recorded yet)."""
        held = self._held(at)
        return {
            grant_id: held.get(grant_id, ZERO) if grant.in_force(at) else ZERO
            for grant_id, grant in self.grants.items()
            if grant.effective_at <= at
        }

    def _held(self, at: datetime) -> Mapping[str, Decimal]:
        """What each grant's entries up to ``at`` add up to, expired or not."""
        index = self._indexed
        if at >= index.latest:  # the common case: every entry counts
            return index.held
        held: dict[str, Decimal] = defaultdict(Decimal)
        for entry in self.entries:
            if entry.at <= at:
                held[entry.grant_id] += entry.amount
        return held

    def uncovered(self) -> Decimal:
        """What the charges left to bill, credit having covered none of it (zero or more)."""
        return -self._indexed.held.get("", ZERO)

    def invoice_charge_ids(self) -> set[str]:
        """The charges of invoices it has recorded entries for."""
        return set(self._indexed.invoices)

    def granted(self, at: datetime) -> dict[str, Decimal]:
        """What the grants in force at ``at`` and not voided by then gave, per currency: the base of a
        percentage alert."""
        voided = self._indexed.voided
        given: dict[str, Decimal] = defaultdict(Decimal)
        for grant in self.grants.values():
            if grant.in_force(at) and voided.get(grant.grant_id, NEVER) > at:
                given[grant.currency] += grant.amount
        return dict(given)

    def balance(self, at: datetime) -> dict[str, Decimal]:
        """What the holder may spend at ``at``, per currency."""
        per_currency: dict[str, Decimal] = defaultdict(Decimal)
        for grant_id, amount in self.remaining(at).items():
            per_currency[self.grants[grant_id].currency] += amount
        return dict(per_currency)

    def burn(self, charge: Charge) -> Burn:
        """The entries that bring what ``charge`` has taken to its amount: from credit in
        ``BURN_ORDER``, the rest left to bill. Burning it again with another amount records only
        the difference (``adjustment`` entries); with any amount, credit that covers it now pays
        what it had left to bill (a grant made since, backdated, or credit given back)."""
        if charge.amount < ZERO:
            raise InvalidQuery(f"charge {charge.charge_id}: a negative charge is a credit, not a burn")
        before = self._indexed.charged.get(charge.charge_id, ())
        difference = charge.amount + sum((entry.amount for entry in before), ZERO)
        kind = EntryKind.ADJUSTMENT if before else EntryKind.BURN
        if difference > ZERO:
            recorded = self._take(charge, difference, kind)
        elif difference < ZERO:
            recorded = _give_back(before, -difference, charge.at, self.grants)
        else:
            recorded = []
        recorded = self.record(recorded) + self._pay_what_was_left(charge)
        uncovered = -sum((e.amount for e in recorded if e.kind is EntryKind.UNCOVERED), ZERO)
        return Burn(tuple(recorded), uncovered)

    def _pay_what_was_left(self, charge: Charge) -> list[CreditEntry]:
        """What ``charge`` left to bill, paid by the credit that covers it now, as ``_take`` would:
        ``adjustment`` entries from the grants, and an ``uncovered`` entry giving as much back."""
        owed = -sum((e.amount for e in self._indexed.charged.get(charge.charge_id, ()) if not e.grant_id), ZERO)
        if owed <= ZERO:
            return []
        paid = [entry for entry in self._take(charge, owed, EntryKind.ADJUSTMENT) if entry.grant_id]
        if not paid:
            return []
        back = CreditEntry("", EntryKind.UNCOVERED, -sum((e.amount for e in paid), ZERO), charge.at, charge.charge_id)
        return self.record([*paid, back])

    def _take(self, charge: Charge, amount: Decimal, kind: EntryKind) -> list[CreditEntry]:
        # a grant pays what it held when the charge was made, and never more than it holds now:
        # a late charge for a past hour cannot spend what later burns, a void or an expiry took
        ever, then = self._indexed.held, self._held(charge.at)
        covering = sorted((grant for grant in self.grants.values() if grant.covers(charge)), key=CreditGrant.burn_rank)
        left = amount
        parts = []
        for grant in covering:
            part = min(left, then.get(grant.grant_id, ZERO), ever.get(grant.grant_id, ZERO))
            if part > ZERO:
                parts.append((grant.grant_id, part))
                left -= part
            if not left:
                break
        if charge.step is not None:  # what is not whole steps is left to bill
            over = sum((part for _, part in parts), ZERO) % charge.step
            parts, left = _less(parts, over), left + over
        taken = [CreditEntry(grant_id, kind, -part, charge.at, charge.charge_id) for grant_id, part in parts]
        if left:
            taken.append(CreditEntry("", EntryKind.UNCOVERED, -left, charge.at, charge.charge_id))
        return taken

    def expire(self, until: datetime) -> list[CreditEntry]:
        """Record the expiry of what each grant expired by ``until`` still held then."""
        expired = self._indexed.expired
        recorded = []
        for grant in self.grants.values():
            if grant.expires_at is None or grant.expires_at > until or grant.grant_id in expired:
                continue
            own = (entry for entry in self.entries if entry.grant_id == grant.grant_id)
            just_before = sum((entry.amount for entry in own if entry.at < grant.expires_at), ZERO)
            if just_before:
                expiry = CreditEntry(grant.grant_id, EntryKind.EXPIRY, -just_before, grant.expires_at, "expiry")
                recorded.append(expiry)
        return self.record(recorded)

    def void(self, grant_id: str, at: datetime) -> list[CreditEntry]:
        """Take away what a grant still holds: it pays nothing after ``at`` (or, for a grant not in
        effect yet, ever). An expired grant holds nothing, its expiry recorded yet or not."""
        grant = self.grants[grant_id]
        if grant.expires_at is not None and grant.expires_at <= at:
            return []
        held = self._indexed.held.get(grant_id, ZERO)
        when = max(at, grant.effective_at)
        return self.record([CreditEntry(grant_id, EntryKind.VOID, -held, when, "void")] if held > ZERO else [])

    def record(self, entries: Iterable[CreditEntry]) -> list[CreditEntry]:
        """Add ``entries`` to the ledger, each given its id."""
        index = self._indexed
        recorded = []
        for entry in entries:
            if not entry.entry_id:
                base = _id_base(entry)
                numbered = f"{base}/{index.numbered[base]}"
                entry = CreditEntry(entry.grant_id, entry.kind, entry.amount, entry.at, entry.reference, numbered)
            index.add(entry)
            self.entries.append(entry)
            recorded.append(entry)
        return recorded


def _less(parts: list[tuple[str, Decimal]], over: Decimal) -> list[tuple[str, Decimal]]:
    """``parts`` (what each grant pays) less ``over`` in all, taken off the last grants first (the
    reverse of the burn order)."""
    trimmed = []
    for grant_id, part in reversed(parts):
        cut = min(part, over)
        over -= cut
        if part > cut:
            trimmed.append((grant_id, part - cut))
    return trimmed[::-1]


def _give_back(
    before: Sequence[CreditEntry], amount: Decimal, at: datetime, grants: dict[str, CreditGrant]
) -> list[CreditEntry]:
    """Entries returning ``amount`` of what a charge took: what was left to bill first, then the
    grants it burned, the last in ``BURN_ORDER`` first (the reverse of how it took them)."""
    taken: dict[str, Decimal] = defaultdict(Decimal)
    for entry in before:
        taken[entry.grant_id] -= entry.amount
    order = sorted((g for g in taken if g), key=lambda g: grants[g].burn_rank(), reverse=True)
    given, left = [], amount
    reference = before[0].reference
    for grant_id in ["", *order]:
        part = min(left, taken[grant_id])
        if part > ZERO:
            kind = EntryKind.UNCOVERED if not grant_id else EntryKind.ADJUSTMENT
            given.append(CreditEntry(grant_id, kind, part, at, reference))
            left -= part
    return given


def _id_base(entry: CreditEntry) -> str:
    """A charge's entries are numbered per charge; a grant's own (its grant, expiry, void) per grant."""
    return entry.reference if entry.kind in CHARGING else f"{entry.reference}/{entry.grant_id}"


def granted(grant: CreditGrant, kind: EntryKind = EntryKind.GRANT) -> CreditEntry:
    """The entry that puts a grant's amount in the ledger when it takes effect (a grant, or a
    top-up)."""
    return CreditEntry(grant.grant_id, kind, grant.amount, grant.effective_at, kind.value)


def invoice_charges(
    invoice_id: str,
    currency: str,
    lines: Iterable[tuple[str, str, Decimal]],
    discount_percent: Decimal,
    tax_rate_percent: Decimal,
    tax_inclusive: bool,
    total: Decimal,
    at: datetime,
) -> list[Charge]:
    """What an invoice charges on credit: per product and meter of its lines (``(product, meter,
    amount)``), what the buyer pays for them, the discount taken off and the tax added (credit is
    a means of payment: it pays the amount due, tax included). A group whose lines add up to
    nothing or less is charged nothing. Charges are whole minor units, what an invoice can say
    credit paid: the exact figures' sum rounded once (at most the invoice's ``total``), shared
    between the groups by their exact figures."""
    grouped: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for product, meter, amount in lines:
        grouped[(product, meter)] += amount
    kept = (100 - discount_percent) / 100
    taxed = Decimal(1) if tax_inclusive else (100 + tax_rate_percent) / 100
    exact = {group: max(amount * kept * taxed, ZERO) for group, amount in sorted(grouped.items())}
    owed = max(min(round_money(sum(exact.values(), ZERO), currency), total), ZERO)
    step = minor_unit(currency)
    return [
        Charge(
            f"{INVOICE_CHARGE}{invoice_id}/{product or '-'}/{meter or '-'}", currency, amount, at, product, meter, step
        )
        for (product, meter), amount in apportioned(owed, exact, step).items()
    ]
