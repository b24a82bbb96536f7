"""How late usage may come: one number that the intake, the workers and the close share."""

LATE_USAGE_MONTHS = 3
"""Months before the current one whose usage is still accepted, and which a close looks back
over for usage that reached invoices already issued: the same number, so that no accepted usage
goes unbilled (``METERLINE_LATE_USAGE_MONTHS`` changes it for the intake and the workers)."""
