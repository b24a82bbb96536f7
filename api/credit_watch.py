"""Each pass over prepaid credit: settle the ledger, then watch the customers whose usage or
credit changed: fire the alert rules that cross (``billing.alerts``) and mark customers
suspended or active, each message put in the outbox (``api.webhooks``) for Kafka and the
endpoints that may see the customer.

What a pass decides is written outbox first: the messages, then the alerts and enforcement
statuses, then the rule states that remember them. Alerts have ids derived from the rule, the
customer and the crossing's number, so a pass cut short anywhere is redone with the same ids by
the next one, and a message already in the outbox is not put there again; a pass that dies
before its outbox rows are stored has stored nothing that would make the next one skip them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_UP, Decimal

from starlette.concurrency import run_in_threadpool

from api import metrics
from api.credit_accounts import CreditAccounts, GrantRequest, Settled
from api.partner_credit import PartnerCredit
from api.webhooks import PENDING, TOPIC_PREFIX
from billing.alerts import AlertRule, Condition, Standing, TargetKind, crossing, shown, suspended
from billing.burn_rate import RecentCost, runs_out_at
from billing.catalog import BillingMode, Catalog, Customer
from billing.credits import ZERO, EntryKind, Wallet
from billing.money import minor_unit, round_money
from billing.periods import Period
from billing.scope import EVERYTHING
from meterline.exceptions import MeterlineError
from storage.alert_store import AlertRow, AlertStore, DeliveryRow, EnforcementRow, RuleRow, RuleState, TopUpPlanRow
from storage.connection import to_the_millisecond
from storage.dashboards import Dashboards
from storage.usage_read import floor_hour

log = logging.getLogger(__name__)
ACTIVE, SUSPENDED = "active", "suspended"
States = dict[tuple[str, str], RuleState]
"""Each rule's (and threshold plan's) state per customer: by (rule or plan id, customer id)."""
RECURRING, THRESHOLD = "recurring", "threshold"


@dataclass(frozen=True)
class Message:
    message_id: str
    customer_id: str
    topic: str
    body: dict[str, object]


class CreditWatch:
    def __init__(
        self,
        accounts: CreditAccounts,
        store: AlertStore,
        dashboards: Dashboards,
        catalog: Callable[[], Catalog],
        partners: PartnerCredit,
        hand_over: Callable[[list[DeliveryRow]], None] = lambda rows: None,
    ) -> None:
        """``hand_over`` takes the outbox rows a pass stored, to send them without reading them back."""
        self._accounts = accounts
        self._partners = partners
        self._hand_over = hand_over
        self._store = store
        self._dashboards = dashboards
        self._catalog = catalog
        self._rates: tuple[datetime, dict[tuple[str, str], RecentCost]] | None = None
        self._granted_months: set[tuple[str, datetime]] = set()
        self._watched_with: Catalog | None = None

    def run_pass(self, now: datetime) -> None:
        catalog = self._catalog()
        if catalog is not self._watched_with:  # a billing mode, a grace, a partner may have changed
            self._accounts.watch_again({customer.id for customer in catalog.customers})
            self._watched_with = catalog
        plans = self._store.top_up_plans()
        self._grant_recurring([p for p in plans if p.kind == RECURRING], catalog, now)
        settled = self._accounts.settle(now)
        try:
            self._watch(settled, catalog, plans, now)
        except BaseException:
            # a customer is watched when its figures move: the next pass looks at these again
            self._accounts.watch_again(settled.watched)
            raise

    def _watch(self, settled: Settled, catalog: Catalog, plans: list[TopUpPlanRow], now: datetime) -> None:
        priced = self._partners.burn(catalog, settled.watched, now)
        thresholds = [p for p in plans if p.kind == THRESHOLD]
        customers = {c.id: c for c in catalog.customers if c.id in settled.watched}
        # a partner has no standing (rules watch customers): its balance is asked for its plans
        partners = (priced | settled.watched) & ({p.holder_id for p in thresholds} - set(customers))
        if not customers and not partners:
            return
        # rules and plans have ids of their own kinds: one read holds the states of both
        states = {(s.rule_id, s.customer_id): s for s in self._store.states()}
        if partners:
            per_currency = {p: self._accounts.balance(p, now).per_currency for p in partners}
            balances = {p: figures.get(catalog.currency_of(p), ZERO) for p, figures in per_currency.items()}
            self._top_up(thresholds, balances, catalog.currency_of, states, now)
        if not customers:
            return
        rules = [rule_of(row) for row in self._store.rules()]
        standings = self._standings(settled, customers, catalog, now, rules)
        fired, changed = self._alerts(standings, customers, rules, states, catalog.provider.id, now)
        enforced, enforcing = self._enforcement(standings, customers, now)
        queued = self._store.queued_messages([row.alert_id for row, _ in fired])
        messages = [message for row, message in fired if row.alert_id not in queued] + enforcing
        outbox = self._outbox(messages, customers, catalog, now)
        self._store.save(outbox)
        self._store.save([row for row, _ in fired])
        self._store.save(enforced)
        self._store.save(changed)
        self._hand_over(outbox)
        metrics.ALERTS_FIRED.inc(len(fired) - len(queued))
        balances = {standing.customer_id: standing.balance for standing in standings}
        self._top_up(thresholds, balances, catalog.currency_of, states, now)

    def _standings(
        self, settled: Settled, customers: dict[str, Customer], catalog: Catalog, now: datetime, rules: list[AlertRule]
    ) -> list[Standing]:
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        # a pre-pay customer whose credit has not started pays for none of this month's usage
        unfunded = {
            c.id
            for c in customers.values()
            if c.billing is BillingMode.PREPAY and not _funded(settled.wallets.get(c.id), now)
        }
        wanted = set(customers) if any(rule.condition is Condition.COST_OVER for rule in rules) else unfunded
        costs = self._dashboards.costs_since(wanted, month_start, now) if wanted else {}
        rates = self._recent_rates(now)
        standings = []
        for customer_id in sorted(customers):
            currency = catalog.currency_of(customer_id)
            wallet = settled.wallets.get(customer_id)
            balance = wallet.balance(now).get(currency, Decimal(0)) if wallet else Decimal(0)
            granted = wallet.granted(now).get(currency, Decimal(0)) if wallet else Decimal(0)
            month_cost = costs.get((customer_id, currency), Decimal(0))
            if wallet is None or customer_id in unfunded:
                uncovered = month_cost
            else:
                uncovered = wallet.uncovered()
            rate = rates.get((customer_id, currency))
            standings.append(
                Standing(
                    customer_id=customer_id,
                    currency=currency,
                    at=now,
                    balance=balance,
                    granted=granted,
                    month_cost=month_cost,
                    runs_out_at=runs_out_at(balance, rate.per_hour(), now) if rate and wallet else None,
                    uncovered=uncovered,
                    holds_credit=wallet is not None,
                    prepay=customers[customer_id].billing is BillingMode.PREPAY,
                )
            )
        return standings

    def _grant_recurring(self, plans: list[TopUpPlanRow], catalog: Catalog, now: datetime) -> None:
        """Each recurring plan's grant of this month, once: its idempotency key names the month,
        and a month's plans are looked at once per process."""
        period = Period.containing(now.date())
        month = period.start
        for plan in plans:
            if (plan.plan_id, month) in self._granted_months:
                continue
            effective_at = max(month, to_the_millisecond(plan.changed_at))
            key = f"plan/{plan.plan_id}/{month:%Y-%m}"
            currency = catalog.currency_of(plan.holder_id)
            request = _plan_grant(plan, currency, plan.amount, effective_at, period.end, key, paid=False)
            try:
                self._accounts.grant(request, EntryKind.GRANT, f"plan:{plan.plan_id}", now)
            except MeterlineError as error:  # this plan's trouble stays this plan's
                log.warning("top-up plan %s could not grant: %s", plan.plan_id, error)
                continue
            self._granted_months.add((plan.plan_id, month))

    def _top_up(
        self,
        plans: list[TopUpPlanRow],
        balances: dict[str, Decimal],
        currency_of: Callable[[str], str],
        states: States,
        now: datetime,
    ) -> None:
        """Threshold plans of the holders in ``balances`` (each in its holder's currency): under
        the floor, top up to the target, once per crossing (the crossing's number is in the
        top-up's idempotency key)."""
        changed = []
        for plan in plans:
            balance = balances.get(plan.holder_id)
            if balance is None:
                continue
            under = balance < plan.floor
            moved = _moved(states.get((plan.plan_id, plan.holder_id)), plan.plan_id, plan.holder_id, under, now)
            if moved is None:
                continue
            if under:
                currency = currency_of(plan.holder_id)
                amount = (plan.target - balance).quantize(minor_unit(currency), ROUND_UP)
                key = f"plan/{plan.plan_id}/crossing/{moved.crossings}"
                request = _plan_grant(plan, currency, amount, to_the_millisecond(now), None, key, paid=True)
                try:
                    self._accounts.grant(request, EntryKind.TOP_UP, f"plan:{plan.plan_id}", now)
                except MeterlineError as error:  # this plan's trouble stays this plan's
                    log.warning("top-up plan %s could not top up: %s", plan.plan_id, error)
                    continue
            changed.append(moved)
        self._store.save(changed)

    def _recent_rates(self, now: datetime) -> dict[tuple[str, str], RecentCost]:
        """Every customer's recent cost, read once an hour: the rate counts complete hours only."""
        hour = floor_hour(now)
        if self._rates is None or self._rates[0] != hour:
            self._rates = (hour, self._dashboards.recent_costs(EVERYTHING, now))
        return self._rates[1]

    def _alerts(
        self,
        standings: list[Standing],
        customers: dict[str, Customer],
        rules: list[AlertRule],
        states: States,
        provider_id: str,
        now: datetime,
    ) -> tuple[list[tuple[AlertRow, Message]], list[RuleState]]:
        """The alerts that fire, each with its message, and the rule states that change."""
        fired: list[tuple[AlertRow, Message]] = []
        changed: list[RuleState] = []
        for standing in standings:
            customer = customers[standing.customer_id]
            for rule in rules:
                if not applies(rule, customer, provider_id):
                    continue
                state = states.get((rule.rule_id, customer.id))
                reason, firing = crossing(rule, standing, state is not None and state.firing)
                moved = _moved(state, rule.rule_id, customer.id, firing, now)
                if moved is None:
                    continue
                changed.append(moved)
                if reason:
                    fired.append(_alert(rule, standing, reason, moved.crossings, now))
        return fired, changed

    def _enforcement(
        self, standings: list[Standing], customers: dict[str, Customer], now: datetime
    ) -> tuple[list[EnforcementRow], list[Message]]:
        """The customers whose status changes, and a message for each."""
        current = {row.customer_id: row.status for row in self._store.enforcement()}
        changes, messages = [], []
        for standing in standings:
            customer = customers[standing.customer_id]
            status = SUSPENDED if suspended(standing, customer.credit_grace) else ACTIVE
            if status == current.get(customer.id, ACTIVE):
                continue
            money = standing.currency
            reason = (
                f"no credit left and {round_money(standing.uncovered, money)} {money} of usage not covered "
                f"(grace {round_money(customer.credit_grace, money)} {money})"
                if status == SUSPENDED
                else f"credit available: {round_money(standing.balance, money)} {money}"
            )
            changes.append(EnforcementRow(customer.id, status, reason, now))
            message_id = f"enforcement.{customer.id}.{now:%Y%m%dT%H%M%S%f}"
            body = {"type": "credit.enforcement", "id": message_id, "customer_id": customer.id, "status": status}
            messages.append(
                Message(
                    message_id,
                    customer.id,
                    "enforcement",
                    {**body, "reason": reason, "at": _iso(to_the_millisecond(now))},
                )
            )
        return changes, messages

    def _outbox(
        self, messages: list[Message], customers: dict[str, Customer], catalog: Catalog, now: datetime
    ) -> list[DeliveryRow]:
        endpoints = self._store.endpoints()
        rows = []
        for message in messages:
            customer = customers[message.customer_id]
            watchers = {catalog.provider.id, customer.id, customer.partner_id}
            destinations = [TOPIC_PREFIX + message.topic]
            if message.topic == "alerts":
                destinations += [e.endpoint_id for e in endpoints if e.owner_id in watchers]
            body = json.dumps(message.body, sort_keys=True)
            rows += [
                DeliveryRow(
                    f"{message.message_id}@{d}", d, message.message_id, customer.id, body, PENDING, 0, now, "", now
                )
                for d in destinations
            ]
        return rows


def _funded(wallet: Wallet | None, now: datetime) -> bool:
    """Whether a grant of the wallet has taken effect by ``now``: from then on, what its credit
    does not cover is in its ledger (``uncovered`` entries)."""
    return wallet is not None and any(grant.effective_at <= now for grant in wallet.grants.values())


def _moved(state: RuleState | None, rule_id: str, customer_id: str, firing: bool, now: datetime) -> RuleState | None:
    """A rule's (or a threshold plan's) new state if it starts or stops ``firing`` (a start is a
    new crossing, numbered); None if it stays as it was."""
    if firing == (state is not None and state.firing):
        return None
    crossings = (state.crossings if state else 0) + (1 if firing else 0)
    return RuleState(rule_id, customer_id, firing, crossings, now)


def _plan_grant(
    plan: TopUpPlanRow,
    currency: str,
    amount: Decimal,
    effective_at: datetime,
    expires_at: datetime | None,
    key: str,
    *,
    paid: bool,
) -> GrantRequest:
    """What a top-up plan grants, under ``key``: the same key again grants nothing more."""
    return GrantRequest(
        holder_id=plan.holder_id,
        currency=currency,
        amount=amount,
        effective_at=effective_at,
        expires_at=expires_at,
        priority=0,
        scope=frozenset(),
        paid=paid,
        paid_amount=amount if paid else None,
        idempotency_key=key,
        asked=f"{plan.kind} {key}",
    )


def applies(rule: AlertRule, customer: Customer, provider_id: str) -> bool:
    """Whether ``rule`` watches ``customer``: it targets it, and its owner still sees it (a
    partner's rules stop watching a customer that moved to another partner)."""
    if rule.owner_id not in (provider_id, customer.id, customer.partner_id):
        return False
    match rule.target_kind:
        case TargetKind.CUSTOMER:
            return rule.target_id == customer.id
        case TargetKind.PARTNER:
            return rule.target_id == customer.partner_id
        case TargetKind.BILLING:
            return rule.target_id == customer.billing.value
    return False


def rule_of(row: RuleRow) -> AlertRule:
    return AlertRule(
        row.rule_id, row.owner_id, TargetKind(row.target_kind), row.target_id, Condition(row.condition), row.threshold
    )


def _alert(rule: AlertRule, standing: Standing, reason: str, crossings: int, now: datetime) -> tuple[AlertRow, Message]:
    alert_id = f"{rule.rule_id}.{standing.customer_id}.{crossings}"
    body: dict[str, object] = {
        "type": "credit.alert",
        "id": alert_id,
        "rule_id": rule.rule_id,
        "customer_id": standing.customer_id,
        "condition": rule.condition.value,
        "threshold": shown(rule.threshold),
        "reason": reason,
        "currency": standing.currency,
        "balance": str(standing.balance.quantize(Decimal("0.01"))),
        "fired_at": _iso(to_the_millisecond(now)),  # as the alert is stored
    }
    payload = json.dumps(body, sort_keys=True)
    row = AlertRow(alert_id, rule.rule_id, standing.customer_id, rule.condition.value, reason, payload, now)
    return row, Message(alert_id, standing.customer_id, "alerts", body)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def watch_continuously(watch: CreditWatch, interval_s: float, passed: asyncio.Event) -> None:
    """The API's loop over prepaid credit, a pass every ``interval_s`` (at once after a longer
    pass), each one setting ``passed`` so the outbox sends what it fired at once: a failed pass
    is logged and the next one redoes it."""
    while True:
        started = time.monotonic()
        try:
            with metrics.CREDIT_PASS_SECONDS.time():
                await run_in_threadpool(watch.run_pass, datetime.now(UTC))
            passed.set()
        except Exception as error:  # storage hiccup: the next pass starts from what is stored
            log.warning("could not settle and watch prepaid credit: %s", error)
        # at least a quarter of the interval between passes: the API's requests get their turn
        await asyncio.sleep(max(interval_s / 4, interval_s - (time.monotonic() - started)))
