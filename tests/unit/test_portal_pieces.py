"""The portal's pure pieces: session cookies, the sign-in proof, the brand's text colour, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from api.access import sessions
from api.access.principals import Role
from api.access.rate_limits import TokenBuckets
from api.access.tokens import ReadToken
from api.portal import consumption
from api.portal.charts import HEIGHT, BarChart
from api.portal.pages import _readable_on
from billing.catalog import Branding
from storage.dashboards import ResourceCost

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
KEY = sessions.session_key(b"a token secret of at least thirty-two characters")


def test_a_session_round_trips_and_any_change_or_the_wrong_key_undoes_it():
    session = sessions.new_session("abcdef012345", None, NOW)
    signed = sessions.sign(session, KEY)
    assert sessions.verify(signed, KEY, NOW) == session
    assert session.expires_at == NOW + timedelta(hours=8)
    assert sessions.verify(signed, sessions.session_key(b"another secret, also thirty-two chars"), NOW) is None
    body, _, signature = signed.partition(".")
    assert sessions.verify(body[:-2] + "AA." + signature, KEY, NOW) is None
    assert sessions.verify(signed, KEY, NOW + timedelta(hours=8)) is None, "expired"


def test_a_token_session_carries_the_tokens_claims_and_ends_with_it():
    token = ReadToken("t1", Role.CUSTOMER, "direct", ("vcpu_hours",), NOW + timedelta(hours=1))
    session = sessions.new_session(None, token, NOW)
    assert session.expires_at == token.expires_at, "never past its token's expiry"
    verified = sessions.verify(sessions.sign(session, KEY), KEY, NOW)
    assert verified is not None and verified.token == token and verified.key_id is None


def test_the_sign_in_proof_needs_the_apis_key():
    proof = sessions.sign_in_proof("nonce", KEY)
    assert sessions.form_matches(proof, sessions.sign_in_proof("nonce", KEY))
    assert not sessions.form_matches("nonce", proof), "the nonce itself is no proof"
    assert not sessions.form_matches("", ""), "nothing matches nothing"


@pytest.mark.parametrize(
    ("colour", "text"),
    [("#1f4e79", "#ffffff"), ("#ffdd00", "#111111"), ("#000000", "#ffffff"), ("#ffffff", "#111111")],
)
def test_text_on_the_brand_colour_is_whichever_of_black_and_white_contrasts_more(colour, text):
    assert _readable_on(colour) == text


def test_a_logo_is_an_image_in_a_data_uri_or_an_https_address_and_nothing_else():
    for accepted in ("data:image/png;base64,iVBORw0KGgo=", "https://cdn.example/logo.png"):
        assert Branding(logo_url=accepted).logo_url == accepted
    for refused in ("javascript:alert(1)", "data:text/html,<b>", "//host/x", "http://a/x", 'https://a/"x'):
        with pytest.raises(ValueError):
            Branding(logo_url=refused)


def test_bars_scale_to_the_highest_and_a_negative_figure_draws_none():
    hours = [datetime(2026, 12, 5, hour, tzinfo=UTC) for hour in range(3)]
    chart = BarChart.of([(hours[2], Decimal("-1")), (hours[0], Decimal("2")), (hours[1], Decimal("1"))])
    assert [bar.height for bar in chart.bars] == [HEIGHT, HEIGHT / 2, 0.0]
    assert chart.first == hours[0] and chart.highest == 2


def test_a_failing_address_waits_without_spending_what_it_has_left():
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=1, burst=2, clock=lambda: now[0])
    assert buckets.wait_s("a") == 0 and buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.wait_s("a") == pytest.approx(1.0) and buckets.wait_s("a") == pytest.approx(1.0)
    now[0] = 1.0
    assert buckets.wait_s("a") == 0


def test_a_months_costs_are_summed_by_product_meter_and_resource_from_each_resources():
    """vm-1 vCPU 10 h 0.25, vm-2 vCPU 5 h 0.125, vm-1 RAM 20 GiB-h 0.08, bk-1 backup 100 GB-h 1/3:
    by product vm 0.455 -> 0.46, backup 0.333... -> 0.33; by meter vCPU 15 h 0.375 -> 0.38, the
    XaaS meter 0.33 without a quantity, RAM 20 GiB-h 0.08; by resource bk-1 0.33 (1/3 is the
    highest), vm-1 0.33, vm-2 0.125 -> 0.13."""
    costs = [
        ResourceCost("vm-1", "vm", "vcpu_hours", "vCPU-hour", "EUR", Fraction(10), Fraction(1, 4)),
        ResourceCost("vm-2", "vm", "vcpu_hours", "vCPU-hour", "EUR", Fraction(5), Fraction(1, 8)),
        ResourceCost("vm-1", "vm", "ram_gib_hours", "GiB-hour", "EUR", Fraction(20), Fraction(8, 100)),
        ResourceCost("bk-1", "backup", "xaas_unit_hours", "GB-hour", "EUR", Fraction(100), Fraction(1, 3)),
    ]
    by_product = consumption._ranked(costs, lambda cost: cost.product)
    assert [(n.name, n.amount) for n in by_product] == [("vm", Decimal("0.46")), ("backup", Decimal("0.33"))]
    by_meter = consumption._by_meter(costs)
    assert [(n.amount, n.quantity, n.unit) for n in by_meter] == [
        (Decimal("0.38"), Decimal("15.000000000000"), "vCPU-hour"),
        (Decimal("0.33"), None, None),
        (Decimal("0.08"), Decimal("20.000000000000"), "GiB-hour"),
    ]
    assert by_meter[1].name.startswith("Services (")
    by_resource = consumption._ranked(costs, lambda cost: cost.resource_id)
    assert [(n.name, n.amount) for n in by_resource] == [
        ("bk-1", Decimal("0.33")), ("vm-1", Decimal("0.33")), ("vm-2", Decimal("0.13")),
    ]  # fmt: skip


def test_an_amount_is_shown_as_the_cost_reports_show_it():
    """0.004999999999999 is 0.005000000000 to 12 places, as the engine rounds it, then 0.01."""
    assert consumption.shown_money(Fraction(4_999_999_999_999, 10**15), "EUR") == Decimal("0.01")
    assert consumption.shown_money(Fraction(1, 3), "JPY") == Decimal("0")
