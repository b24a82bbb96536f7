"""Credit alerts and enforcement: when a rule fires, and when a customer is suspended.

Pure rules. A rule watches one customer, every customer of a partner, or every customer billed
pre-pay (or post-pay), for one condition:

- ``balance_below``: the credit balance is under ``threshold``;
- ``balance_below_percent``: it is under ``threshold`` percent of what the grants in force gave;
- ``cost_over``: the cost of the current month so far (rated usage) is over ``threshold``;
- ``runs_out_within_hours``: at the recent burn rate the credit runs out within ``threshold`` hours.

A rule fires once per crossing: when its condition starts to hold for a customer. It re-arms when
the condition stops holding (a top-up lifts the balance; a new month starts the cost again), and
fires again at the next crossing.

A customer billed pre-pay is suspended when its balance is zero and the usage its credit did not
cover exceeds its grace amount (``credit_grace`` in the catalog, default 0); any credit (a top-up)
lifts it. Before its first grant takes effect (or with none at all), none of its usage is covered:
the current month's cost counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from billing.money import round_money
from meterline.exceptions import InvalidQuery

ZERO = Decimal(0)


class Condition(StrEnum):
    BALANCE_BELOW = "balance_below"
    BALANCE_BELOW_PERCENT = "balance_below_percent"
    COST_OVER = "cost_over"
    RUNS_OUT_WITHIN_HOURS = "runs_out_within_hours"


class TargetKind(StrEnum):
    CUSTOMER = "customer"
    PARTNER = "partner"
    """Every customer the partner sells to."""
    BILLING = "billing"
    """Every customer billed ``prepay`` or ``postpay`` (the target's id)."""


@dataclass(frozen=True)
class AlertRule:
    rule_id: str
    owner_id: str
    """Who made it: the provider, a partner (for its customers) or a customer (for itself)."""
    target_kind: TargetKind
    target_id: str
    condition: Condition
    threshold: Decimal

    def __post_init__(self) -> None:
        if self.threshold < ZERO or (self.condition is Condition.BALANCE_BELOW_PERCENT and self.threshold > 100):
            raise InvalidQuery(f"a {self.condition.value} threshold is 0 or more (a percentage at most 100)")
        if self.condition is Condition.RUNS_OUT_WITHIN_HOURS and self.threshold > 24 * 366:
            raise InvalidQuery("runs_out_within_hours looks at most a year (8784 hours) ahead")


@dataclass(frozen=True)
class Standing:
    """A customer's figures as a rule sees them, in one currency, at ``at``."""

    customer_id: str
    currency: str
    at: datetime
    balance: Decimal
    granted: Decimal
    month_cost: Decimal
    runs_out_at: datetime | None
    uncovered: Decimal
    """What usage its credit did not cover, since it first held credit."""
    holds_credit: bool
    """It holds (or held) a grant: balance conditions watch only such customers."""
    prepay: bool
    """Billed pre-pay in the catalog: only such a customer is suspended."""


def breach(rule: AlertRule, standing: Standing) -> str | None:
    """Why ``rule``'s condition holds for ``standing`` (None: it does not)."""
    money, threshold = standing.currency, shown(rule.threshold)
    match rule.condition:
        case Condition.BALANCE_BELOW if standing.holds_credit and standing.balance < rule.threshold:
            return f"balance {round_money(standing.balance, money)} {money} is under {threshold} {money}"
        case Condition.BALANCE_BELOW_PERCENT if standing.holds_credit and standing.granted > ZERO:
            percent = standing.balance * 100 / standing.granted
            if percent < rule.threshold:
                # cut, not rounded: 24.995 % must not read as 25 % under a 25 % threshold
                cut = percent.quantize(Decimal("0.001"), ROUND_DOWN)
                balance, granted = round_money(standing.balance, money), round_money(standing.granted, money)
                return f"balance {balance} {money} is {cut}% of {granted}, under {threshold}%"
        case Condition.COST_OVER if standing.month_cost > rule.threshold:
            return f"this month's cost {round_money(standing.month_cost, money)} {money} is over {threshold} {money}"
        case Condition.RUNS_OUT_WITHIN_HOURS if standing.holds_credit and standing.runs_out_at is not None:
            if standing.runs_out_at <= standing.at + timedelta(hours=float(rule.threshold)):
                return f"at the recent burn rate the credit runs out at {standing.runs_out_at:%Y-%m-%dT%H:%M:%SZ}"
    return None


def shown(figure: Decimal) -> str:
    """A threshold as its owner wrote it: 25, not 25.000000000000."""
    return format(figure.normalize(), "f")


def suspended(standing: Standing, grace: Decimal) -> bool:
    """Whether a prepaid customer has run out: nothing left, and more than ``grace`` not covered."""
    return standing.prepay and standing.balance <= ZERO and standing.uncovered > grace


def crossing(rule: AlertRule, standing: Standing, firing: bool) -> tuple[str | None, bool]:
    """What a rule does on ``standing`` when it was ``firing`` before: the reason it fires now
    (None: it does not), and whether it is firing after."""
    reason = breach(rule, standing)
    return (reason if reason is not None and not firing else None), reason is not None
