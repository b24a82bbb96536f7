"""Price plans: what a period's quantity of one meter costs.

The stream rates every usage row at once with a plan's ``unit_price_for_rating`` (through
``pipeline.rating``), so money is visible within seconds. The invoice applies ``charges`` once
to the exact total of the usage the plan priced in the period (see ``billing.invoices``): tiers,
packages, allowances and commitments depend on that total, and a commitment is owed for the days
the plan is in force, with or without usage. Quantities are ``Fraction``s, exact sums of what
samples contributed; each charge is rounded once, to the currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cache, cached_property
from math import ceil
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from billing.money import Amount, Quantity, UnitPrice, round_money
from meterline.exceptions import InvalidCatalog
from schemas.meters import Meter

ANY_DIMENSION = "*"
TOP_UP = "minimum commitment top-up"
"""A commitment's shortfall: a sum of money, not a quantity of the meter."""
ZERO = Decimal(0)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError("must be a UTC time, e.g. 2026-01-01T00:00:00Z")
    return value


UtcTime = Annotated[datetime, AfterValidator(_utc)]


@dataclass(frozen=True)
class Charge:
    """One priced step of a plan: a tier, the free allowance, a commitment top-up.

    ``amount`` is already rounded to the currency: it is what the invoice line bills."""

    description: str
    quantity: Fraction
    unit_price: Decimal
    amount: Decimal
    unit: str | None = None
    """What ``quantity`` counts when it is not the meter's unit (blocks, a lump sum)."""


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: Quantity | None = None
    """Upper bound of the tier, inclusive; None for the last, unbounded tier."""
    unit_price: UnitPrice


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    meter: Meter
    dimension: str = ANY_DIMENSION
    effective_from: UtcTime
    free_quantity: Quantity = ZERO
    minimum_amount: Amount = ZERO
    """Committed spend per period: a shortfall is invoiced as a top-up line."""

    def charges(self, quantity: Fraction, currency: str, share_in_force: Fraction = Fraction(1)) -> list[Charge]:
        """The period's charges for an exact ``quantity``, allowance first and commitment last.

        ``share_in_force`` is the part of the period the plan was in force (its days over the
        period's), so the part of ``minimum_amount`` owed; the commitment tops up what the other
        charges bill once rounded, so that a customer below it pays exactly what is owed."""
        free = min(quantity, self._free) if self.free_quantity else Fraction(0)
        steps = [Charge("included allowance", free, ZERO, ZERO)] if free else []
        steps += [
            Charge(description, billed, unit_price, round_money(billed * _exact(unit_price), currency), unit)
            for description, billed, unit_price, unit in self._priced(quantity - free)
            if billed or not free
        ]
        return steps + self.top_up(sum((step.amount for step in steps), ZERO), currency, share_in_force)

    def top_up(self, billed: Decimal, currency: str, share_in_force: Fraction) -> list[Charge]:
        """The commitment's shortfall: ``minimum_amount`` x ``share_in_force``, exact, less what
        the plan's other charges ``billed`` (already rounded), rounded once; none unless positive."""
        shortfall = round_money(_exact(self.minimum_amount) * share_in_force - Fraction(billed), currency)
        return [Charge(TOP_UP, Fraction(1), shortfall, shortfall, unit="")] if shortfall > 0 else []

    @cached_property
    def _free(self) -> Fraction:
        return Fraction(self.free_quantity)

    def _priced(self, billable: Fraction) -> list[tuple[str, Fraction, Decimal, str | None]]:
        """(description, quantity, unit price, unit if not the meter's) of each priced step."""
        raise NotImplementedError

    @property
    def unit_price_for_rating(self) -> Decimal:
        raise NotImplementedError


class PerUnit(_Plan):
    model: Literal["per_unit"] = "per_unit"
    unit_price: UnitPrice

    def _priced(self, billable: Fraction) -> list[tuple[str, Fraction, Decimal, str | None]]:
        return [("", billable, self.unit_price, None)]

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

    def _priced(self, billable: Fraction) -> list[tuple[str, Fraction, Decimal, str | None]]:
        steps: list[tuple[str, Fraction, Decimal, str | None]] = []
        for lower, upper, price in self._ranges():
            in_tier = (billable if upper is None else min(billable, _exact(upper))) - _exact(lower)
            if in_tier > 0:
                steps.append((_tier_name(lower, upper), in_tier, price, None))
        first_lower, first_upper, first_price = self._ranges()[0]
        return steps or [(_tier_name(first_lower, first_upper), Fraction(0), first_price, None)]


class Volume(_Tiered):
    """Every unit is priced at the tier the period's total reaches."""

    model: Literal["volume"] = "volume"

    def _priced(self, billable: Fraction) -> list[tuple[str, Fraction, Decimal, str | None]]:
        for lower, upper, price in self._ranges():
            if upper is None or billable <= _exact(upper):
                return [(_tier_name(lower, upper), billable, price, None)]
        raise AssertionError("the last tier is unbounded")


class Package(_Plan):
    """Sold in whole blocks of ``package_size`` units; a started block is a block."""

    model: Literal["package"] = "package"
    package_size: Annotated[Quantity, Field(gt=0)]
    package_price: Amount

    def _priced(self, billable: Fraction) -> list[tuple[str, Fraction, Decimal, str | None]]:
        blocks = Fraction(ceil(billable / _exact(self.package_size)))
        return [(f"blocks of {self.package_size.normalize():f}", blocks, self.package_price, "block")]

    @property
    def unit_price_for_rating(self) -> Decimal:
        return self.package_price / self.package_size


PricePlan = Annotated[PerUnit | Graduated | Volume | Package, Field(discriminator="model")]


@cache
def _exact(value: Decimal) -> Fraction:
    """A price list's decimal as a fraction; a catalog has few distinct prices."""
    return Fraction(value)


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
