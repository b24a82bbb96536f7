"""The currencies each party holds records in: invoices, credit, payments and rated usage. Records
are never converted, so a party's currency must stay theirs (``api.catalog_admin``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from clickhouse_connect.driver.client import Client

from storage.tables import CREDIT_GRANTS, INVOICES, PAYMENTS, USAGE_BY_MONTH

HELD_BY = (
    (INVOICES, "buyer_id"),
    (CREDIT_GRANTS, "holder_id"),
    (PAYMENTS, "holder_id"),
    (USAGE_BY_MONTH, "customer_id"),
)
"""Each table of records in a party's currency, and the column naming the party."""


class PartyRecords:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database

    def currencies_held(self, parties: Collection[str]) -> dict[str, set[str]]:
        """The currencies of the invoices, credit, payments and rated usage of each of
        ``parties`` that holds any."""
        if not parties:
            return {}
        query = " UNION DISTINCT ".join(
            f"SELECT DISTINCT {column}, currency FROM {self._database}.{table} "
            f"WHERE {column} IN {{parties:Array(String)}}"
            for table, column in HELD_BY
        )
        held: dict[str, set[str]] = defaultdict(set)
        for party, currency in self._client.query(query, {"parties": sorted(parties)}).result_rows:
            held[party].add(currency)
        return dict(held)
