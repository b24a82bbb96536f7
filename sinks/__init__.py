"""Storage writers: Kafka topics in, ClickHouse tables out."""
