"""Access rules as pure functions: tenant scopes, ingest bindings, keys, read tokens, rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.access.keys import may_manage, new_key_material, split_key
from api.access.principals import Permission, Principal, Role
from api.access.rate_limits import TokenBuckets, retry_after_header
from api.access.tokens import ReadToken, sign, verify
from billing.catalog import Catalog
from billing.catalog_entries import EntryKind
from billing.scope import EVERYTHING
from tests.factories import catalog_document

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = b"s" * 48


@pytest.fixture
def catalog():
    document = catalog_document()
    document["customers"].append({"id": "southco", "name": "SouthCo", "partner_id": "north"})
    return Catalog.model_validate(document)


def test_a_partner_sees_itself_and_its_customers_and_changes_only_what_it_issues(catalog):
    scope = Principal("k", Role.PARTNER, "north").scope(catalog)
    assert scope.customers == {"resold", "southco"}
    assert scope.sees_party("north") and scope.sees_party("resold") and not scope.sees_party("direct")
    assert scope.may_change_invoice("north", "resold"), "its own invoice to its customer"
    assert not scope.may_change_invoice("acme", "north"), "the provider's invoice to it"
    assert scope.sees_entry(EntryKind.CUSTOMER, {"id": "resold", "partner_id": "north"})
    assert not scope.sees_entry(EntryKind.CUSTOMER, {"id": "direct"})
    assert scope.sees_entry(EntryKind.PRODUCT, {"id": "support"}), "the offering is public"
    assert not scope.sees_entry(EntryKind.PRICE_LIST, {"seller_id": "acme"})
    assert scope.may_write_entry(EntryKind.PRICE_LIST, {"seller_id": "north"})
    assert not scope.may_write_entry(EntryKind.CUSTOMER, {"id": "resold", "partner_id": None}), "giving it away"
    assert not scope.may_write_entry(EntryKind.SUBSCRIPTION, {"customer_id": "direct"})
    assert scope.may_write_entry(EntryKind.ONE_TIME_CHARGE, {"customer_id": "resold", "supplier": "seller"})
    provider_supplied = {"customer_id": "resold", "supplier": "provider"}
    assert not scope.may_write_entry(EntryKind.ONE_TIME_CHARGE, provider_supplied), "what the provider bills it for"
    assert not scope.may_write_entry(EntryKind.TAX_RATE, {"jurisdiction": "DE"})


def test_a_customer_sees_only_itself_and_writes_nothing(catalog):
    scope = Principal("k", Role.CUSTOMER, "resold").scope(catalog)
    assert scope.customers == {"resold"} and scope.sees_party("resold") and not scope.sees_party("north")
    assert not scope.may_change_invoice("north", "resold")
    assert not scope.may_write_entry(EntryKind.SUBSCRIPTION, {"customer_id": "resold"})
    assert Principal("k", Role.READER).scope(catalog) is EVERYTHING


def test_a_read_token_limited_to_meters_reads_only_their_usage(catalog):
    token = ReadToken("t1", Role.CUSTOMER, "resold", ("vcpu_hours",), NOW + timedelta(hours=1))
    principal = token.principal()
    assert principal.may(Permission.READ_USAGE) and not principal.may(Permission.READ_INVOICES)
    assert principal.scope(catalog).meters == {"vcpu_hours"}


def test_an_ingest_key_reports_only_for_its_sources_and_customers():
    key = Principal("k", Role.INGEST, sources=("vcenter-a/*", "backup"), customers=("direct",))
    assert key.reports_for("vcenter-a/hv-01", "direct")
    assert key.reports_for("backup", "direct")
    assert not key.reports_for("backup-2", "direct"), "a name without * is exact"
    assert not key.reports_for("vcenter-b/hv-01", "direct")
    assert not key.reports_for("vcenter-a/hv-01", "resold")
    assert not Principal("k", Role.PARTNER, "north").reports_for("backup", "resold"), "only ingest keys push"


def test_keys_split_into_id_and_secret_and_refuse_other_shapes():
    key_id, secret, full = new_key_material()
    assert split_key(full) == (key_id, secret) and full.startswith(f"mlk_{key_id}_")
    assert split_key("mlk_short_secret") is None
    assert split_key(f"xyz_{key_id}_{secret}") is None
    assert split_key(f"mlk_{key_id}_") is None


def test_who_manages_which_keys(catalog):
    north = Principal("k", Role.PARTNER, "north")
    resold = Principal("k", Role.CUSTOMER, "resold")
    assert may_manage(north, north.scope(catalog), Role.CUSTOMER, "resold")
    assert may_manage(north, north.scope(catalog), Role.PARTNER, "north")
    assert not may_manage(north, north.scope(catalog), Role.CUSTOMER, "direct")
    assert not may_manage(north, north.scope(catalog), Role.ADMIN, "")
    assert not may_manage(north, north.scope(catalog), Role.INGEST, "")
    assert may_manage(resold, resold.scope(catalog), Role.CUSTOMER, "resold")
    assert not may_manage(resold, resold.scope(catalog), Role.PARTNER, "north")


def test_a_read_token_holds_only_with_its_signature_and_before_it_expires():
    token = ReadToken("t1", Role.PARTNER, "north", None, NOW + timedelta(minutes=5))
    signed = sign(token, SECRET)
    assert verify(signed, SECRET, NOW) == token
    assert verify(signed, b"another secret of the same length....xxxxxxxxxx", NOW) is None
    assert verify(signed, SECRET, NOW + timedelta(minutes=5)) is None, "expired"
    body, _, signature = signed.partition(".")
    forged = sign(ReadToken("t1", Role.PARTNER, "south", None, token.expires_at), SECRET).partition(".")[0]
    assert verify(f"{forged}.{signature}", SECRET, NOW) is None, "claims changed under the old signature"
    assert verify("mlt_garbage", SECRET, NOW) is None
    for stray in ("==", "!!", "="):  # base64 decoding forgives these: one token must not be many
        assert verify(signed + stray, SECRET, NOW) is None, stray


def test_a_key_bursts_then_waits_for_its_rate():
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2, burst=3, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5), "one token comes back every half second"
    assert buckets.take("other") == 0.0, "each key has its own bucket"
    now[0] = 0.5
    assert buckets.take("k") == 0.0
    assert retry_after_header(0.2) == 1 and retry_after_header(1.01) == 2
