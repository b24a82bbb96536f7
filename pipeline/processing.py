"""Messages through the stage: validate, dedupe, meter, rate. Pure: it reads the id window, and
the caller remembers the stored ids once it has sent them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from billing.pricing import PriceBook
from pipeline.dedup import RecentEvents, Seen
from pipeline.metering import EventColumns, event_columns, measure, row_columns
from pipeline.rating import ENGINE, currency_of, rate_quantities
from schemas import columnar
from schemas.events import UsageEvent, XaasUsage, as_json_value
from schemas.identity import IDENTITY_SEPARATOR, ROW_IDENTITY, Identity, identity
from schemas.intake import Acceptance, Rejection, ValidEvents, row_rejection, split_group, split_row_group
from schemas.receipts import Handled
from schemas.records import RATED_LISTS, RATED_SCHEMA, USAGE_EVENT_SCHEMA, message_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    """``events`` are the usage events to store (one row each, first copies only), ``rated``
    the same usage one row per event and meter; ``identities`` the content digests of the
    stored ones, for the window to remember once they are sent."""

    events: pl.DataFrame
    rated: pl.DataFrame
    rejected: list[Rejection]
    duplicates: int
    identities: dict[Identity, int]


def process_batch(
    payloads: list[bytes], recent: RecentEvents, book: PriceBook, acceptance: Acceptance | None = None
) -> BatchOutcome:
    """Handle several messages as one frame: per-frame costs are paid once, not per message.

    Columnar messages (``schemas.columnar``) and JSON ones are handled apart, each as one frame.
    A repeated event is left out rather than stored again: a second copy's row would replace
    the first one in storage, so it must never differ from it. A conflicting one is refused.
    """
    streams = [payload for payload in payloads if columnar.is_columnar(payload)]
    if not streams:
        return _process_json(payloads, recent, book, acceptance)
    texts = [payload for payload in payloads if not columnar.is_columnar(payload)]
    rows = _process_rows(streams, recent, book, acceptance)
    return _combined(rows, _process_json(texts, recent, book, acceptance)) if texts else rows


def _combined(first: BatchOutcome, second: BatchOutcome) -> BatchOutcome:
    return BatchOutcome(
        events=pl.concat([first.events, second.events], how="vertical_relaxed"),
        rated=pl.concat([first.rated, second.rated], how="vertical_relaxed"),
        rejected=first.rejected + second.rejected,
        duplicates=first.duplicates + second.duplicates,
        identities=first.identities | second.identities,
    )


def _process_rows(
    payloads: list[bytes], recent: RecentEvents, book: PriceBook, acceptance: Acceptance | None
) -> BatchOutcome:
    """``process_batch`` for columnar messages: the rows are checked, metered and rated as
    frames; only their identities and digests are sorted one by one, against the window."""
    group = split_row_group(payloads, acceptance)
    keys, digests = columnar.identities(group.frame), columnar.digests(group.frame)
    seen, new_digests = recent.sort_keys(keys, digests)
    conflicting = pl.Series([verdict is Seen.CONFLICT for verdict in seen], dtype=pl.Boolean)
    conflicts = _row_rejections(group.frame.filter(conflicting), _conflict_reason)
    fresh_rows = pl.Series([verdict is Seen.NEW for verdict in seen], dtype=pl.Boolean)
    fresh = group.frame.filter(fresh_rows).with_columns(
        digest=pl.Series([d for d, v in zip(digests, seen, strict=True) if v is Seen.NEW], dtype=pl.UInt64)
    )
    try:
        events, rated, unpriced = _rated(row_columns(fresh), book)
    except Exception as error:  # not swallowed: the rows go to the dead-letter topic with it
        reason = f"the stage could not rate this event: {type(error).__name__}: {error}"
        return BatchOutcome(
            events=pl.DataFrame(schema=USAGE_EVENT_SCHEMA),
            rated=pl.DataFrame(schema=RATED_SCHEMA),
            rejected=group.rejected + conflicts + _row_rejections(fresh, lambda _row: reason),
            duplicates=seen.count(Seen.REPEAT),
            identities={},
        )
    refused = (
        []
        if not unpriced
        else _row_rejections(
            fresh.filter(ROW_IDENTITY.is_in(list(unpriced))),
            lambda row: unpriced[f"{row['source']}{IDENTITY_SEPARATOR}{row['id']}"],
        )
    )
    return BatchOutcome(
        events=events,
        rated=rated,
        rejected=group.rejected + conflicts + refused,
        duplicates=seen.count(Seen.REPEAT),
        identities={key: digest for key, digest in new_digests.items() if key not in unpriced},
    )


def _row_rejections(rows: pl.DataFrame, reason: Callable[[dict[str, Any]], str]) -> list[Rejection]:
    return [row_rejection(row, reason(row)) for row in rows.iter_rows(named=True)]


def _conflict_reason(row: dict[str, Any]) -> str:
    return (
        f"conflict: an event with source {row['source']!r} and id {row['id']!r} but other content was received "
        "before; an event's (source, id) must name one usage"
    )


def _process_json(
    payloads: list[bytes], recent: RecentEvents, book: PriceBook, acceptance: Acceptance | None
) -> BatchOutcome:
    group = split_group(payloads, acceptance)
    seen, digests = recent.sort(group.events)
    conflicts = _rejections(
        group,
        {
            identity(event): _conflict_reason({"source": event.source, "id": event.id})
            for event, verdict in zip(group.events, seen, strict=True)
            if verdict is Seen.CONFLICT
        },
        only=[verdict is Seen.CONFLICT for verdict in seen],
    )
    misunits = _unit_refusals(group.events, book)
    new = [
        verdict is Seen.NEW and identity(event) not in misunits
        for event, verdict in zip(group.events, seen, strict=True)
    ]
    fresh = group.select(new)
    fresh.digests = [digests[identity(event)] for event in fresh.events]
    events, rated, refused = _rate_isolating(fresh, book)
    wrong_unit = _rejections(group, misunits, only=[verdict is Seen.NEW for verdict in seen]) if misunits else []
    return BatchOutcome(
        events=events,
        rated=rated,
        rejected=group.rejected + conflicts + wrong_unit + refused,
        duplicates=sum(verdict is Seen.REPEAT for verdict in seen),
        identities=_stored_identities(group.events, seen, digests, set(events.select(ROW_IDENTITY).to_series())),
    )


def _unit_refusals(events: list[UsageEvent], book: PriceBook) -> dict[Identity, str]:
    """XaaS reports in another unit than their sku's declared one, with the reason."""
    units = book.xaas_units
    return {
        identity(event): f"data.unit: {event.data.unit!r} is not the unit of {event.data.sku}, "
        f"{units[event.data.sku]!r}: report its quantity in it"
        for event in events
        if isinstance(event, XaasUsage) and event.data.sku in units and event.data.unit != units[event.data.sku]
    }


def _stored_identities(
    events: list[UsageEvent], seen: list[Seen], digests: dict[Identity, int], stored: set[str]
) -> dict[Identity, int]:
    """The digests of the new events that are stored (not those refused at rating)."""
    if len(stored) == len(digests):
        return digests
    return {
        identity(event): digests[identity(event)]
        for event, verdict in zip(events, seen, strict=True)
        if verdict is Seen.NEW and identity(event) in stored
    }


def _rate_isolating(fresh: ValidEvents, book: PriceBook) -> tuple[pl.DataFrame, pl.DataFrame, list[Rejection]]:
    """``_rate``, and if it fails, each half on its own, down to the events that fail alone:
    those are refused with the error, and no other event of the batch is held back by them."""
    try:
        return _rate(fresh, book)
    except Exception as error:  # not swallowed: the events that cause it go to the dead-letter topic with it
        if len(fresh.events) <= 1:
            return _failed(fresh, error)
        log.warning("the stage failed on a batch of %d events (%s); isolating the cause", len(fresh.events), error)
        half = len(fresh.events) // 2
        parts = [
            _rate_isolating(fresh.select(position < half for position in range(len(fresh.events))), book),
            _rate_isolating(fresh.select(position >= half for position in range(len(fresh.events))), book),
        ]
        return (
            pl.concat([events for events, _, _ in parts], how="vertical_relaxed"),
            pl.concat([rated for _, rated, _ in parts], how="vertical_relaxed"),
            [rejection for _, _, rejections in parts for rejection in rejections],
        )


def _rate(fresh: ValidEvents, book: PriceBook) -> tuple[pl.DataFrame, pl.DataFrame, list[Rejection]]:
    """Meter and rate valid events: their stored rows, their rated rows, and those refused (no price)."""
    events, rated, unpriced = _rated(event_columns(fresh), book)
    return events, rated, _rejections(fresh, unpriced) if unpriced else []


def _rated(columns: EventColumns, book: PriceBook) -> tuple[pl.DataFrame, pl.DataFrame, dict[Identity, str]]:
    """Meter and rate events' columns, either encoding's: their stored rows, their rated rows,
    and the identities of those nobody can price, with the reason."""
    rated, unpriced = rate_quantities(measure(columns, book.xaas_meters), book)
    accepted = columns.accepted
    if unpriced:
        accepted = accepted.filter(~ROW_IDENTITY.is_in(list(unpriced)))
    return usage_events(accepted, rated.lazy(), book).collect(engine=ENGINE), rated, unpriced


def _failed(events: ValidEvents, error: Exception) -> tuple[pl.DataFrame, pl.DataFrame, list[Rejection]]:
    reason = f"the stage could not rate this event: {type(error).__name__}: {error}"
    return (
        pl.DataFrame(schema=USAGE_EVENT_SCHEMA),
        pl.DataFrame(schema=RATED_SCHEMA),
        _rejections(events, {identity(event): reason for event in events.events}),
    )


def usage_events(accepted: pl.LazyFrame, rated: pl.LazyFrame, book: PriceBook) -> pl.LazyFrame:
    """One row per accepted event with its rated usage as lists (empty when nothing was billable)."""
    lists = [f"rated.{field}" for field in RATED_LISTS]
    grouped = rated.group_by("source", "event_id").agg(
        pl.col(field).alias(name) for field, name in zip(RATED_LISTS, lists, strict=True)
    )
    none_billed = [pl.col(name).fill_null(pl.lit([], dtype=USAGE_EVENT_SCHEMA[name])) for name in lists]
    return (
        accepted.join(grouped, left_on=["source", "id"], right_on=["source", "event_id"], how="left")
        .with_columns(*none_billed, currency=currency_of(book))
        .select(list(USAGE_EVENT_SCHEMA))
    )


def _rejections(events: ValidEvents, reasons: dict[Identity, str], only: list[bool] | None = None) -> list[Rejection]:
    """The events refused after validation (a conflict, nobody can price them, or they broke
    the stage), with the reason, as they came; ``reasons`` is keyed by identity, and ``only``
    picks some of the events of an identity."""
    return [
        Rejection(index, event.id, reasons[identity(event)], as_json_value(events.raw(index)))
        for index, event in enumerate(events.events)
        if identity(event) in reasons and (only is None or only[index])
    ]


@dataclass(frozen=True)
class RatedPart:
    """What a group sends to one partition of the rated topic: the new events of the messages it
    read from the events partition of that number, and those messages' numbers."""

    partition: int
    events: pl.DataFrame
    handled: list[Handled]


def rated_parts(
    partitions: list[int], numbers: list[tuple[str, int] | None], payloads: list[bytes], events: pl.DataFrame
) -> list[RatedPart]:
    """A group's output (``events``, from ``payloads``) cut by the partition each message was
    read from, each numbered message with how many new events it brought and their span.

    Sent to the rated partition of the same number, a partition's messages reach storage in the
    order they were read, so a producer's batch stored after a later one of its partition was
    lost by the broker, not overtaken in a backlog (``agents.publisher``). Messages are matched
    to their events by content (``message_id``); a message read twice belongs to its first
    partition, and its events are sent once."""
    ids = [message_id(payload) for payload in payloads]
    owner: dict[str, int] = {}
    for id_, partition in zip(ids, partitions, strict=True):
        owner.setdefault(id_, partition)
    spans = {
        row["message_id"]: row
        for row in events.group_by("message_id")
        .agg(pl.len().alias("events"), pl.col("usage_start").min(), pl.col("usage_end").max())
        .iter_rows(named=True)
    }
    parts = []
    for partition in dict.fromkeys(partitions):
        mine = [id_ for id_, owned_by in owner.items() if owned_by == partition]
        own_events = events if len(owner) == len(mine) else events.filter(pl.col("message_id").is_in(mine))
        handled = [
            _handled(number, spans.get(id_))
            for number, id_, read_from in zip(numbers, ids, partitions, strict=True)
            if number is not None and read_from == partition
        ]
        parts.append(RatedPart(partition, own_events, handled))
    return parts


def _handled(number: tuple[str, int], span: dict[str, Any] | None) -> Handled:
    if span is None:
        return Handled(*number, events=0)
    return Handled(*number, span["events"], span["usage_start"], span["usage_end"])
