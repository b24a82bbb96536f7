"""The burn-rate rule, with figures worked out by hand."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from billing.burn_rate import RecentCost, forecast, rate_of, recent_window, runs_out_at, shown_rate
from billing.money import round_money

NOW = datetime(2026, 11, 10, 11, 30, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_customer_11_hours_old_is_measured_over_its_11_hours():
    start, end = recent_window(NOW)
    assert (start, end) == (datetime(2026, 11, 3, 11, tzinfo=UTC), datetime(2026, 11, 10, 11, tzinfo=UTC))
    recent = RecentCost(Decimal("42.15"), datetime(2026, 11, 10, 0, tzinfo=UTC), end)
    assert recent.hours == 11
    # 492.5 hours left: 42.15 + 42.15 / 11 * 492.5 = 42.15 * 503.5 / 11 = 21222.525 / 11 = 1929.3204...
    assert round_money(forecast(Decimal("42.15"), recent.per_hour(), NOW, DECEMBER), "EUR") == Decimal("1929.32")


def test_a_customer_with_usage_all_week_is_measured_over_the_week():
    _, end = recent_window(NOW)
    recent = RecentCost(Decimal("336.00"), end - timedelta(hours=168), end)
    assert (recent.hours, recent.per_hour()) == (168, Fraction(2))


def test_no_usage_is_no_rate():
    recent = RecentCost(Decimal(0), None, recent_window(NOW)[1])
    assert (recent.hours, recent.per_hour()) == (0, Fraction(0))
    assert forecast(Decimal("5.00"), recent.per_hour(), NOW, DECEMBER) == Fraction(5)


def test_credit_runs_out_when_the_rate_has_spent_the_balance():
    # 100.00 at 4.00 an hour: 25 hours
    assert runs_out_at(Decimal("100.00"), Fraction(4), NOW) == NOW + timedelta(hours=25)
    assert runs_out_at(Decimal("0"), Fraction(4), NOW) == NOW
    assert runs_out_at(Decimal("1"), Fraction(0), NOW) is None


def test_credit_that_outlasts_any_forecast_runs_out_never():
    # 10^15 at 0.001 an hour: 10^18 hours, past the calendar
    assert runs_out_at(Decimal("1e15"), Fraction(1, 1000), NOW) is None


def test_a_small_rate_is_shown_to_six_places_not_as_nothing():
    """0.10 over 24 hours: 0.0041666… an hour, shown 0.004167 (to the cent it would read 0.00)."""
    _, end = recent_window(NOW)
    recent = {("cust-1", "EUR"): RecentCost(Decimal("0.10"), end - timedelta(hours=24), end)}
    assert shown_rate(rate_of(recent, ("cust-1", "EUR"))) == Decimal("0.004167")
    assert rate_of(recent, ("cust-2", "EUR")) == 0
