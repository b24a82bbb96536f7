"""The ledger in the real ClickHouse engine (chDB): what a write cut short leaves behind."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import clickhouse_connect
import pytest

from billing.invoices import build_invoices
from billing.records import InvoiceRecord
from billing.scope import EVERYTHING
from storage.ledger import Ledger
from storage.schema import migrate
from tests.unit.test_invoices import NOVEMBER, USAGE, catalog

pytestmark = pytest.mark.integration
DB = "ledger"


def test_lines_left_by_a_write_cut_short_never_show_on_the_invoice(tmp_path):
    """A close wrote the direct customer's 6 lines and died before the header; the next close
    builds the same revision with 4 lines (usage changed): the invoice shows those 4 only."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/clickhouse")
    migrate(client, DB)
    ledger = Ledger(client, DB)
    invoice = next(i for i in build_invoices(catalog(), NOVEMBER, USAGE) if i.buyer_id == "direct")
    now = datetime(2026, 12, 3, tzinfo=UTC)
    cut_short = InvoiceRecord.draft(invoice, 1, now)
    ledger.save([cut_short])
    client.command(f"ALTER TABLE {DB}.invoices DELETE WHERE 1 SETTINGS mutations_sync = 1")  # the header never landed

    rebuilt = InvoiceRecord.draft(replace(invoice, lines=invoice.lines[:4]), 1, now)
    ledger.save([rebuilt])
    stored = ledger.get(EVERYTHING, invoice.invoice_id)
    assert len(cut_short.lines) == 6 and stored.lines == rebuilt.lines
    assert stored.subtotal == sum(line.amount for line in stored.lines)
