"""Price billable quantities with the unit price in force at the usage's time.

A price book entry names a meter, optionally a dimension (disk tier, vDC model, XaaS sku)
and a customer, and the instant from which it applies. The most specific entry wins:
customer and dimension, then customer, then dimension, then the meter's list price. Which plan
that is, is not decided here: ``billing.pricing.price_book`` writes the book from the catalog's
one pricing rule, fully resolved for every customer with prices of its own.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Literal

import polars as pl

from billing.pricing import ANY_CUSTOMER as ANY
from billing.pricing import PriceBook
from pipeline.metering import EXACT
from schemas.identity import IDENTITY_SEPARATOR
from schemas.meters import Meter
from schemas.records import MONEY, RATED_SCHEMA

# A batch is a few thousand rows: the streaming engine's set-up costs more than it saves there.
ENGINE: Literal["in-memory"] = "in-memory"


@lru_cache(maxsize=2)
def _book_frame(book: PriceBook) -> pl.DataFrame:
    """The book as a frame, built once per book (a worker rates every batch with it)."""
    return pl.DataFrame(
        {
            "price_customer": [p.customer_id for p in book.prices],
            "meter": [p.meter.value for p in book.prices],
            "price_dimension": [p.dimension for p in book.prices],
            "effective_from": [p.effective_from for p in book.prices],
            "unit_price": [p.unit_price for p in book.prices],
        },
        schema={
            "price_customer": pl.String,
            "meter": pl.String,
            "price_dimension": pl.String,
            "effective_from": pl.Datetime("ms", "UTC"),
            "unit_price": MONEY,
        },
    ).sort("effective_from")


@lru_cache(maxsize=2)
def _customers_with_own_prices(book: PriceBook) -> list[str]:
    """Those looked up by their own id: with prices of their own, or rated in another currency
    (even with no price in it: they must not be looked up as ``*``)."""
    return sorted(({p.customer_id for p in book.prices} | set(book.currencies)) - {ANY})


_LOOKUPS = (("customer_id", "dimension"), ("customer_id", None), (None, "dimension"), (None, None))


PRICE_KEYS = ["customer_id", "meter", "dimension", "usage_start"]
LEVEL_METERS = [meter.value for meter in Meter if meter.aggregation.is_level]
"""A level's worth depends on the period's peak or last figure: its rows carry no amount of
their own, and the close prices the period's figure."""
NO_KEY = "\x00"
"""A price key no entry has: what a customer rated in another currency looks up instead of ``*``."""
LOOKUP_KEYS = ["price_customer", "meter", "dimension", "usage_start"]
"""A usage row's price key, with ``*`` for a customer who has no prices of its own."""


IDENTITY = pl.concat_str([pl.col("source"), pl.lit(IDENTITY_SEPARATOR), pl.col("event_id")])
"""A rated row's event identity, as ``pipeline.dedup.identity`` writes it."""


def rate_quantities(quantities: pl.LazyFrame, book: PriceBook) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rated rows, and the identities of events left unrated with the reason (no price in force).

    A fleet sampled at one instant repeats the same meter and time many times, so prices are
    looked up once per distinct key and then joined to the rows. The key names a customer only
    if the book has prices of its own for that customer: every other customer pays list prices,
    and is looked up as ``*``, which keeps the keys few however many customers a batch holds.
    Metering, price lookup and amounts are one query: each query costs polars about half a
    millisecond to set up.
    """
    has_own_prices = pl.col("customer_id").is_in(_customers_with_own_prices(book))
    keyed = quantities.with_columns(price_customer=pl.when(has_own_prices).then("customer_id").otherwise(pl.lit(ANY)))
    keys = keyed.select(LOOKUP_KEYS).unique().rename({"price_customer": "customer_id"})
    prices = _unit_prices(keys, book).rename({"customer_id": "price_customer"})
    priced = keyed.join(prices, on=LOOKUP_KEYS, how="left").with_columns(
        quantity=(pl.col("numerator").cast(MONEY) / pl.col("divisor").cast(pl.Decimal(38, 0))).cast(MONEY),
        amount=pl.when(pl.col("meter").is_in(LEVEL_METERS))
        .then(pl.lit(0, dtype=MONEY))
        .otherwise(
            (pl.col("numerator").cast(EXACT) * pl.col("unit_price") / pl.col("divisor").cast(pl.Decimal(38, 0))).cast(
                MONEY
            )
        ),
        base_quantity=pl.col("numerator").cast(MONEY),
        base_divisor=pl.col("divisor").cast(pl.UInt32),
        currency=currency_of(book),
    )
    rated = priced.select(list(RATED_SCHEMA)).collect(engine=ENGINE)
    if not rated["unit_price"].null_count():
        return rated, {}
    unpriced = rated.filter(pl.col("unit_price").is_null()).select(
        IDENTITY.alias("identity"), "meter", "dimension", "currency", "usage_start"
    )
    reasons = {event: _no_price(*unpriced_row) for event, *unpriced_row in unpriced.iter_rows()}
    return rated.filter(~IDENTITY.is_in(list(reasons))), reasons


def currency_of(book: PriceBook) -> pl.Expr:
    """Each row's currency: its customer's (``customer_id`` column)."""
    if not book.currencies:
        return pl.lit(book.currency)
    return pl.col("customer_id").replace_strict(book.currencies, default=book.currency, return_dtype=pl.String)


def _no_price(meter: str, dimension: str, currency: str, usage_start: datetime) -> str:
    return f"no price in {currency} in force for meter {meter} ({dimension or ANY}) at {usage_start}"


def _unit_prices(keys: pl.LazyFrame, book: PriceBook) -> pl.LazyFrame:
    """The unit price in force for each key: the most specific entry of the book wins."""
    book_frame = _book_frame(book).lazy()
    frame = keys.sort("usage_start")
    # a customer rated in another currency never takes the ``*`` key's prices (the catalog's)
    shared = pl.when(pl.col("customer_id").is_in(list(book.currencies))).then(pl.lit(NO_KEY)).otherwise(pl.lit(ANY))
    for step, (customer, dimension) in enumerate(_LOOKUPS):
        keyed = frame.with_columns(
            price_customer=pl.col(customer) if customer else shared,
            price_dimension=pl.col(dimension) if dimension else pl.lit(ANY),
        )
        frame = (
            keyed.join_asof(
                book_frame,
                left_on="usage_start",
                right_on="effective_from",
                by=["price_customer", "meter", "price_dimension"],
                strategy="backward",
                check_sortedness=False,
            )
            .rename({"unit_price": f"price_{step}"})
            .drop("price_customer", "price_dimension", "effective_from")
        )
    prices = pl.coalesce(*(f"price_{step}" for step in range(len(_LOOKUPS))))
    return frame.select(*PRICE_KEYS, unit_price=prices)
