"""What is accepted of a batch of usage events, decided once for the API's intake and the stream.

Split messages into the events that honour their contract and the ones that do not.

A message is decoded and checked in one pass against the typed contract; only when something
in it is wrong is it taken apart event by event, so that each bad event gets its own reason
and the good ones of the same message still count. A valid event is known by its message and
the byte range it occupies there: messages are stored as received, so each event's JSON is kept
byte for byte without being copied out of its message on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from meterline.exceptions import InvalidEvent
from meterline.late_usage import LATE_USAGE_MONTHS, earliest_accepted
from meterline.settings import Settings
from schemas import columnar
from schemas.events import (
    UsageEvent,
    VdcAllocationData,
    VmSampleData,
    as_json_value,
    decode_event,
    decode_events,
    event_spans,
)
from schemas.records import message_id


@dataclass(frozen=True)
class Rejection:
    """An event refused with its reason; it goes to the dead-letter topic as it came."""

    index: int
    event_id: str | None
    reason: str
    event: Any

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"index": self.index, "event_id": self.event_id, "reason": self.reason, "event": self.event},
            default=str,
        )


@dataclass
class ValidEvents:
    """Valid events with where each one lies in its message, and the rest refused.

    ``events[i]`` is the ``lengths[i]`` bytes at ``offsets[i]`` of message ``message_ids[i]``, its
    ``positions[i]``-th event; ``messages`` holds those messages by id. ``digests[i]`` is its
    content digest, once the stage has sorted new events from repeats (empty before).
    """

    events: list[UsageEvent] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    messages: dict[str, bytes] = field(default_factory=dict)
    digests: list[int] = field(default_factory=list)

    def add(self, other: ValidEvents) -> None:
        self.events += other.events
        self.message_ids += other.message_ids
        self.offsets += other.offsets
        self.lengths += other.lengths
        self.positions += other.positions
        self.rejected += other.rejected
        self.messages |= other.messages

    def keep(self, event: UsageEvent, ident: str, offset: int, length: int, position: int) -> None:
        self.events.append(event)
        self.message_ids.append(ident)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.positions.append(position)

    def select(self, keep: Iterable[bool]) -> ValidEvents:
        """The events where ``keep`` is true (their messages shared, rejections left behind)."""
        keep = list(keep)
        if all(keep):
            return ValidEvents(
                events=list(self.events),
                message_ids=list(self.message_ids),
                offsets=list(self.offsets),
                lengths=list(self.lengths),
                positions=list(self.positions),
                messages=self.messages,
                digests=list(self.digests),
            )
        kept = ValidEvents(messages=self.messages)
        origins = zip(self.events, self.message_ids, self.offsets, self.lengths, self.positions, strict=True)
        for chosen, origin in zip(keep, origins, strict=True):
            if chosen:
                kept.keep(*origin)
        if self.digests:
            kept.digests = [digest for chosen, digest in zip(keep, self.digests, strict=True) if chosen]
        return kept

    def raw(self, index: int) -> bytes:
        """The JSON of ``events[index]`` exactly as it came."""
        offset = self.offsets[index]
        return self.messages[self.message_ids[index]][offset : offset + self.lengths[index]]


@dataclass(frozen=True)
class Acceptance:
    """What an event may say and still be billed: times inside the billable window, and figures
    a sample can plausibly report. The contract's types bound the rest; these bounds are
    settings (``METERLINE_MAX_*``, ``METERLINE_CLOCK_SKEW_S``), and ``now`` is the caller's clock."""

    now: Callable[[], datetime]
    clock_skew: timedelta = timedelta(minutes=15)
    late_periods: int = LATE_USAGE_MONTHS
    """How many months before the current one may still receive usage (the late-usage look-back)."""
    max_sample_bytes: int = 10**15
    max_vdc_amount: int = 10**9
    max_xaas_quantity: Decimal = Decimal(10**12)

    @classmethod
    def of(cls, settings: Settings) -> Acceptance:
        """The configured bounds, against the wall clock."""
        return cls(
            now=lambda: datetime.now(UTC),
            clock_skew=timedelta(seconds=settings.clock_skew_s),
            late_periods=settings.late_usage_months,
            max_sample_bytes=settings.max_sample_bytes,
            max_vdc_amount=settings.max_vdc_amount,
            max_xaas_quantity=settings.max_xaas_quantity,
        )

    def window(self) -> tuple[datetime, datetime]:
        """[earliest, latest] event time accepted now."""
        now = self.now()
        return earliest_accepted(now, self.late_periods), now + self.clock_skew

    def refusal(self, event: UsageEvent, window: tuple[datetime, datetime]) -> str | None:
        """Why the event is refused, or None."""
        earliest, latest = window
        if event.time < earliest:
            return f"time: {event.time.isoformat()} is before {earliest:%Y-%m-%d}, the oldest month still billed"
        if event.time > latest:
            return f"time: {event.time.isoformat()} is later than now plus the clock-skew allowance"
        for path, value, most in self._figures(event):
            if value > most:
                return f"{path}: {value} is more than one sample can plausibly report ({most})"
        return None

    def _figures(self, event: UsageEvent) -> list[tuple[str, int | Decimal, int | Decimal]]:
        data = event.data
        if isinstance(data, VmSampleData):
            return [
                ("data.net_rx_bytes", data.net_rx_bytes, self.max_sample_bytes),
                ("data.net_tx_bytes", data.net_tx_bytes, self.max_sample_bytes),
            ]
        if isinstance(data, VdcAllocationData):
            return [
                (f"data.{resource}.{figure}", getattr(getattr(data, resource), figure), self.max_vdc_amount)
                for resource in ("cpu_mhz", "ram_mb", "storage_gib")
                for figure in ("allocated", "reserved", "used")
            ]
        return [("data.quantity", Decimal(data.quantity), self.max_xaas_quantity)]


def split_group(payloads: list[bytes], acceptance: Acceptance | None = None) -> ValidEvents:
    group = ValidEvents()
    for payload in payloads:
        group.add(split_message(payload, acceptance))
    return group


def split_message(
    payload: bytes, acceptance: Acceptance | None = None, spans: list[tuple[int, int]] | None = None
) -> ValidEvents:
    """The valid events of one message and a rejection for each other one; with ``acceptance``,
    an event it refuses is rejected too, with its reason. ``spans``: the message's
    ``event_spans``, when the caller has them already (the message is scanned once for them)."""
    if spans is None:
        try:
            spans = event_spans(payload)
        except InvalidEvent as error:
            return ValidEvents(rejected=[Rejection(0, None, error.reason, payload.decode("utf-8", "replace"))])
    ident = message_id(payload)
    result = ValidEvents(messages={ident: payload})
    try:
        events = decode_events(payload)
    except InvalidEvent:
        events = []
    if events:
        result.events, result.message_ids = events, [ident] * len(events)
        result.offsets, result.lengths = [offset for offset, _ in spans], [length for _, length in spans]
        result.positions = list(range(len(events)))
        return _accepted(result, acceptance)
    for position, (offset, length) in enumerate(spans):
        candidate = payload[offset : offset + length]
        try:
            result.keep(decode_event(candidate), ident, offset, length, position)
        except InvalidEvent as error:
            result.rejected.append(Rejection(position, error.event_id, error.reason, as_json_value(candidate)))
    return _accepted(result, acceptance)


def _accepted(result: ValidEvents, acceptance: Acceptance | None) -> ValidEvents:
    """``result`` less the events ``acceptance`` refuses, which join its rejections, in message order."""
    if acceptance is None or not result.events:
        return result
    window = acceptance.window()
    refusals = [acceptance.refusal(event, window) for event in result.events]
    if not any(refusals):
        return result
    kept = result.select(reason is None for reason in refusals)
    refused = [
        Rejection(position, event.id, reason, as_json_value(result.raw(index)))
        for index, (position, event, reason) in enumerate(zip(result.positions, result.events, refusals, strict=True))
        if reason is not None
    ]
    kept.rejected = sorted(result.rejected + refused, key=lambda rejection: rejection.index)
    return kept


@dataclass
class ValidRows:
    """The valid rows of columnar messages (``schemas.columnar``), each with its message's id
    and its row there (``offset``; ``length`` 0 tells a row from a JSON event's byte range),
    and a rejection for each other row, or for a message refused whole."""

    frame: pl.DataFrame
    rejected: list[Rejection] = field(default_factory=list)


def row_rejection(row: dict[str, Any], reason: str) -> Rejection:
    """A columnar row refused, at its row in its message, shown as the JSON event it stands for."""
    return Rejection(row["offset"], row["id"], reason, columnar.as_event(row))


def split_rows(payload: bytes, acceptance: Acceptance | None = None) -> ValidRows:
    """The valid rows of one columnar message and a rejection for each other row; a stream that
    cannot be read, or of another schema, is refused whole."""
    return split_row_group([payload], acceptance)


def split_row_group(payloads: list[bytes], acceptance: Acceptance | None = None) -> ValidRows:
    """``split_rows`` for several messages, checked as one frame: a check costs polars the same
    for a hundred rows as for tens of thousands."""
    tables, idents, rejected = [], [], []
    for payload in payloads:
        ident = message_id(payload)
        try:
            tables.append(columnar.read(payload))
        except InvalidEvent as error:
            rejected.append(_stream_rejection(error.reason, ident, len(payload)))
            continue
        except Exception as error:  # not swallowed: the message goes to the dead letters with it
            rejected.append(_stream_rejection(f"the stream could not be read: {_named(error)}", ident, len(payload)))
            continue
        idents.append(ident)
    try:
        checked = check_rows(tables, idents, acceptance)
    except Exception:  # a row no check foresaw: each message alone, so that only its own is refused
        frames = [check_rows([], []).frame]
        for table, ident in zip(tables, idents, strict=True):
            try:
                alone = check_rows([table], [ident], acceptance)
            except Exception as error:  # not swallowed: the message goes to the dead letters with it
                reason = f"the stage could not check this stream: {_named(error)}"
                rejected.append(_stream_rejection(reason, ident, table.nbytes))
                continue
            frames.append(alone.frame)
            rejected += alone.rejected
        return ValidRows(pl.concat(frames), rejected)
    return ValidRows(checked.frame, rejected + checked.rejected)


def _stream_rejection(reason: str, ident: str, size: int) -> Rejection:
    """A columnar message refused whole, described (its bytes are no JSON to show)."""
    return Rejection(0, None, reason, {"content_type": columnar.CONTENT_TYPE, "bytes": size, "message_id": ident})


def _named(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def check_rows(tables: list[pa.Table], idents: list[str], acceptance: Acceptance | None = None) -> ValidRows:
    """The valid rows of streams already read (``columnar.read``), of the messages ``idents``,
    and a rejection for each other row."""
    counts = [table.num_rows for table in tables]
    rows = pa.concat_tables(tables) if tables else columnar.VM_SAMPLE_SCHEMA.empty_table()
    frame = cast(pl.DataFrame, pl.from_arrow(rows)).with_columns(
        message_id=pl.Series(np.repeat(np.array(idents, dtype=object), counts), dtype=pl.String),
        offset=pl.Series(np.concatenate([np.arange(count) for count in counts]) if counts else [], dtype=pl.UInt32),
        length=pl.lit(0, dtype=pl.UInt32),
    )
    window = None
    if acceptance is not None:
        earliest, latest = acceptance.window()
        window = columnar.Window(earliest, latest, acceptance.max_sample_bytes)
    reasons = columnar.refusals(frame, window)
    if reasons.null_count() == len(reasons):
        return ValidRows(frame)
    refused = columnar.displayable(frame.filter(reasons.is_not_null()))
    rejected = [
        row_rejection(row, reason)
        for row, reason in zip(refused.iter_rows(named=True), reasons.drop_nulls(), strict=True)
    ]
    return ValidRows(frame.filter(reasons.is_null()), rejected)
