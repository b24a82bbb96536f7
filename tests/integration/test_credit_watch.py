"""A credit pass and the webhook outbox on the real engine (chDB), without a broker: what a pass
stores when it dies half-way, which months credit pays, who is suspended, and how the outbox
copes with endpoints that are slow or answer without end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from api.credit_accounts import REREAD, CreditAccounts, GrantRequest
from api.credit_watch import CreditWatch
from api.partner_credit import PartnerCredit
from api.webhooks import RESCAN, SENDERS, TENANT_SENDERS, Outbox, allowed_hosts
from billing.adapters.kafka_alerts import AlertTopics
from billing.burn_rate import rate_of, shown_rate
from billing.catalog import Catalog
from billing.credits import CreditEntry, EntryKind
from billing.invoices import InvoiceStatus
from billing.period_close import CloseResult, close_period
from billing.periods import Period
from billing.pricing import price_book
from billing.scope import EVERYTHING, partner_scope
from meterline.settings import Settings
from storage.alert_store import AlertRow, AlertStore, AnyRow, DeliveryRow, EndpointRow, RuleRow, TopUpPlanRow
from storage.billed_usage import PeriodUsage
from storage.connection import ClientPool
from storage.credit_store import CreditStore
from storage.dashboards import Dashboards
from storage.ledger import Ledger
from storage.usage_read import floor_hour
from storage.usage_store import UsageStore
from tests.factories import catalog_document, xaas_usage
from tests.integration.harness import free_port
from tests.integration.test_identities import DB, frame

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)
RESTORE_GB_PRICE = Decimal("0.045")


class Faulty(AlertStore):
    """The real store, whose inserts of one row type fail while ``failing`` names it: a pass
    that dies between two of its writes."""

    failing: type[Any] | None = None

    def save(self, rows: Any) -> None:
        if rows and type(rows[0]) is self.failing:
            raise ConnectionError("the engine went away")
        super().save(rows)


@dataclass
class Credit:
    engine: Any
    catalog: Catalog
    accounts: CreditAccounts
    store: Faulty
    watch: CreditWatch

    def use(self, customer: str, gigabytes: str, at: datetime, backup: str = "") -> None:
        """A restore of ``gigabytes`` in the hour before ``at``, rated and stored at ``NOW``."""
        event = xaas_usage("restore_gb", gigabytes, customer, at, resource_id=backup or f"backup-of-{customer}")
        UsageStore(self.engine, DB).write(frame([event], price_book(self.catalog)), NOW)

    def close(self, month: Period, at: datetime, catalog: Catalog | None = None) -> CloseResult:
        """Close ``month`` at ``at``, its drafts paid from credit as the API pays them."""
        pay = lambda records: self.accounts.apply_to_invoices(records, at)  # noqa: E731
        usage = PeriodUsage(self.engine, DB)
        return close_period(Ledger(self.engine, DB), usage, catalog or self.catalog, month, at, pay_from_credit=pay)

    def grant(self, holder: str, amount: str, effective_at: datetime, key: str = "g1") -> None:
        request = GrantRequest(
            holder, "EUR", Decimal(amount), effective_at, None, 0, frozenset(), False, None, key, key
        )
        self.accounts.grant(request, EntryKind.GRANT, "test", NOW)

    def balance(self, holder: str, now: datetime = NOW) -> Decimal:
        return self.accounts.balance(holder, now).per_currency.get("EUR", Decimal(0))


@pytest.fixture
def credit(engine: Any) -> Iterator[Credit]:
    document = catalog_document()
    document["customers"][0] |= {"billing": "prepay", "credit_grace": "1.00"}  # "direct"
    catalog = Catalog.model_validate(document)
    accounts = CreditAccounts(CreditStore(engine, DB), late_usage_months=3)
    store = Faulty(engine, DB)
    dashboards = Dashboards(ClientPool(lambda: engine, 1), DB)
    partners = PartnerCredit(accounts, CreditStore(engine, DB), PeriodUsage(engine, DB))
    # the watch reads the catalog of the moment: a test may change it
    credit = Credit(
        engine, catalog, accounts, store, CreditWatch(accounts, store, dashboards, lambda: credit.catalog, partners)
    )
    yield credit


def rule(rule_id: str, owner: str, customer: str, under: str) -> RuleRow:
    return RuleRow(rule_id, owner, "customer", customer, "balance_below", Decimal(under), False, "test", NOW)


def test_a_pass_that_dies_before_its_outbox_is_stored_is_redone_and_one_that_dies_after_is_not_repeated(
    credit: Credit,
):
    """ "resold" holds 5.00, under its rule's 10.00: the alert fires. The first pass dies storing
    its outbox: nothing of it may be kept, or the next pass would take the alert as sent. The
    second dies just after the outbox: the third stores the alert without queueing it twice."""
    credit.grant("resold", "5.00", NOW - timedelta(days=1))
    credit.store.save([rule("r-1", "acme", "resold", "10")])
    credit.store.failing = DeliveryRow
    with pytest.raises(ConnectionError):
        credit.watch.run_pass(NOW)
    assert credit.store.alerts() == [] and credit.store.states() == []

    # nothing moved since: a failed pass has the next one watch its customers again
    credit.store.failing = AlertRow
    with pytest.raises(ConnectionError):
        credit.watch.run_pass(NOW + timedelta(seconds=1))
    credit.store.failing = None
    credit.watch.run_pass(NOW + timedelta(seconds=2))

    queued = credit.store.due_deliveries(NOW + timedelta(seconds=3))
    assert [(d.message_id, d.endpoint_id) for d in queued] == [("r-1.resold.1", "topic:alerts")]
    assert [alert.alert_id for alert in credit.store.alerts()] == ["r-1.resold.1"]
    assert [(s.rule_id, s.firing, s.crossings) for s in credit.store.states()] == [("r-1", True, 1)]


def test_a_customer_is_watched_each_time_its_usage_moves_and_not_while_it_stays(credit: Credit):
    """ "resold" holds 10.00, its rule alerts under 9.00. 20 GB restored leave 10.00 - 0.90 = 9.10:
    no alert. 10 GB more in that hour, still under way, leave 9.10 - 0.45 = 8.65: the alert fires, though the
    hour was seen before. Once nothing moves, a pass no longer looks at the customer."""
    credit.grant("resold", "10.00", NOW - timedelta(days=1))
    credit.store.save([rule("r-1", "acme", "resold", "9")])
    credit.watch.run_pass(NOW)
    hour_under_way = floor_hour(NOW)
    credit.use("resold", "20", hour_under_way + timedelta(hours=1))
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    assert credit.balance("resold", NOW + timedelta(seconds=1)) == Decimal("9.10")
    assert credit.store.alerts() == []

    credit.use("resold", "10", hour_under_way + timedelta(hours=1), backup="another-backup")
    credit.watch.run_pass(NOW + timedelta(seconds=2))
    assert [alert.alert_id for alert in credit.store.alerts()] == ["r-1.resold.1"]
    assert "resold" not in credit.accounts.settle(NOW + timedelta(seconds=3)).watched


class LosingLedger(CreditStore):
    """The real store, whose next ``losing`` writes of ledger entries fail."""

    losing = 0

    def append(self, entries: dict[str, list[CreditEntry]], recorded_at: datetime) -> None:
        if entries and self.losing:
            self.losing -= 1
            raise ConnectionError("the engine went away")
        super().append(entries, recorded_at)


def test_a_settlement_whose_entries_are_not_stored_is_burned_again_by_the_next_pass(engine: Any):
    """ "resold" holds 10.00 and restores 20 GB in a settled hour: 0.90. The pass that burns it
    cannot store its entries; the next one, a second later (before the held ledgers are read
    again), burns it, once: 10.00 - 0.90 = 9.10."""
    store = LosingLedger(engine, DB)
    accounts = CreditAccounts(store, late_usage_months=3)
    request = GrantRequest(
        "resold", "EUR", Decimal("10.00"), NOW - timedelta(days=1), None, 0, frozenset(), False, None, "k", "k"
    )
    accounts.grant(request, EntryKind.GRANT, "test", NOW)
    accounts.settle(NOW)
    event = xaas_usage("restore_gb", "20", "resold", floor_hour(NOW))
    UsageStore(engine, DB).write(frame([event], price_book(Catalog.model_validate(catalog_document()))), NOW)
    store.losing = 1
    with pytest.raises(ConnectionError):
        accounts.settle(NOW + timedelta(seconds=1))
    accounts.settle(NOW + timedelta(seconds=2))
    burns = [e.amount for e in accounts.ledger("resold") if e.kind is EntryKind.BURN]
    assert burns == [Decimal("-0.90")]
    assert accounts.balance("resold", NOW + timedelta(seconds=2)).per_currency == {"EUR": Decimal("9.10")}


def test_a_grant_voided_between_two_passes_pays_nothing_the_second_burns(credit: Credit):
    """ "resold" holds 10.00, seen by a first pass; the grant is voided, then 20 GB restored in
    a settled hour: the pass a second later (before the held ledgers are read again) leaves the
    0.90 to bill and takes nothing from the voided grant."""
    credit.grant("resold", "10.00", NOW - timedelta(days=1))
    credit.watch.run_pass(NOW)
    [grant] = credit.accounts.grants("resold")
    credit.accounts.void("resold", grant.grant.grant_id, NOW)
    credit.use("resold", "20", floor_hour(NOW))
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    charged = [(e.kind, e.amount) for e in credit.accounts.ledger("resold") if e.reference.startswith("usage/")]
    assert charged == [(EntryKind.UNCOVERED, Decimal("-0.90"))]
    assert credit.balance("resold", NOW + timedelta(seconds=1)) == Decimal("0")


def test_a_balance_follows_usage_of_a_settled_hour_before_a_pass_settles_it_and_once_after(credit: Credit):
    """ "resold" holds 10.00, seen by a pass. 20 GB restored in the hour before (settled): the
    balance shows 10.00 - 0.90 = 9.10 at once, and still 9.10 once the next pass burned it."""
    credit.grant("resold", "10.00", NOW - timedelta(days=1))
    credit.watch.run_pass(NOW)
    credit.use("resold", "20", floor_hour(NOW))
    assert credit.balance("resold", NOW + timedelta(seconds=1)) == Decimal("9.10")
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    assert [e.amount for e in credit.accounts.ledger("resold") if e.kind is EntryKind.BURN] == [Decimal("-0.90")]
    assert credit.balance("resold", NOW + timedelta(seconds=2)) == Decimal("9.10")


def test_a_backdated_grant_pays_what_a_settled_hour_had_left_to_bill(credit: Credit):
    """ "resold" holds 0.50 and restores 20 GB in a settled hour: 0.90, of which 0.50 is paid and
    0.40 left to bill. 5.00 granted later, backdated a day, pays the 0.40: nothing left to bill,
    0.50 + 5.00 - 0.90 = 4.60 held, and the hour's entries still add up to -0.90."""
    credit.grant("resold", "0.50", NOW - timedelta(days=1))
    credit.use("resold", "20", floor_hour(NOW))
    credit.watch.run_pass(NOW)
    assert credit.balance("resold") == Decimal("0")
    credit.grant("resold", "5.00", NOW - timedelta(days=1), key="later")
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    hour = [e for e in credit.accounts.ledger("resold") if e.reference.startswith("usage/")]
    assert sorted((e.kind.value, e.amount) for e in hour) == [
        ("adjustment", Decimal("-0.40")),
        ("burn", Decimal("-0.50")),
        ("uncovered", Decimal("-0.40")),
        ("uncovered", Decimal("0.40")),
    ]
    assert credit.balance("resold", NOW + timedelta(seconds=1)) == Decimal("4.60")


def test_what_another_api_replica_wrote_counts_once_the_held_ledgers_are_compared_again(credit: Credit):
    """ "resold" holds 10.00 and "direct" 5.00, both seen by a first pass. Another replica voids
    "resold"'s grant and grants "direct" 2.00 more; then each restores 20 GB in a settled hour
    (0.90). Past ``REREAD`` the pass reads both again: "resold" leaves the 0.90 to bill, and
    "direct" holds 5.00 + 2.00 - 0.90 = 6.10."""
    credit.grant("resold", "10.00", NOW - timedelta(days=1))
    credit.grant("direct", "5.00", NOW - timedelta(days=1))
    credit.watch.run_pass(NOW)
    other = CreditAccounts(CreditStore(credit.engine, DB), late_usage_months=3)
    [grant] = other.grants("resold")
    other.void("resold", grant.grant.grant_id, NOW)
    more = GrantRequest(
        "direct", "EUR", Decimal("2.00"), NOW - timedelta(days=1), None, 0, frozenset(), False, None, "more", "more"
    )
    other.grant(more, EntryKind.GRANT, "test", NOW)
    credit.use("resold", "20", floor_hour(NOW))
    credit.use("direct", "20", floor_hour(NOW))
    later = NOW + REREAD
    credit.watch.run_pass(later)
    charged = [(e.kind, e.amount) for e in credit.accounts.ledger("resold") if e.reference.startswith("usage/")]
    assert charged == [(EntryKind.UNCOVERED, Decimal("-0.90"))]
    assert credit.balance("direct", later) == Decimal("6.10")


def test_credit_granted_after_a_month_was_invoiced_does_not_pay_that_month_again(credit: Credit):
    """October: "direct" used 100 GB of restores (100 x 0.045 = 4.50) and was invoiced for it,
    without credit; "resold" used 20 GB (0.90) and was not invoiced yet. Both are granted 10.00
    in November, backdated to 1 October. "direct" keeps 10.00 (its October is paid by its
    invoice); "resold" has 10.00 - 0.90 = 9.10."""
    credit.use("direct", "100", datetime(2026, 10, 15, 10, tzinfo=UTC))
    credit.use("resold", "20", datetime(2026, 10, 15, 10, tzinfo=UTC))
    credit.engine.command(
        f"INSERT INTO {DB}.invoices (invoice_id, document_type, status, period, issuer_id, buyer_id, number, "
        "updated_at) VALUES ('2026-10.direct', 'invoice', 'issued', '2026-10', 'acme', 'direct', 'ACME-1', now64(3))"
    )
    october = datetime(2026, 10, 1, tzinfo=UTC)
    credit.grant("direct", "10.00", october)
    credit.grant("resold", "10.00", october)
    credit.accounts.settle(NOW)
    assert credit.balance("direct") == Decimal("10.00")
    assert credit.balance("resold") == Decimal("9.10")
    burned = [e for e in credit.accounts.ledger("direct") if e.kind is not EntryKind.GRANT]
    assert burned == []


def test_credit_granted_after_a_month_was_closed_leaves_its_usage_to_the_close(credit: Credit):
    """October: "direct" used 100 GB of restores (4.50) and the close drafted its invoice, without
    credit; the draft is not issued yet. 10.00 granted in November, backdated to 1 October, does
    not pay October by the hour: the draft, issued as it is, bills those 4.50, and a close again
    would pay them from credit. The balance stays 10.00."""
    credit.use("direct", "100", datetime(2026, 10, 15, 10, tzinfo=UTC))
    credit.engine.command(
        f"INSERT INTO {DB}.invoices (invoice_id, document_type, status, period, issuer_id, buyer_id, number, "
        "updated_at) VALUES ('2026-10.direct', 'invoice', 'draft', '2026-10', 'acme', 'direct', '', now64(3))"
    )
    credit.grant("direct", "10.00", datetime(2026, 10, 1, tzinfo=UTC))
    credit.accounts.settle(NOW)
    assert credit.balance("direct") == Decimal("10.00")


def test_a_prepay_customer_without_credit_is_suspended_once_its_usage_passes_its_grace(credit: Credit):
    """ "direct" is pre-pay with a grace of 1.00 and holds no credit. 20 GB (0.90) is within the
    grace: active. 20 GB more (1.80 in all) passes it: suspended. A grant of 5.00, in effect
    before that usage, pays for it and lifts the suspension: 5.00 - 1.80 = 3.20."""
    credit.use("direct", "20", NOW)
    credit.watch.run_pass(NOW)
    assert [row.status for row in credit.store.enforcement()] == []
    credit.use("direct", "20", NOW + timedelta(minutes=5))
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    (suspension,) = credit.store.enforcement()
    assert suspension.status == "suspended"
    assert "1.80 EUR of usage not covered (grace 1.00 EUR)" in suspension.reason
    credit.grant("direct", "5.00", NOW - timedelta(hours=3))
    credit.watch.run_pass(NOW + timedelta(seconds=2))
    (lifted,) = credit.store.enforcement()
    assert (lifted.status, lifted.reason) == ("active", "credit available: 3.20 EUR")


def test_one_holder_with_an_unreadable_grant_does_not_stop_the_others_settlement(credit: Credit):
    credit.use("resold", "20", NOW - timedelta(hours=2))
    credit.grant("resold", "10.00", NOW - timedelta(days=1))
    credit.engine.command(  # an amount of zero: no grant could have been made with it
        f"INSERT INTO {DB}.credit_grants (holder_id, grant_id, origin, currency, amount, effective_at, created_at) "
        "VALUES ('direct', 'g-broken', 'grant', 'EUR', 0, now64(3), now64(3))"
    )
    credit.watch.run_pass(NOW)
    assert credit.balance("resold") == Decimal("9.10")
    assert credit.store.enforcement() == []  # "direct" is neither settled nor taken for creditless


def test_a_grant_that_turns_unreadable_between_passes_does_not_make_its_holder_look_creditless(credit: Credit):
    """ "direct" (pre-pay, grace 1.00) holds 5.00, seen by a first pass. Then a grant row no
    grant could have made appears, and 50 GB are restored (2.25, past the grace): the pass that
    compares the stored ledgers again leaves "direct" aside, unsuspended."""
    credit.grant("direct", "5.00", NOW - timedelta(days=1))
    credit.watch.run_pass(NOW)
    credit.engine.command(  # an amount of zero: no grant could have been made with it
        f"INSERT INTO {DB}.credit_grants (holder_id, grant_id, origin, currency, amount, effective_at, created_at) "
        "VALUES ('direct', 'g-broken', 'grant', 'EUR', 0, now64(3), now64(3))"
    )
    credit.use("direct", "50", floor_hour(NOW) + timedelta(hours=1))  # in the hour under way
    credit.watch.run_pass(NOW + REREAD)
    assert credit.store.enforcement() == []


def test_a_partners_credit_burns_its_customers_usage_as_it_comes_and_the_close_only_the_rest(credit: Credit):
    """ "north" (20 % off, German VAT 19 %) holds 100.00 from 1 November; its customer "resold"
    restores 200 GB from 10:30 to 11:30: 200 x 0.045 = 9.00 at the provider's price, 7.20 after
    the discount, tax 1.368 -> 1.37, 8.57 as its invoice would say (credit pays whole cents):
    91.43 left, burned over the 2 whole hours since its first usage (10:00 to 12:30): 4.285 an
    hour. A preview of November's invoices changes nothing. 100 GB more, of an hour already
    ended: 13.50, 10.80, tax 2.052 -> 2.05, 12.85: 87.15 left.

    The close adds resold's support fee: subtotal 30.00 + 13.50 = 43.50, discount 8.70, net
    34.80, tax 6.612 -> 6.61, total 41.41, all of it paid from credit: 100.00 - 41.41 = 58.59
    left, exactly what the invoice says credit paid. Usage of November stored after the close
    drafted its invoice is the close's to bill (a re-close, or an adjustment): a pass burns none
    of it."""
    november = Period.parse("2026-11")
    credit.grant("north", "100.00", november.start)
    credit.use("resold", "200", NOW - timedelta(hours=1))
    credit.watch.run_pass(NOW)
    assert credit.balance("north") == Decimal("91.43")
    recent = Dashboards(ClientPool(lambda: credit.engine, 1), DB).recent_costs(
        partner_scope(credit.catalog, "north"), NOW
    )
    (first,) = {cost.first_usage_hour for cost in recent.values()}
    partners = PartnerCredit(credit.accounts, CreditStore(credit.engine, DB), PeriodUsage(credit.engine, DB))
    pace = partners.recent_cost(credit.catalog, "north", first, NOW)
    assert shown_rate(rate_of(pace, "EUR")) == Decimal("4.285")
    ledger = Ledger(credit.engine, DB)
    credit.close(november, NOW)
    credit.use("resold", "100", NOW - timedelta(hours=3))
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    assert credit.balance("north", NOW + timedelta(seconds=1)) == Decimal("87.15")

    closing = november.end + timedelta(minutes=5)
    credit.close(november, closing)
    (invoice,) = ledger.headers(EVERYTHING, period="2026-11", buyer_id="north")
    assert (invoice.total, invoice.credit_applied) == (Decimal("41.41"), Decimal("41.41"))
    assert credit.balance("north", closing) == Decimal("58.59")

    credit.use("resold", "1000", november.end - timedelta(hours=2))
    credit.accounts.watch_again({"north", "resold"})
    credit.watch.run_pass(closing + timedelta(seconds=1))
    assert credit.balance("north", closing + timedelta(seconds=2)) == Decimal("58.59")


def test_a_draft_nothing_bills_any_more_is_voided_and_gives_its_credit_back(credit: Credit):
    """ "north" holds 100.00; its customer "resold" restores 200 GB in November. The close bills
    north 30.00 (resold's support) + 9.00 = 39.00, less 20 % = 31.20, tax 5.928 -> 5.93, 37.13,
    all from credit: 62.87 left. Resold then leaves the catalog, and the next close bills north
    nothing: north's draft and the one north made resold are voided, never issued, and the
    37.13 comes back."""
    november = Period.parse("2026-11")
    credit.grant("north", "100.00", november.start)
    credit.use("resold", "200", NOW - timedelta(hours=1))
    ledger = Ledger(credit.engine, DB)
    closing = november.end + timedelta(minutes=5)
    credit.close(november, closing)
    (north,) = ledger.headers(EVERYTHING, period="2026-11", buyer_id="north")
    assert (north.total, north.credit_applied) == (Decimal("37.13"), Decimal("37.13"))
    assert credit.balance("north", closing) == Decimal("62.87")

    document = catalog_document()
    document["customers"] = [c for c in document["customers"] if c["id"] != "resold"]
    document["subscriptions"] = [s for s in document["subscriptions"] if s["customer_id"] != "resold"]
    left = Catalog.model_validate(document)
    again = closing + timedelta(minutes=1)
    result = credit.close(november, again, left)
    assert (result.voided, result.unbilled_customers) == (2, ["resold"])
    statuses = {r.invoice_id: r.status for r in ledger.headers(EVERYTHING, period="2026-11")}
    assert statuses["2026-11.acme.north"] is statuses["2026-11.north.resold"] is InvoiceStatus.VOID
    assert credit.balance("north", again) == Decimal("100.00")
    issued = ledger.issue_period("2026-11", again, left.invoice_prefixes())
    assert {r.buyer_id for r in issued} == {"direct"}


def test_a_partners_threshold_plan_tops_it_up_once_its_customers_usage_takes_it_under_the_floor(credit: Credit):
    """ "north" (20 % off, VAT 19 %) holds 10.00 and a plan: under 5.00, top up to 20.00. Its
    customer restores 200 GB: 9.00 -> 7.20, tax 1.368 -> 1.37, 8.57 charged, leaving 1.43. The
    top-up is 20.00 - 1.43 = 18.57, so 20.00 is held; a pass that sees nothing new tops up
    nothing more."""
    credit.grant("north", "10.00", NOW - timedelta(days=1))
    plan = TopUpPlanRow("p-north", "north", "threshold", Decimal(0), Decimal(5), Decimal(20), False, "test", NOW)
    credit.store.save([plan])
    credit.watch.run_pass(NOW)
    credit.use("resold", "200", NOW - timedelta(hours=1))
    credit.watch.run_pass(NOW + timedelta(seconds=1))
    credit.watch.run_pass(NOW + timedelta(seconds=2))
    assert credit.balance("north", NOW + timedelta(seconds=2)) == Decimal("20.00")
    top_ups = [e.amount for e in credit.accounts.ledger("north") if e.kind is EntryKind.TOP_UP]
    assert top_ups == [Decimal("18.57")]


def test_a_partners_credit_is_burned_again_at_its_new_discount(credit: Credit):
    """ "north" holds 100.00; its customer restored 200 GB: 9.00, less 20 % = 7.20, tax 1.368 ->
    1.37, 8.57 charged, 91.43 left. Its discount becomes 50 %: 4.50, tax 0.855 -> 0.86, 5.36
    charged: 94.64 left."""
    credit.grant("north", "100.00", NOW - timedelta(days=1))
    credit.use("resold", "200", NOW - timedelta(hours=1))
    credit.watch.run_pass(NOW)
    credit.watch.run_pass(NOW + timedelta(minutes=5))  # nothing stored since: nothing to price again
    assert credit.balance("north", NOW + timedelta(minutes=5)) == Decimal("91.43")
    document = catalog_document()
    document["partners"][0]["discount_percent"] = "50"
    credit.catalog = Catalog.model_validate(document)
    credit.watch.run_pass(NOW + timedelta(minutes=10))
    assert credit.balance("north", NOW + timedelta(minutes=10)) == Decimal("94.64")


class Endpoints:
    """Three endpoints on one server: ``slow`` answers only once released, ``fast`` at once,
    ``endless`` at once with a body that never ends."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: dict[str, int] = {"slow": 0, "fast": 0, "endless": 0}
        self.port = free_port()

    async def slow(self, _: web.Request) -> web.Response:
        self.calls["slow"] += 1
        await self.release.wait()
        return web.Response(status=204)

    async def fast(self, _: web.Request) -> web.Response:
        self.calls["fast"] += 1
        return web.Response(status=204)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        self.calls["endless"] += 1
        answer = web.StreamResponse(status=200)
        await answer.prepare(request)
        with contextlib.suppress(ConnectionError):  # the outbox hangs up without reading
            while not self.release.is_set():
                await answer.write(b"x" * 65536)
                await asyncio.sleep(0.01)
        return answer


FAST_MESSAGES = 40
"""More than one endpoint's senders (16): the rest wait in its queue, not for the next round."""


def test_a_slow_endpoint_holds_back_only_its_own_messages_and_no_answer_is_read(engine: Any):
    store = AlertStore(engine, DB)
    servers = Endpoints()
    rows: list[AnyRow] = []
    for name in servers.calls:
        url = f"http://127.0.0.1:{servers.port}/{name}"
        rows.append(EndpointRow(f"e-{name}", "acme", url, ["whsec_" + "A" * 44], [None], False, "test", NOW))
    store.save(rows)
    queued = NOW - timedelta(seconds=1)
    messages = {"slow": 1, "fast": FAST_MESSAGES, "endless": 1}
    store.save(
        [
            DeliveryRow(f"m{n}@e-{name}", f"e-{name}", f"m{n}", "direct", "{}", "pending", 0, queued, "", queued)
            for name, count in messages.items()
            for n in range(count)
        ]
    )
    outbox = Outbox(store, AlertTopics(Settings()), allowed_hosts("127.0.0.1:*"))

    def statuses() -> dict[str, list[str]]:
        return {name: sorted({row.status for row in store.deliveries(f"e-{name}")}) for name in servers.calls}

    async def run() -> dict[str, list[str]]:
        app = web.Application()
        app.add_routes([web.post(f"/{name}", getattr(servers, name)) for name in servers.calls])
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", servers.port).start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await outbox.send_due(http, NOW)  # one round: every message queued
                for _ in range(200):
                    if servers.calls["fast"] == FAST_MESSAGES and servers.calls["endless"] == 1:
                        break
                    await asyncio.sleep(0.05)
                await outbox.send_due(http, NOW)  # stores what ended; the slow post is still under way
                while_slow = statuses()
                servers.release.set()
                await outbox.drain()
        finally:
            servers.release.set()
            await runner.cleanup()
        return while_slow

    while_slow = asyncio.run(run())
    assert while_slow == {"slow": ["pending"], "fast": ["delivered"], "endless": ["delivered"]}
    assert statuses()["slow"] == ["delivered"]
    assert servers.calls == messages, "each message is posted once, the queued ones without waiting for a round"


def test_what_a_pass_hands_over_is_sent_at_once_and_what_it_could_not_at_the_next_read(engine: Any):
    """The outbox reads its table at its first round, then only when a retry falls due or every
    ``RESCAN``: a row handed over is sent without it; one a pass stored but never handed over
    (it died between) is found by the next read."""
    store = AlertStore(engine, DB)
    servers = Endpoints()
    url = f"http://127.0.0.1:{servers.port}/fast"
    store.save([EndpointRow("e-fast", "acme", url, ["whsec_" + "A" * 44], [None], False, "test", NOW)])
    handed, lost = (
        DeliveryRow(f"{m}@e-fast", "e-fast", m, "direct", "{}", "pending", 0, NOW, "", NOW) for m in ("handed", "lost")
    )
    outbox = Outbox(store, AlertTopics(Settings()), allowed_hosts("127.0.0.1:*"))

    async def run() -> list[int]:
        app = web.Application()
        app.add_routes([web.post("/fast", servers.fast)])
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", servers.port).start()
        calls = []
        try:
            async with aiohttp.ClientSession() as http:
                await outbox.send_due(http, NOW)  # the first read: nothing is due yet
                store.save([handed, lost])
                outbox.hand_over([handed])
                for at in (NOW + timedelta(seconds=1), NOW + RESCAN + timedelta(seconds=1)):
                    await outbox.send_due(http, at)
                    await outbox.drain()
                    calls.append(servers.calls["fast"])
        finally:
            await runner.cleanup()
        return calls

    assert asyncio.run(run()) == [1, 2]
    assert {row.status for row in store.deliveries("e-fast")} == {"delivered"}


def test_one_tenants_slow_endpoints_take_at_most_its_share_of_the_senders(engine: Any):
    """Five slow endpoints of one tenant, 16 messages each: 80 could be posted at once, but a
    tenant has ``TENANT_SENDERS`` (64) under way at most; another tenant's message goes out."""
    store = AlertStore(engine, DB)
    servers = Endpoints()
    slow = [f"e-slow{n}" for n in range(5)]
    url = f"http://127.0.0.1:{servers.port}"
    secret = ["whsec_" + "A" * 44]
    store.save(
        [EndpointRow(e, "slowco", f"{url}/slow", secret, [None], False, "t", NOW) for e in slow]
        + [EndpointRow("e-fast", "acme", f"{url}/fast", secret, [None], False, "t", NOW)]
    )
    queued = NOW - timedelta(seconds=1)
    store.save(
        [
            DeliveryRow(f"m{n}@{e}", e, f"m{n}", "c", "{}", "pending", 0, queued, "", queued)
            for e in slow
            for n in range(SENDERS)
        ]
        + [DeliveryRow("m0@e-fast", "e-fast", "m0", "c", "{}", "pending", 0, queued, "", queued)]
    )
    outbox = Outbox(store, AlertTopics(Settings()), allowed_hosts("127.0.0.1:*"))

    async def run() -> dict[str, int]:
        app = web.Application()
        app.add_routes([web.post("/slow", servers.slow), web.post("/fast", servers.fast)])
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", servers.port).start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await outbox.send_due(http, NOW)
                for _ in range(200):
                    if servers.calls["slow"] == TENANT_SENDERS and servers.calls["fast"] == 1:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)  # had the cap not held, more slow posts would have started
                while_slow = dict(servers.calls)
                servers.release.set()
                for _ in range(200):  # later rounds start the senders the cap held back
                    await outbox.send_due(http, NOW)
                    if servers.calls["slow"] == 5 * SENDERS:
                        break
                    await asyncio.sleep(0.05)
                await outbox.drain()
        finally:
            servers.release.set()
            await runner.cleanup()
        return while_slow

    assert asyncio.run(run()) == {"slow": TENANT_SENDERS, "fast": 1, "endless": 0}
    assert servers.calls["slow"] == 5 * SENDERS
    assert {row.status for e in slow for row in store.deliveries(e)} == {"delivered"}
