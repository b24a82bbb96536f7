"""Values a sample cannot plausibly report, and times outside the billable window, are refused
at validation with their reason, and never take the rest of their batch with them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing.adapters.catalog_file import load_catalog
from billing.pricing import price_book
from pipeline.dedup import RecentEvents
from pipeline.processing import process_batch
from schemas.events import encode_batch
from schemas.intake import Acceptance, split_message
from tests.factories import vdc_allocation, vm_sample, xaas_usage

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ACCEPTANCE = Acceptance(now=lambda: NOW)
BOOK = price_book(load_catalog(Path("billing/catalog.yaml")))


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (datetime(1900, 1, 1, tzinfo=UTC), "before 2026-09-01"),
        (datetime(1970, 1, 1, tzinfo=UTC), "before 2026-09-01"),
        (datetime(2026, 8, 31, 23, 59, tzinfo=UTC), "before 2026-09-01"),
        (datetime(2026, 12, 2, 12, 16, tzinfo=UTC), "clock-skew"),
        (datetime(2300, 1, 1, tzinfo=UTC), "clock-skew"),
        (datetime(9999, 12, 31, tzinfo=UTC), "clock-skew"),
    ],
)
def test_a_time_outside_the_billable_window_is_refused(at, reason):
    """On 2 December the oldest month still billed is September (three months of late usage);
    15 minutes of clock skew are allowed ahead of now."""
    (rejection,) = split_message(encode_batch([vm_sample(at=at)]), ACCEPTANCE).rejected
    assert rejection.reason.startswith("time: ") and reason in rejection.reason


def test_the_edges_of_the_window_are_accepted():
    edges = [
        vm_sample(at=datetime(2026, 9, 1, tzinfo=UTC)),
        vm_sample("vm-2", at=datetime(2026, 12, 2, 12, 15, tzinfo=UTC)),
    ]
    checked = split_message(encode_batch(edges), ACCEPTANCE)
    assert len(checked.events) == 2 and not checked.rejected


def vdc_of_a_petahertz() -> dict:
    event = vdc_allocation()
    event["data"] = {**event["data"], "cpu_mhz": {"allocated": 10**12, "reserved": 0, "used": 0}}
    return event


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (vm_sample(net_tx_bytes=10**30), "data.net_tx_bytes"),
        (vm_sample(net_rx_bytes=10**15 + 1), "data.net_rx_bytes"),
        (vdc_of_a_petahertz(), "data.cpu_mhz.allocated"),
        (xaas_usage(quantity="1000000000000.5"), "data.quantity"),
    ],
)
def test_a_figure_no_sample_can_report_is_refused_with_its_path(event, path):
    (rejection,) = split_message(encode_batch([event]), ACCEPTANCE).rejected
    assert rejection.reason.startswith(f"{path}: ") and "plausibly" in rejection.reason


def test_refused_events_keep_their_place_and_their_neighbours_are_rated():
    """A batch of three: a valid sample, one sending 10^30 bytes (which overflowed rating and lost
    the whole group), and a valid XaaS report. The middle one is refused at index 1 with its
    reason; the other two are rated: 2 vCPU x 1/12 h at 0.025 = 0.004166666667, and 12.5 GB
    restored x 0.010 = 0.125."""
    at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    batch = [vm_sample(at=at), vm_sample("vm-huge", at=at, net_tx_bytes=10**30), xaas_usage("restore_gb", at=at)]
    outcome = process_batch([encode_batch(batch)], RecentEvents(), BOOK, ACCEPTANCE)
    assert [(r.index, r.event_id) for r in outcome.rejected] == [(1, batch[1]["id"])]
    assert set(outcome.events["id"]) == {batch[0]["id"], batch[2]["id"]}
    amounts = {(r["meter"], r["dimension"]): r["amount"] for r in outcome.rated.iter_rows(named=True)}
    assert amounts[("vcpu_hours", "")] == Decimal("0.004166666667")
    assert amounts[("xaas_units", "restore_gb")] == Decimal("0.125")
