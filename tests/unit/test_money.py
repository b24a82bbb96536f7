"""Rounding money and quantities: once, half away from zero, exact at any size storage holds."""

from __future__ import annotations

import threading
from decimal import Decimal, getcontext
from fractions import Fraction

import pytest

from billing.money import round_money, shown_quantity


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        (Decimal("2.675"), "EUR", "2.68"),
        (Decimal("-2.675"), "EUR", "-2.68"),
        (Fraction(1, 200), "EUR", "0.01"),
        (Fraction(-1, 1000), "EUR", "0.00"),  # no negative zero on a document
        (Decimal("12.5"), "JPY", "13"),
        (Decimal("0.0005"), "KWD", "0.001"),
    ],
)
def test_money_is_rounded_once_half_away_from_zero(amount, currency, rounded):
    assert str(round_money(amount, currency)) == rounded


def test_a_quantity_of_ten_to_the_sixteen_is_shown_to_twelve_places():
    """20,000,000,000,000,000 GB and a third: 29 digits, past Python's default 28."""
    assert str(shown_quantity(Fraction(2 * 10**16) + Fraction(1, 3))) == "20000000000000000.333333333333"


def test_sums_of_storage_sized_figures_stay_exact_in_any_thread():
    """Two quantities of 10^18 with 12 places (31 digits each) add up without rounding, in the
    thread that imported the money rules and in one started later."""
    big = Decimal("999999999999999999.999999999999")
    sums: list[Decimal] = []
    worker = threading.Thread(target=lambda: sums.append(big + big))
    worker.start()
    worker.join()
    assert big + big == sums[0] == Decimal("1999999999999999999.999999999998")
    assert getcontext().prec >= 38
