"""The catalog: who sells to whom, at what price, under which subscriptions and taxes.

A customer buys from the provider or from exactly one partner (reseller). Each seller has a
price list; a partner without a plan for a meter sells at the provider's list price, and buys
from the provider at the provider's price less its ``discount_percent``. A customer's own plans
(negotiated overrides) beat its seller's list. Prices are effective-dated: a new version is a new
entry with a later ``effective_from``, never an edit.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from billing.money import PLACES, Amount, TaxRate, is_billing_currency
from billing.price_plans import PricePlan, UtcTime, check_unique_versions, plan_in_force
from meterline.exceptions import InvalidCatalog, UnknownCustomer
from schemas.identifiers import IDENTIFIER_PATTERN, printable
from schemas.meters import Meter, XaasAggregation

Email = Annotated[
    str,
    Field(
        max_length=254,
        # one plain address: an unquoted local part and a host name (a local one, such as
        # 'intranet', too), nothing a mail header could be split at
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$",
        description="where the party's invoices are emailed: one plain address",
    ),
]
Percent = Annotated[Decimal, Field(ge=0, le=100, decimal_places=PLACES)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="An ISO 4217 code: EUR, CHF, JPY")]
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
Line = Annotated[str, Field(max_length=500), AfterValidator(printable)]
"""A name, an address line, a description: shown on invoices, CSV and pages, so one line of
printable text (``schemas.identifiers.text_refusal``)."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Branding(_Entry):
    """How an issuer's documents look: shown on HTML and PDF invoices."""

    logo_url: str | None = Field(
        default=None,
        max_length=2_000_000,
        pattern=r"^(data:image/(png|jpeg);base64,[A-Za-z0-9+/]+={0,2}|https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?)$",
    )
    """A ``data:image/png;base64,...`` (or JPEG) URI, drawn on invoices (HTML and PDF) and the
    portal; an https address is drawn on invoices' HTML pages only (documents are rendered without
    network access, and the portal loads nothing from another site)."""
    colour: str = Field(default="#1f4e79", pattern=r"^#[0-9a-fA-F]{6}$")
    terms: str = "Payment due within 30 days of the invoice date."


class Party(_Entry):
    id: Identifier
    name: Line = Field(min_length=1)
    street: Line = ""
    postcode: Line = ""
    city: Line = ""
    country: str = Field(default="FR", pattern=r"^[A-Z]{2}$")
    vat_id: str | None = None
    email: Email | None = None


class PaymentDetails(_Entry):
    """How buyers pay an issuer: a bank transfer, a payment page, or both."""

    iban: str | None = Field(default=None, pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,40}$")
    bic: str | None = Field(default=None, pattern=r"^[A-Z0-9]{8}([A-Z0-9]{3})?$")
    bank: str | None = None
    link: str | None = Field(default=None, pattern=r"^https://")
    due_days: int = Field(default=30, ge=0, le=365)
    gateways: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]] = Field(default=[], max_length=8)
    """The card payment gateways buyers pay it through (names in ``METERLINE_PAYMENTS_GATEWAYS``):
    the first takes new payments, the others settle those made through them before."""


class Issuer(Party):
    """A party that sends invoices: the provider, or a partner to its customers."""

    invoice_prefix: str = Field(pattern=r"^[A-Z0-9]{2,10}$")
    branding: Branding = Branding()
    payment: PaymentDetails = PaymentDetails()


class Partner(Issuer):
    discount_percent: Percent = Decimal(0)
    """Off the provider's prices, on the provider's invoice to this partner."""
    jurisdiction: str = "FR"
    currency: Currency | None = None
    """What the provider invoices it in, at its price list in that currency; None: the catalog's.
    Its customers are invoiced in it too, unless they name their own."""


class BillingMode(StrEnum):
    POSTPAY = "postpay"
    """Billed at the close for what it used (prepaid credit it holds pays first)."""
    PREPAY = "prepay"
    """Pays ahead with credit: suspended when it runs out (``billing/alerts.py``)."""


class Customer(Party):
    partner_id: Identifier | None = None
    jurisdiction: str = "FR"
    discount_percent: Percent = Decimal(0)
    plans: list[PricePlan] = []
    """Negotiated overrides of the seller's list."""
    billing: BillingMode = BillingMode.POSTPAY
    credit_grace: Amount = Decimal(0)
    """For a pre-pay customer: how much usage credit may leave uncovered in a month before it is
    suspended."""
    manages_alerts: bool = False
    """Whether its own keys may make credit alert rules (on itself) and webhook endpoints."""
    currency: Currency | None = None
    """What it is invoiced, rated and charged in, at its seller's price list in that currency
    (its own plans, fees and one-time charges are in it too); None: its partner's, or the
    catalog's. No conversion is ever made: a currency without a price list prices nothing."""


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class Fee(_Entry):
    """A seller's recurring price for a product, and its one-time set-up fee."""

    product_id: Identifier
    amount: Amount
    interval: Interval = Interval.MONTH
    setup_fee: Amount = Decimal(0)
    effective_from: UtcTime


class Product(_Entry):
    id: Identifier
    name: Line = Field(min_length=1)
    aggregation: XaasAggregation | None = None
    """For an XaaS sku (the product's id): what its reported quantity is, so how a period's
    quantity is made of the reports, and under which meter it is priced. An sku without a
    product, or without this, reports a counter."""
    unit: Line | None = Field(default=None, max_length=32)
    """For an XaaS sku: the unit its reports must name (``GB``); a report in another is refused,
    so that no quantities of different units are ever added, and no reporter chooses what an
    invoice prints as the unit."""


class PriceList(_Entry):
    """A seller's prices in one currency: a seller has one list per currency it sells in."""

    seller_id: Identifier
    currency: Currency | None = None
    """None: the catalog's currency."""
    plans: list[PricePlan] = []
    fees: list[Fee] = []

    @property
    def list_id(self) -> str:
        """Its key among the catalog's lists: the seller's id, and the currency when it names one."""
        return price_list_id(self.seller_id, self.currency)


def price_list_id(seller_id: str, currency: str | None) -> str:
    return seller_id if currency is None else f"{seller_id}.{currency}"


class Subscription(_Entry):
    """A customer's recurring product; a change is a cancellation plus a new subscription."""

    id: Identifier
    customer_id: Identifier
    product_id: Identifier
    quantity: Annotated[int, Field(ge=1)] = 1
    start: date
    end: date | None = None
    """First day no longer billed; None while the subscription runs."""

    @model_validator(mode="after")
    def _ends_after_start(self) -> Subscription:
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Supplier(StrEnum):
    SELLER = "seller"
    PROVIDER = "provider"


class OneTimeCharge(_Entry):
    """A charge billed once, by the customer's seller. One the provider supplies to a resold
    customer (an installation by the provider's staff, say) is also billed by the provider to
    the partner, at ``amount`` less the partner's discount."""

    id: Identifier
    customer_id: Identifier
    description: Line = Field(min_length=1)
    amount: Amount
    day: date
    supplier: Supplier = Supplier.SELLER


class Catalog(_Entry):
    currency: str
    provider: Issuer
    partners: list[Partner] = []
    customers: list[Customer] = []
    products: list[Product] = []
    price_lists: list[PriceList] = []
    tax_rates: list[TaxRate] = []
    subscriptions: list[Subscription] = []
    one_time_charges: list[OneTimeCharge] = []

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        named = [p.currency for p in self.partners] + [c.currency for c in self.customers]
        for currency in {self.currency, *named, *(p.currency for p in self.price_lists)}:
            if currency is not None and not is_billing_currency(currency):
                raise ValueError(f"currency {currency!r} is not the ISO 4217 code of a currency in use")
        sellers = {self.provider.id, *(p.id for p in self.partners)}
        parties = [self.provider.id, *(p.id for p in self.partners), *(c.id for c in self.customers)]
        if len(parties) != len(set(parties)):
            raise ValueError("provider, partner and customer ids must all differ")
        jurisdictions = {rate.jurisdiction for rate in self.tax_rates}
        products = {product.id for product in self.products}
        customers = {customer.id for customer in self.customers}
        for customer in self.customers:
            if customer.partner_id is not None and customer.partner_id not in sellers - {self.provider.id}:
                raise ValueError(f"customer {customer.id}: unknown partner {customer.partner_id}")
            check_unique_versions(customer.plans, f"customer {customer.id}")
        parties_taxed = [(c.id, c.jurisdiction) for c in self.customers] + [
            (p.id, p.jurisdiction) for p in self.partners
        ]
        for party_id, jurisdiction in parties_taxed:
            if jurisdiction not in jurisdictions:
                raise ValueError(f"{party_id}: no tax rate for jurisdiction {jurisdiction}")
        lists = [(p.seller_id, p.currency or self.currency) for p in self.price_lists]
        if len(lists) != len(set(lists)):
            raise ValueError("a seller has one price list per currency (a list naming none is in the catalog's)")
        for price_list in self.price_lists:
            if price_list.seller_id not in sellers:
                raise ValueError(f"price list for unknown seller {price_list.seller_id}")
            check_unique_versions(price_list.plans, f"price list {price_list.seller_id}")
            for fee in price_list.fees:
                if fee.product_id not in products:
                    raise ValueError(f"price list {price_list.seller_id}: unknown product {fee.product_id}")
        billed_items = [(s.id, s.customer_id) for s in self.subscriptions]
        billed_items += [(o.id, o.customer_id) for o in self.one_time_charges]
        for item_id, customer_id in billed_items:
            if customer_id not in customers:
                raise ValueError(f"{item_id}: unknown customer {customer_id}")
        for subscription in self.subscriptions:
            if subscription.product_id not in products:
                raise ValueError(f"{subscription.id}: unknown product {subscription.product_id}")
        self._check_fees_priced()
        self._check_xaas_meters()
        return self

    def _check_fees_priced(self) -> None:
        """Every subscription has a fee in force from its first month, in its buyer's currency,
        and in its partner's at the provider's list: a close would stop at a fee it cannot find."""
        customers = {customer.id: customer for customer in self.customers}
        for subscription in self.subscriptions:
            customer = customers[subscription.customer_id]
            first_month = datetime.combine(subscription.start.replace(day=1), time(), UTC)
            priced = [(self.seller_of(customer).id, self.currency_of(customer.id))]
            if customer.partner_id:
                priced.append((self.provider.id, self.currency_of(customer.partner_id)))
            for seller_id, currency in priced:
                try:
                    self.fee_for(seller_id, subscription.product_id, first_month, currency)
                except InvalidCatalog as missing:
                    raise ValueError(f"{subscription.id}: {missing}, its first month") from None

    def _check_xaas_meters(self) -> None:
        """A plan for an XaaS sku prices it under the meter its declared aggregation fills."""
        declared = self.xaas_meters
        for plan in self.all_plans:
            expected = declared.get(plan.dimension, Meter.XAAS_UNITS)
            if plan.meter.is_xaas and plan.meter is not expected:
                raise ValueError(
                    f"a plan prices sku {plan.dimension} under {plan.meter.value}, but the sku reports "
                    f"{_aggregation_of(expected)} quantities: price it under {expected.value}"
                )

    @property
    def all_plans(self) -> list[PricePlan]:
        """Every plan of every price list, and every customer's own."""
        return [
            *(plan for price_list in self.price_lists for plan in price_list.plans),
            *(plan for customer in self.customers for plan in customer.plans),
        ]

    @property
    def xaas_units(self) -> dict[str, str]:
        """Each XaaS sku's declared unit: what its reports must name."""
        return {product.id: product.unit for product in self.products if product.unit}

    @property
    def xaas_meters(self) -> dict[str, Meter]:
        """Each declared XaaS sku's meter; the stream meters an sku's reports with it."""
        return {product.id: product.aggregation.meter for product in self.products if product.aggregation}

    def partner(self, partner_id: str) -> Partner:
        for partner in self.partners:
            if partner.id == partner_id:
                return partner
        raise UnknownCustomer(f"no partner {partner_id!r} in the catalog")

    def party(self, party_id: str) -> Party:
        """The provider, a partner or a customer, by id: whoever an invoice names."""
        found = self._parties.get(party_id)
        if found is None:
            raise UnknownCustomer(f"no party {party_id!r} in the catalog")
        return found

    def tenant_of(self, party_id: str) -> str:
        """The tenant a party belongs to: a partner's customer the partner's, anyone else its own
        (one no longer in the catalog too)."""
        found = self._parties.get(party_id)
        return found.partner_id if isinstance(found, Customer) and found.partner_id else party_id

    @cached_property
    def _parties(self) -> dict[str, Party]:
        """Every party by id: each request of a partner's or customer's key looks its own up."""
        parties: list[Party] = [self.provider, *self.partners, *self.customers]
        return {party.id: party for party in parties}

    def product_name(self, product_id: str) -> str:
        """A product's display name; an XaaS sku without a product entry shows as itself."""
        return self._product_names.get(product_id, product_id)

    def has_product(self, product_id: str) -> bool:
        return product_id in self._product_names

    @cached_property
    def _product_names(self) -> dict[str, str]:
        return {product.id: product.name for product in self.products}

    def currency_of(self, party_id: str) -> str:
        """What a party is invoiced and charged in: its own currency, a partner's customer its
        partner's, anyone else the catalog's."""
        party = self._parties.get(party_id)
        if isinstance(party, Customer | Partner) and party.currency:
            return party.currency
        if isinstance(party, Customer) and party.partner_id:
            return self.currency_of(party.partner_id)
        return self.currency

    def issuer(self, issuer_id: str) -> Issuer:
        return self.provider if issuer_id == self.provider.id else self.partner(issuer_id)

    def invoice_prefixes(self) -> dict[str, str]:
        issuers: list[Issuer] = [self.provider, *self.partners]
        return {issuer.id: issuer.invoice_prefix for issuer in issuers}

    def seller_of(self, customer: Customer) -> Issuer:
        return self.partner(customer.partner_id) if customer.partner_id else self.provider

    def tax_rate(self, jurisdiction: str) -> TaxRate:
        return next(rate for rate in self.tax_rates if rate.jurisdiction == jurisdiction)

    @cached_property
    def _lists(self) -> dict[tuple[str, str], PriceList]:
        return {(p.seller_id, p.currency or self.currency): p for p in self.price_lists}

    def _list(self, seller_id: str, currency: str) -> PriceList:
        return self._lists.get((seller_id, currency)) or PriceList(seller_id=seller_id, currency=currency)

    @cached_property
    def subscriptions_of(self) -> dict[str, list[Subscription]]:
        """Each customer's subscriptions, in catalog order: a close looks them up once per customer."""
        return _by_customer(self.subscriptions)

    @cached_property
    def customers_of_partner(self) -> dict[str, frozenset[str]]:
        """Each partner's customers' ids: every request of a partner's key derives its scope."""
        sold: dict[str, set[str]] = {partner.id: set() for partner in self.partners}
        for customer in self.customers:
            if customer.partner_id is not None:
                sold.setdefault(customer.partner_id, set()).add(customer.id)
        return {partner_id: frozenset(ids) for partner_id, ids in sold.items()}

    @cached_property
    def one_time_charges_of(self) -> dict[str, list[OneTimeCharge]]:
        return _by_customer(self.one_time_charges)

    @cached_property
    def _plans_found(self) -> dict[tuple[str | None, str, str, str, datetime], PricePlan | None]:
        return {}

    def candidate_plans(self, customer: Customer | None, currency: str | None = None) -> list[PricePlan]:
        """Every plan that may price this customer (None: a buyer at the provider's list in
        ``currency``, the catalog's by default), in the order the rule consults them: its own,
        its seller's list, the provider's list, each in the customer's currency."""
        return [plan for plans in self._plan_lists(customer, currency) for plan in plans]

    def _plan_lists(self, customer: Customer | None, currency: str | None) -> tuple[list[PricePlan], ...]:
        if customer is None:
            return ([], [], self._list(self.provider.id, currency or self.currency).plans)
        currency = self.currency_of(customer.id)
        seller = self._list(customer.partner_id, currency).plans if customer.partner_id else []
        return customer.plans, seller, self._list(self.provider.id, currency).plans

    def find_plan(
        self, customer: Customer | None, meter: str, dimension: str, at: datetime, currency: str | None = None
    ) -> PricePlan | None:
        """The pricing rule: the first of the customer's own plans, its seller's list and the
        provider's list, in the customer's currency, with a plan in force for the meter at ``at``
        (an exact dimension before the wildcard inside each). None as the customer stands for a
        buyer at the provider's list in ``currency``, as a partner is on the provider's invoice."""
        key = (customer.id if customer else None, currency or "", meter, dimension, at)
        if key in self._plans_found:
            return self._plans_found[key]
        found = None
        for plans in self._plan_lists(customer, currency):
            found = plan_in_force(plans, meter, dimension, at)
            if found is not None:
                break
        self._plans_found[key] = found
        return found

    def plan_for(
        self, customer: Customer | None, meter: str, dimension: str, at: datetime, currency: str | None = None
    ) -> PricePlan:
        """``find_plan``, for usage that must be priced: no plan in force is a catalog error."""
        plan = self.find_plan(customer, meter, dimension, at, currency)
        if plan is None:
            shown = currency or (self.currency_of(customer.id) if customer else self.currency)
            raise InvalidCatalog(f"no price plan in {shown} for {meter} ({dimension}) at {at.isoformat()}")
        return plan

    def fee_for(self, seller_id: str, product_id: str, at: datetime, currency: str) -> Fee:
        for price_list in (self._list(seller_id, currency), self._list(self.provider.id, currency)):
            fees = [f for f in price_list.fees if f.product_id == product_id and f.effective_from <= at]
            if fees:
                return max(fees, key=lambda fee: fee.effective_from)
        raise InvalidCatalog(f"no fee in {currency} for product {product_id} at {at.isoformat()}")


Billed = TypeVar("Billed", Subscription, OneTimeCharge)


def _by_customer(items: list[Billed]) -> dict[str, list[Billed]]:
    index: dict[str, list[Billed]] = defaultdict(list)
    for item in items:
        index[item.customer_id].append(item)
    return index


def _aggregation_of(meter: Meter) -> str:
    return next(kind.value for kind in XaasAggregation if kind.meter is meter)


def describe(error: ValidationError) -> str:
    """Each problem on one line, located by its path in the document: ``customers.3.id: ...``; a
    rule of the whole catalog (no path) says only what it found."""
    return "; ".join(
        ".".join(str(part) for part in problem["loc"]) + ": " + problem["msg"]
        if problem["loc"]
        else problem["msg"].removeprefix("Value error, ")
        for problem in error.errors()
    )
