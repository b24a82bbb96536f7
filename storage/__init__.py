"""ClickHouse, the only place that speaks SQL: connections, the schema, and how usage is stored
and rolled up. The sink, the API and the billing jobs use it; it uses none of them."""
