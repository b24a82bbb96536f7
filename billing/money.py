"""Currency rounding and taxes: the only places an exact amount becomes a payable one.

One rounding rule wherever money is shown: to the currency's minor unit (ISO 4217, from babel:
EUR 2, JPY 0, KWD 3), half away from zero as commercial invoices do. An invoice line is priced
on an exact quantity (a ``Fraction``) and rounded once; tax is computed on the sum of the rounded
net lines per rate, as EN 16931 does.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from functools import cache
from typing import Annotated, TypeVar

from babel.core import get_global
from babel.numbers import get_territory_currencies
from iso4217 import Currency
from pydantic import BaseModel, ConfigDict, Field

from meterline.exceptions import InvalidCatalog

DIGITS = 76
"""Significant digits of Python's decimal arithmetic here: a quantity or amount of storage's
``Decimal(38, 12)`` has up to 38, and a product of two up to 76. Python's default of 28 would
refuse to round a quantity of 10^16 to 12 places, and round sums past 28 digits silently."""
decimal.DefaultContext.prec = DIGITS  # threads started from now on
decimal.getcontext().prec = max(decimal.getcontext().prec, DIGITS)  # the importing thread

HUNDRED = Decimal(100)
Key = TypeVar("Key", bound=Hashable)
PLACES = 12
"""Decimal places a catalog figure may have: what storage keeps (``Decimal(38, 12)``)."""
UnitPrice = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 6, decimal_places=PLACES)]
"""A price per unit, up to a million: rated against the largest quantity an event may carry
(10^18 units), an amount still fits the 38 digits (12 of them decimals) that the pipeline and
storage compute in."""
Amount = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 12, decimal_places=PLACES)]
"""A fee, a charge, a minimum or a commitment: up to a trillion."""
Quantity = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 18, decimal_places=PLACES)]
"""A tier bound or an allowance: as large as an event's quantity may be."""


@cache
def tendered_currencies() -> frozenset[str]:
    """The ISO 4217 codes that some territory takes as legal tender today (CLDR's, through
    babel) and for which ISO 4217 gives a minor unit: what can be billed in. Funds codes,
    metals, test codes and withdrawn currencies (CHE, XAU, XTS, DEM, BGN since the euro) are
    ISO codes too, or were, but nothing anyone pays an invoice in."""
    today = datetime.now(UTC).date()
    tendered = {
        code
        for territory in get_global("territory_currencies")
        for code in get_territory_currencies(territory, today, tender=True, non_tender=False)
    }
    return frozenset(code for code in tendered if _iso_places(code) is not None)


def _iso_places(currency: str) -> int | None:
    try:
        return Currency(currency).exponent
    except ValueError:
        return None


def is_billing_currency(currency: str) -> bool:
    return currency in tendered_currencies()


@cache
def minor_unit(currency: str) -> Decimal:
    """The smallest payable amount of a currency, as ISO 4217 gives it: Decimal('0.01') for EUR
    and for RSD (CLDR shows dinars whole, and babel's digits are CLDR's)."""
    places = _iso_places(currency) if is_billing_currency(currency) else None
    if places is None:
        raise InvalidCatalog(f"currency {currency!r} is not the ISO 4217 code of a currency in use")
    return Decimal(1).scaleb(-places)


def round_money(amount: Decimal | Fraction, currency: str) -> Decimal:
    """An exact amount rounded once to the currency's minor unit, half away from zero."""
    return round_exact(amount, minor_unit(currency))


def apportioned(total: Decimal, weights: Mapping[Key, Decimal], step: Decimal) -> dict[Key, Decimal]:
    """``total`` (whole ``step``s) shared between ``weights``' keys in proportion to them, in whole
    steps that add up to it: each key its share rounded down, and the steps left over one each to
    the largest remainders (then the first keys). All nothing if the weights are."""
    whole = sum(weights.values(), Decimal(0))
    if not whole:
        return {key: Decimal(0) for key in weights}
    steps = int(total / step)
    shares = {key: Fraction(weight) * steps / Fraction(whole) for key, weight in weights.items()}
    counts = {key: math.floor(share) for key, share in shares.items()}
    by_remainder = sorted(weights, key=lambda key: shares[key] - counts[key], reverse=True)
    for key in by_remainder[: steps - sum(counts.values())]:
        counts[key] += 1
    return {key: count * step for key, count in counts.items()}


def round_exact(value: Decimal | Fraction, step: Decimal) -> Decimal:
    """``value`` to a multiple of ``step`` (a power of ten), half away from zero, with no
    intermediate rounding: a ``Fraction`` such as 1/3 is rounded from its exact value."""
    exponent = step.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0
    exact = Fraction(value)
    # integer arithmetic: |value| in steps, plus a half, truncated (a close rounds ~300,000 of
    # these), then written out, which no decimal context rounds or refuses whatever its size
    whole, remainder = divmod(abs(exact.numerator) * 10**places, exact.denominator)
    whole += 2 * remainder >= exact.denominator
    return Decimal(f"{'-' if exact < 0 and whole else ''}{whole}E-{places}")


QUANTITY_STEP = Decimal("1e-12")


def shown_quantity(quantity: Fraction) -> Decimal:
    """An exact quantity as stored and shown: 12 places, rounded once."""
    return round_exact(quantity, QUANTITY_STEP)


def decimal_places(value: Decimal) -> int:
    """The places a figure was written with: 4 for a price list's 0.0200, 0 for 30 or 3E+1."""
    exponent = value.as_tuple().exponent
    return min(max(-exponent, 0), PLACES) if isinstance(exponent, int) else 0


def with_places(value: Decimal, places: int) -> Decimal:
    """A stored figure (storage keeps 12 places for all) back at the places it was written with;
    with 0 (unknown, or a whole number), without trailing zeros."""
    return value.quantize(Decimal(1).scaleb(-places)) if places else value.normalize()


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    return amount * percent / HUNDRED


class TaxRate(BaseModel):
    """A jurisdiction's rate; inclusive prices already contain the tax."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jurisdiction: str = Field(min_length=2)
    rate_percent: Decimal = Field(ge=0, lt=100, decimal_places=PLACES)
    inclusive: bool = False
    name: str = "VAT"

    def split(self, amount: Decimal, currency: str) -> tuple[Decimal, Decimal]:
        """(net, tax) of a rounded amount stated exclusive or inclusive of this tax."""
        if self.inclusive:
            net = round_money(amount * HUNDRED / (HUNDRED + self.rate_percent), currency)
            return net, amount - net
        return amount, round_money(percent_of(amount, self.rate_percent), currency)
