"""The ledger in the real ClickHouse engine (chDB): what a write cut short leaves behind."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import clickhouse_connect
import pytest

from billing.invoices import InvoiceStatus, build_invoices
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


def test_two_processes_issuing_at_once_never_give_a_number_twice(tmp_path):
    """Twelve drafts of one issuer issued from two ledgers on their own clients at once (as two
    API replicas, or the close job beside the API, would): numbers 1 to 12, each once."""
    clients = [clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/clickhouse") for _ in range(2)]
    migrate(clients[0], DB)
    ledgers = [Ledger(client, DB) for client in clients]
    invoice = next(i for i in build_invoices(catalog(), NOVEMBER, USAGE) if i.buyer_id == "direct")
    now = datetime(2026, 12, 3, tzinfo=UTC)
    drafts = [
        InvoiceRecord.draft(replace(invoice, invoice_id=f"{invoice.invoice_id}.{n:02d}"), 1, now) for n in range(12)
    ]
    ledgers[0].save(drafts)
    prefixes = catalog().invoice_prefixes()
    ready = threading.Barrier(2)
    failures: list[BaseException] = []

    def issue(ledger: Ledger, share: list[InvoiceRecord]) -> None:
        ready.wait()
        try:
            for draft in share:
                ledger.change_status(EVERYTHING, draft.invoice_id, InvoiceStatus.ISSUED, now, prefixes)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    threads = [threading.Thread(target=issue, args=(ledgers[n], drafts[n::2])) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    issued = [ledgers[0].get(EVERYTHING, draft.invoice_id) for draft in drafts]
    assert sorted(record.sequence for record in issued) == list(range(1, 13))
    assert len({record.number for record in issued}) == 12


def test_a_stored_line_keeps_the_unit_price_as_the_price_list_wrote_it(tmp_path):
    """Storage keeps 12 places for every price; a line priced 0.0200 (and one priced 0.0000)
    comes back with 4, so that its invoice shows 0.0200, not 0.02. A whole price (30) comes back
    without places (the invoice shows it at the currency's 2)."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/clickhouse")
    migrate(client, DB)
    ledger = Ledger(client, DB)
    invoice = next(i for i in build_invoices(catalog(), NOVEMBER, USAGE) if i.buyer_id == "direct")
    prices = [Decimal("0.0200"), Decimal("0.0000"), Decimal("30")]
    lines = tuple(replace(line, unit_price=price) for line, price in zip(invoice.lines, prices, strict=False))
    ledger.save([InvoiceRecord.draft(replace(invoice, lines=lines), 1, datetime(2026, 12, 3, tzinfo=UTC))])

    stored = ledger.get(EVERYTHING, invoice.invoice_id)
    assert [str(line.unit_price) for line in stored.lines] == ["0.0200", "0.0000", "3E+1"]
