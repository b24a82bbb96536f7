"""Catalog, price plans and period-close invoicing: pure functions first, ClickHouse at the edge."""
