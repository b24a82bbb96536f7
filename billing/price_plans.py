"""Price plans: what a period's quantity of one meter costs.

The stream rates every usage row at once with a plan's ``unit_price_for_rating`` (through
``pipeline.rating``), so money is visible within seconds. For a *linear* plan (per unit, nothing
free, no commitment) that is the final price, and the invoice line is the sum of the rated
amounts. The other models depend on the period's total - which tier it reaches, how many packages
it fills, what the allowance covers - so period close applies ``charges`` once, to the sum of the
rated quantities, with the plan in force at the period's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from meterline.exceptions import InvalidCatalog
from schemas.meters import Meter

ANY_DIMENSION = "*"
ZERO = Decimal(0)
NonNegative = Annotated[Decimal, Field(ge=0)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError("must be a UTC time, e.g. 2026-01-01T00:00:00Z")
    return value


UtcTime = Annotated[datetime, AfterValidator(_utc)]


@dataclass(frozen=True)
class Charge:
    """One priced step of a plan: a tier, the free allowance, a commitment top-up."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: NonNegative | None = None
    """Upper bound of the tier, inclusive; None for the last, unbounded tier."""
    unit_price: NonNegative


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    meter: Meter
    dimension: str = ANY_DIMENSION
    effective_from: UtcTime
    free_quantity: NonNegative = ZERO
    minimum_amount: NonNegative = ZERO
    """Committed spend per period: a shortfall is invoiced as a top-up line."""

    @property
    def is_linear(self) -> bool:
        return False

    def charges(self, quantity: Decimal) -> list[Charge]:
        """The period's charges for ``quantity``, allowance first and commitment last."""
        free = min(quantity, self.free_quantity)
        steps = [Charge("included allowance", free, ZERO, ZERO)] if free else []
        steps += self._priced(quantity - free)
        shortfall = self.minimum_amount - sum((step.amount for step in steps), ZERO)
        if shortfall > 0:
            steps.append(Charge("minimum commitment top-up", Decimal(1), shortfall, shortfall))
        return steps

    def _priced(self, billable: Decimal) -> list[Charge]:
        raise NotImplementedError

    @property
    def unit_price_for_rating(self) -> Decimal:
        raise NotImplementedError


class PerUnit(_Plan):
    model: Literal["per_unit"] = "per_unit"
    unit_price: NonNegative

    @property
    def is_linear(self) -> bool:
        return not self.free_quantity and not self.minimum_amount

    def _priced(self, billable: Decimal) -> list[Charge]:
        return [Charge("", billable, self.unit_price, billable * self.unit_price)]

    @property
    def unit_price_for_rating(self) -> Decimal:
        return self.unit_price


class _Tiered(_Plan):
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers_ascend_to_unbounded(self) -> _Tiered:
        bounds = [tier.up_to for tier in self.tiers]
        if bounds[-1] is not None or None in bounds[:-1]:
            raise ValueError("only the last tier is unbounded (up_to omitted)")
        finite = [bound for bound in bounds if bound is not None]
        if finite != sorted(set(finite)):
            raise ValueError("tier bounds must strictly ascend")
        return self

    def _ranges(self) -> list[tuple[Decimal, Decimal | None, Decimal]]:
        lower = ZERO
        ranges = []
        for tier in self.tiers:
            ranges.append((lower, tier.up_to, tier.unit_price))
            lower = tier.up_to if tier.up_to is not None else lower
        return ranges

    @property
    def unit_price_for_rating(self) -> Decimal:
        return self.tiers[0].unit_price


class Graduated(_Tiered):
    """Each unit is priced at the tier it falls in."""

    model: Literal["graduated"] = "graduated"

    def _priced(self, billable: Decimal) -> list[Charge]:
        steps = []
        for lower, upper, price in self._ranges():
            in_tier = (billable if upper is None else min(billable, upper)) - lower
            if in_tier > 0:
                steps.append(Charge(_tier_name(lower, upper), in_tier, price, in_tier * price))
        return steps or [Charge(_tier_name(*self._ranges()[0][:2]), ZERO, self.tiers[0].unit_price, ZERO)]


class Volume(_Tiered):
    """Every unit is priced at the tier the period's total reaches."""

    model: Literal["volume"] = "volume"

    def _priced(self, billable: Decimal) -> list[Charge]:
        for lower, upper, price in self._ranges():
            if upper is None or billable <= upper:
                return [Charge(_tier_name(lower, upper), billable, price, billable * price)]
        raise AssertionError("the last tier is unbounded")


class Package(_Plan):
    """Sold in whole blocks of ``package_size`` units; a started block is a block."""

    model: Literal["package"] = "package"
    package_size: Annotated[Decimal, Field(gt=0)]
    package_price: NonNegative

    def _priced(self, billable: Decimal) -> list[Charge]:
        blocks = (billable / self.package_size).to_integral_value(rounding=ROUND_CEILING)
        return [Charge(f"blocks of {self.package_size:f}", blocks, self.package_price, blocks * self.package_price)]

    @property
    def unit_price_for_rating(self) -> Decimal:
        return self.package_price / self.package_size


PricePlan = Annotated[PerUnit | Graduated | Volume | Package, Field(discriminator="model")]


def _tier_name(lower: Decimal, upper: Decimal | None) -> str:
    return f"over {lower:f}" if upper is None else f"{lower:f} to {upper:f}"


def plan_in_force(plans: list[PricePlan], meter: str, dimension: str, at: datetime) -> PricePlan | None:
    """The plan for a meter and dimension at an instant; an exact dimension beats the wildcard."""
    for wanted in (dimension, ANY_DIMENSION):
        candidates = [p for p in plans if p.meter == meter and p.dimension == wanted and p.effective_from <= at]
        if candidates:
            return max(candidates, key=lambda plan: plan.effective_from)
    return None


def check_unique_versions(plans: list[PricePlan], owner: str) -> None:
    seen: set[tuple[str, str, datetime]] = set()
    for plan in plans:
        key = (plan.meter.value, plan.dimension, plan.effective_from)
        if key in seen:
            raise InvalidCatalog(f"{owner}: two plans for {key[0]} ({key[1]}) from {key[2].isoformat()}")
        seen.add(key)
