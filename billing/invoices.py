"""Build a period's invoices from rated usage and the catalog - a pure function.

One invoice per billed party and issuer: each customer is invoiced by its seller (the provider,
or its partner at the partner's prices), and each partner is invoiced by the provider for all of
its customers' usage and subscriptions at the provider's prices, less the partner's discount.
Every line is rounded once to the currency; discount and tax are computed on the rounded lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from billing.catalog import Catalog, Customer, Interval, Issuer, Subscription
from billing.money import TaxRate, percent_of, round_money
from billing.periods import Period
from billing.price_plans import ZERO, PricePlan

PRICE_PLACES = Decimal("0.000001")


class LineKind(StrEnum):
    RECURRING = "recurring"
    USAGE = "usage"
    ONE_TIME = "one_time"
    ADJUSTMENT = "adjustment"


class DocumentType(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class InvoiceStatus(StrEnum):
    """draft -> issued -> paid | void; a draft may also be voided. Nothing leaves paid or void."""

    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"

    def can_become(self, target: InvoiceStatus) -> bool:
        return target in _NEXT[self]


_NEXT = {
    InvoiceStatus.DRAFT: {InvoiceStatus.ISSUED, InvoiceStatus.VOID},
    InvoiceStatus.ISSUED: {InvoiceStatus.PAID, InvoiceStatus.VOID},
    InvoiceStatus.PAID: set(),
    InvoiceStatus.VOID: set(),
}


@dataclass(frozen=True)
class UsageTotal:
    """A customer's rated usage of one meter and dimension over a period."""

    customer_id: str
    meter: str
    dimension: str
    unit: str
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceLine:
    kind: LineKind
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    meter: str = ""
    dimension: str = ""
    """For usage lines: what the drill-down selects, over the invoice's customers."""
    adjusts_period: str = ""
    """For adjustment lines: the earlier, already issued period they correct."""


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    period: Period
    issuer: Issuer
    buyer_id: str
    buyer_name: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    covered_customers: tuple[str, ...]
    """Whose usage the invoice bills: the buyer itself, or a partner's customers."""
    discount_percent: Decimal
    tax: TaxRate
    subtotal: Decimal = field(init=False)
    discount: Decimal = field(init=False)
    net: Decimal = field(init=False)
    tax_amount: Decimal = field(init=False)
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        subtotal = sum((line.amount for line in self.lines), ZERO)
        discount = round_money(percent_of(subtotal, self.discount_percent), self.currency)
        net, tax_amount = self.tax.split(subtotal - discount, self.currency)
        for name, value in (
            ("subtotal", subtotal),
            ("discount", discount),
            ("net", net),
            ("tax_amount", tax_amount),
            ("total", net + tax_amount),
        ):
            object.__setattr__(self, name, value)


def invoice_id_for(period: Period, issuer_id: str, buyer_id: str) -> str:
    return f"{period.name}.{issuer_id}.{buyer_id}"


Adjustments = Mapping[str, Sequence[InvoiceLine]]
"""Keyed by the party billed: lines correcting its earlier, already issued invoices."""


def build_invoices(
    catalog: Catalog, period: Period, usage: Iterable[UsageTotal], adjustments: Adjustments | None = None
) -> list[Invoice]:
    """Every invoice of the period: customers' first, then partners'."""
    by_customer: dict[str, list[UsageTotal]] = defaultdict(list)
    for total in usage:
        by_customer[total.customer_id].append(total)
    invoices = [
        _customer_invoice(catalog, period, customer, by_customer.get(customer.id, [])) for customer in catalog.customers
    ]
    for partner in catalog.partners:
        customers = [c for c in catalog.customers if c.partner_id == partner.id]
        if customers:
            usage_of_customers = [t for c in customers for t in by_customer.get(c.id, [])]
            invoices.append(_partner_invoice(catalog, period, partner.id, customers, usage_of_customers))
    adjustments = adjustments or {}
    invoices = [
        replace(invoice, lines=(*invoice.lines, *adjustments[invoice.buyer_id]))
        if invoice.buyer_id in adjustments
        else invoice
        for invoice in invoices
    ]
    return [invoice for invoice in invoices if invoice.lines]


def late_usage_adjustments(
    catalog: Catalog, earlier: Period, usage: Iterable[UsageTotal], billed: Mapping[str, Decimal]
) -> dict[str, InvoiceLine]:
    """Lines that bring issued invoices of ``earlier`` up to date with the usage known now.

    ``billed`` is the subtotal issued per invoice id. Usage that arrived after the close, or a
    correction, is billed (or credited) on the next invoice rather than by editing an issued one.
    """
    lines = {}
    for invoice in build_invoices(catalog, earlier, usage):
        if invoice.invoice_id not in billed:
            continue
        difference = invoice.subtotal - billed[invoice.invoice_id]
        if difference:
            description = f"Adjustment to {earlier.name}: usage received after its invoice was issued"
            lines[invoice.buyer_id] = InvoiceLine(
                LineKind.ADJUSTMENT,
                description,
                Decimal(1),
                "unit",
                difference,
                difference,
                adjusts_period=earlier.name,
            )
    return lines


def _customer_invoice(catalog: Catalog, period: Period, customer: Customer, usage: list[UsageTotal]) -> Invoice:
    seller = catalog.seller_of(customer)
    lines = _fee_lines(catalog, period, seller.id, catalog.subscriptions_of.get(customer.id, []))
    lines += [
        InvoiceLine(LineKind.ONE_TIME, charge.description, Decimal(1), "unit", charge.amount, charge.amount)
        for charge in catalog.one_time_charges_of.get(customer.id, [])
        if period.first_day <= charge.day < period.end_day
    ]
    for total in sorted(usage, key=lambda t: (t.meter, t.dimension)):
        plan = catalog.plan_for(customer, seller.id, total.meter, total.dimension, period.start)
        if plan.is_linear:
            lines.append(_rated_line(total, catalog.currency))
        else:
            lines += _plan_lines(plan, total, catalog.currency)
    return Invoice(
        invoice_id=invoice_id_for(period, seller.id, customer.id),
        period=period,
        issuer=seller,
        buyer_id=customer.id,
        buyer_name=customer.name,
        currency=catalog.currency,
        lines=tuple(lines),
        covered_customers=(customer.id,),
        discount_percent=customer.discount_percent,
        tax=catalog.tax_rate(customer.jurisdiction),
    )


def _partner_invoice(
    catalog: Catalog, period: Period, partner_id: str, customers: list[Customer], usage: list[UsageTotal]
) -> Invoice:
    partner = catalog.partner(partner_id)
    provider = catalog.provider.id
    subscriptions = [s for customer in customers for s in catalog.subscriptions_of.get(customer.id, [])]
    lines = _merge_alike(_fee_lines(catalog, period, provider, subscriptions))
    summed: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for total in usage:
        summed[(total.meter, total.dimension, total.unit)] += total.quantity
    for (meter, dimension, unit), quantity in sorted(summed.items()):
        plan = catalog.plan_for(None, provider, meter, dimension, period.start)
        lines += _plan_lines(plan, UsageTotal(partner.id, meter, dimension, unit, quantity, ZERO), catalog.currency)
    return Invoice(
        invoice_id=invoice_id_for(period, provider, partner.id),
        period=period,
        issuer=catalog.provider,
        buyer_id=partner.id,
        buyer_name=partner.name,
        currency=catalog.currency,
        lines=tuple(lines),
        covered_customers=tuple(sorted(c.id for c in customers)),
        discount_percent=partner.discount_percent,
        tax=catalog.tax_rate(partner.jurisdiction),
    )


def _fee_lines(
    catalog: Catalog, period: Period, seller_id: str, subscriptions: list[Subscription]
) -> list[InvoiceLine]:
    """Recurring fees (monthly prorated to the day, yearly in full in the anniversary month) and set-up fees."""
    lines = []
    products = {product.id: product.name for product in catalog.products}
    for subscription in sorted(subscriptions, key=lambda s: (s.product_id, s.id)):
        fee = catalog.fee_for(seller_id, subscription.product_id, period.start)
        name = products[subscription.product_id]
        quantity = Decimal(subscription.quantity)
        days = period.days_active(subscription.start, subscription.end)
        if fee.interval is Interval.MONTH and days:
            amount = round_money(
                period.prorate(fee.amount * quantity, subscription.start, subscription.end), catalog.currency
            )
            note = "" if days == period.days else f", {days} of {period.days} days"
            lines.append(
                InvoiceLine(LineKind.RECURRING, f"{name} (monthly{note})", quantity, "subscription", fee.amount, amount)
            )
        elif fee.interval is Interval.YEAR and days and subscription.start.month == period.first_day.month:
            amount = round_money(fee.amount * quantity, catalog.currency)
            lines.append(
                InvoiceLine(LineKind.RECURRING, f"{name} (yearly)", quantity, "subscription", fee.amount, amount)
            )
        if fee.setup_fee and period.first_day <= subscription.start < period.end_day:
            amount = round_money(fee.setup_fee * quantity, catalog.currency)
            lines.append(InvoiceLine(LineKind.ONE_TIME, f"{name}: set-up", quantity, "unit", fee.setup_fee, amount))
    return lines


def _merge_alike(lines: list[InvoiceLine]) -> list[InvoiceLine]:
    """One line per product and price on a partner's invoice, not one per end customer's subscription."""
    merged: dict[tuple[LineKind, str, Decimal], InvoiceLine] = {}
    for line in lines:
        key = (line.kind, line.description, line.unit_price)
        seen = merged.get(key)
        merged[key] = (
            line
            if seen is None
            else replace(seen, quantity=seen.quantity + line.quantity, amount=seen.amount + line.amount)
        )
    return list(merged.values())


def _rated_line(total: UsageTotal, currency: str) -> InvoiceLine:
    """A linear plan's line is the sum of the amounts rated in the stream, hour by hour."""
    average = (total.amount / total.quantity).quantize(PRICE_PLACES) if total.quantity else ZERO
    return InvoiceLine(
        LineKind.USAGE,
        _usage_name(total),
        total.quantity,
        total.unit,
        average,
        round_money(total.amount, currency),
        total.meter,
        total.dimension,
    )


def _plan_lines(plan: PricePlan, total: UsageTotal, currency: str) -> list[InvoiceLine]:
    """The plan's charges for a period's total, each a line rounded to the currency."""
    return [
        InvoiceLine(
            LineKind.USAGE,
            f"{_usage_name(total)}: {charge.description}" if charge.description else _usage_name(total),
            charge.quantity,
            total.unit,
            charge.unit_price,
            round_money(charge.amount, currency),
            total.meter,
            total.dimension,
        )
        for charge in plan.charges(total.quantity)
    ]


def _usage_name(total: UsageTotal) -> str:
    return total.meter if total.dimension in ("", "*") else f"{total.meter} ({total.dimension})"
