"""How late usage may come: one number that the intake, the workers and the close share."""

from datetime import UTC, datetime

LATE_USAGE_MONTHS = 3
"""Months before the current one whose usage is still accepted, and which a close looks back
over for usage that reached invoices already issued: the same number, so that no accepted usage
goes unbilled (``METERLINE_LATE_USAGE_MONTHS`` changes it for the intake and the workers)."""


def earliest_accepted(now: datetime, months: int) -> datetime:
    """The start of the month ``months`` before ``now``'s: the oldest usage still accepted."""
    index = now.year * 12 + now.month - 1 - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
