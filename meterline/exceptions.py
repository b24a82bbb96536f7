"""The root of every error meterline raises on purpose."""

from __future__ import annotations


class MeterlineError(Exception):
    """Base class: catch this to handle any deliberate meterline failure."""


class InvalidEvent(MeterlineError):
    """An event broke its contract; ``reason`` says how, for the dead-letter topic and the API."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class InvalidQuery(MeterlineError):
    """A usage query asked for something that does not exist (bad range, granularity...)."""


class InvalidRange(InvalidQuery):
    """A time range that cannot be read: backwards, without a UTC offset, outside the years
    stored, or more buckets than one query may return (422, like a malformed parameter)."""


class InvalidCatalog(MeterlineError):
    """A catalog entry is malformed or contradicts another (unknown partner, overlapping tiers...)."""


class UnknownCustomer(MeterlineError):
    """A customer or partner id that the catalog does not hold."""


class UnknownEntry(MeterlineError):
    """A catalog entry (product, price list, subscription...) that the catalog does not hold."""


class UnknownInvoice(MeterlineError):
    """An invoice (or credit note, or delivery) id that the ledger does not hold."""


class IncompleteUsage(MeterlineError):
    """Messages that may carry usage of the period were sent and never stored."""


class PeriodIssued(MeterlineError):
    """A change that would reach into a month whose invoices are issued (a backdated price)."""


class CurrencyInUse(MeterlineError):
    """A change of a party's currency while it holds invoices, credit, payments or usage in the old one."""


class InvoiceStateError(MeterlineError):
    """A lifecycle step that the invoice's status forbids: issuing a void invoice, paying a draft..."""


class UnknownGrant(MeterlineError):
    """A credit grant id that the holder does not hold."""


class IdempotencyConflict(MeterlineError):
    """An idempotency key used again for a request that asks something else."""


class LimitReached(MeterlineError):
    """Making one more would pass a limit on how many an owner keeps (rules, endpoints, secrets),
    or repeat one it has."""


class Unauthenticated(MeterlineError):
    """No credentials, or a key or token that is unknown, expired or revoked."""


class Forbidden(MeterlineError):
    """The caller is known, and its role does not allow this action."""


class RateLimited(MeterlineError):
    """The caller's key sent more requests than its rate allows; ``retry_after_s`` says when to retry."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnsupportedMediaType(MeterlineError):
    """A request that changes state sent a body that is not JSON (a browser form, text/plain)."""


class UnknownPayment(MeterlineError):
    """A payment id (or gateway) that meterline does not hold."""


class GatewayUnavailable(MeterlineError):
    """A payment gateway did not answer, or answered 5xx: whether the call took effect is
    unknown, so it is made again later with the same idempotency key."""


class GatewayRefused(MeterlineError):
    """A payment gateway answered, and refused what was asked (a bad request, a declined refund)."""


class BadSignature(MeterlineError):
    """A webhook that the gateway's signing secret did not sign, or signed too long ago."""


class PaymentMismatch(MeterlineError):
    """A gateway event that cannot be its payment's: another currency, amount or gateway."""
