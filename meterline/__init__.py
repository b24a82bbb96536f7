"""meterline: usage metering, rating and invoicing for cloud service providers."""
