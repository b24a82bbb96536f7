"""The stream stage: validate, dedupe, meter and rate usage events."""
