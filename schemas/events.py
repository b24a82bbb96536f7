"""Usage events: CloudEvents 1.0 JSON, one typed ``data`` per event type.

The structs below are the contract. msgspec decodes and checks a whole message against them in
one pass of C code, and the published JSON Schema files in ``schemas/events/`` are generated
from them (``python -m schemas.publish``), so the rules exist once. Unknown attributes and data
fields are ignored (a tolerant reader), so agents can be upgraded before the pipeline; a JSON
``null`` is never accepted in place of a value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from itertools import accumulate
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from meterline.exceptions import InvalidEvent
from schemas.identifiers import (
    IDENTIFIER_PATTERN,
    SOURCE_PATTERN,
    identifier_refusal,
    source_refusal,
    text_refusal,
    unit_refusal,
)

Event = dict[str, Any]
"""An event as plain JSON-ready data, the form collectors and services build."""

Name = Annotated[str, Meta(min_length=1, max_length=128)]
CustomerId = Annotated[str, Meta(min_length=1, max_length=64, extra_json_schema={"pattern": IDENTIFIER_PATTERN})]
"""A catalog identifier; the pattern is checked after decoding, once per distinct customer of a
message (``_check_texts``), as the disk tier is."""
Count = Annotated[int, Meta(ge=0)]
Interval = Annotated[int, Meta(ge=1, le=86_400, description="seconds of usage this sample covers")]
LONGEST_INTERVAL_S = 2_678_400
"""The longest interval any event may cover (an XaaS report of a 31-day month)."""
UtcTime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset; stored as UTC")]


class EventType(StrEnum):
    VM_SAMPLE = "vm.sample"
    VDC_ALLOCATION = "vdc.allocation"
    XAAS_USAGE = "xaas.usage"


class PowerState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    SUSPENDED = "suspended"


class AllocationModel(StrEnum):
    ALLOCATION_POOL = "allocation_pool"
    RESERVATION_POOL = "reservation_pool"
    PAY_AS_YOU_GO = "pay_as_you_go"

    @property
    def billed_figure(self) -> str:
        """What a vDC of this model is billed for: allocated, reserved or used capacity."""
        return {"allocation_pool": "allocated", "reservation_pool": "reserved", "pay_as_you_go": "used"}[self.value]


TIER_PATTERN = "^[a-z0-9_]{1,32}$"
_TIER = re.compile(TIER_PATTERN)


class Disk(Struct, frozen=True, gc=False):
    # The pattern is checked after decoding, once per distinct tier (see ``_check_tiers``):
    # msgspec runs it through Python's regex engine for every disk, nearly doubling the cost of
    # decoding a VM sample. The published JSON Schema still states it.
    tier: Annotated[str, Meta(min_length=1, max_length=32, extra_json_schema={"pattern": TIER_PATTERN})]
    size_gib: Annotated[int, Meta(ge=0, le=1_048_576)]
    device: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET


class VmSampleData(Struct, frozen=True, gc=False):
    """One VM over one interval. Gauges hold for the whole interval; counters (cpu_time_s,
    net_*_bytes) are the increase over the interval, so every sample can be rated alone."""

    customer_id: CustomerId
    resource_id: Name
    interval_s: Interval
    power_state: PowerState
    vcpu: Annotated[int, Meta(ge=0, le=4096)]
    ram_mb: Annotated[int, Meta(ge=0, le=67_108_864)]
    disks: Annotated[list[Disk], Meta(max_length=64)]
    cpu_time_s: Annotated[float, Meta(ge=0)]
    net_rx_bytes: Count
    net_tx_bytes: Count
    resource_name: Annotated[str, Meta(max_length=256)] | UnsetType = UNSET
    hypervisor: Annotated[str, Meta(max_length=256)] | UnsetType = UNSET


class VdcAmounts(Struct, frozen=True, gc=False):
    allocated: Count
    reserved: Count
    used: Count


class VdcAllocationData(Struct, frozen=True, gc=False):
    """A virtual datacenter over one interval; its allocation model says which figure is billed."""

    customer_id: CustomerId
    resource_id: Name
    interval_s: Interval
    allocation_model: AllocationModel
    cpu_mhz: VdcAmounts
    ram_mb: VdcAmounts
    storage_gib: VdcAmounts
    resource_name: Annotated[str, Meta(max_length=256)] | UnsetType = UNSET


class XaasUsageData(Struct, frozen=True, gc=False):
    """A quantity of an anything-as-a-service product; a decimal string, never a float."""

    customer_id: CustomerId
    resource_id: Name
    interval_s: Annotated[int, Meta(ge=1, le=LONGEST_INTERVAL_S)]
    sku: Annotated[str, Meta(pattern="^[a-z0-9_.-]{1,64}$")]
    quantity: Annotated[str, Meta(pattern="^[0-9]{1,18}(\\.[0-9]{1,9})?$")]
    unit: Annotated[str, Meta(min_length=1, max_length=32)]
    resource_name: Annotated[str, Meta(max_length=256)] | UnsetType = UNSET


class CloudEvent(Struct, frozen=True, gc=False, kw_only=True, tag_field="type"):
    """The envelope. ``id`` is deterministic (same sample, same id) so re-sends are recognised;
    ``time`` is when the sample was taken, the end of the ``interval_s`` it covers."""

    specversion: Literal["1.0"]
    id: Annotated[str, Meta(min_length=8, max_length=128)]
    source: Annotated[str, Meta(min_length=1, max_length=256, extra_json_schema={"pattern": SOURCE_PATTERN})]
    time: UtcTime
    datacontenttype: Literal["application/json"] | UnsetType = UNSET
    subject: Annotated[str, Meta(max_length=256)] | UnsetType = UNSET


class VmSample(CloudEvent, frozen=True, gc=False, kw_only=True, tag=EventType.VM_SAMPLE.value):
    data: VmSampleData


class VdcAllocation(CloudEvent, frozen=True, gc=False, kw_only=True, tag=EventType.VDC_ALLOCATION.value):
    data: VdcAllocationData


class XaasUsage(CloudEvent, frozen=True, gc=False, kw_only=True, tag=EventType.XAAS_USAGE.value):
    data: XaasUsageData


UsageEvent = VmSample | VdcAllocation | XaasUsage
EVENT_STRUCTS: dict[EventType, type[UsageEvent]] = {
    EventType.VM_SAMPLE: VmSample,
    EventType.VDC_ALLOCATION: VdcAllocation,
    EventType.XAAS_USAGE: XaasUsage,
}

TOO_DEEP = "payload nests JSON deeper than any event does"
_OPENING = re.compile(rb"\s*\[\s*")
_BETWEEN = re.compile(rb"\s*,\s*")
"""Only these lie before and between the elements of an array: an element may itself start
with a bracket (a nested array is no event, but it must be refused, at its own bytes)."""
_batch = msgspec.json.Decoder(list[UsageEvent])
_single = msgspec.json.Decoder(UsageEvent)
_raw_batch = msgspec.json.Decoder(list[msgspec.Raw])
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode_events(payload: bytes) -> list[UsageEvent]:
    """Every event of a message (a JSON array, or one object); raises on the first bad one."""
    try:
        events: list[UsageEvent] = _batch.decode(payload) if payload.lstrip()[:1] == b"[" else [_single.decode(payload)]
        tiers = {disk.tier for event in events if isinstance(event, VmSample) for disk in event.data.disks}
        if not all(_TIER.fullmatch(tier) for tier in tiers):
            raise InvalidEvent("a disk tier does not match its pattern")
        if any(_repeated_device(event) for event in events):
            raise InvalidEvent("a disk is listed twice")
        if any(_text_refusals(events)):
            raise InvalidEvent("a field does not hold what its contract allows")
        return events
    except msgspec.ValidationError as error:
        raise InvalidEvent(_reason(error)) from None
    except msgspec.DecodeError as error:
        raise InvalidEvent(f"payload is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidEvent(TOO_DEEP) from None
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"payload is not UTF-8, as JSON must be: {error.reason}") from None


def decode_event(raw: bytes | msgspec.Raw) -> UsageEvent:
    """One event, or InvalidEvent naming the offending field and carrying the event's id."""
    try:
        event: UsageEvent = _single.decode(raw)
    except msgspec.ValidationError as error:
        raise InvalidEvent(_reason(error), _id_of(raw)) from None
    except msgspec.DecodeError as error:
        raise InvalidEvent(f"payload is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidEvent(TOO_DEEP) from None
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"payload is not UTF-8, as JSON must be: {error.reason}") from None
    _check_tiers(event)
    for reason in _text_refusals([event]):
        raise InvalidEvent(reason, event.id)
    return event


def _check_tiers(event: UsageEvent) -> None:
    """The disk tier pattern, reported the way msgspec reports the other constraints, and each
    disk's device named once (a disk listed twice would be billed twice)."""
    if isinstance(event, VmSample):
        for index, disk in enumerate(event.data.disks):
            if not _TIER.fullmatch(disk.tier):
                reason = f"data.disks[{index}].tier: Expected `str` matching regex {TIER_PATTERN!r}"
                raise InvalidEvent(reason, event.id)
        repeated = _repeated_device(event)
        if repeated is not None:
            raise InvalidEvent(f"data.disks: device {repeated!r} is listed more than once", event.id)


def _repeated_device(event: UsageEvent) -> str | None:
    """A device that more than one of a VM sample's disks name."""
    if not isinstance(event, VmSample) or len(event.data.disks) < 2:
        return None
    seen: set[str] = set()
    for disk in event.data.disks:
        if isinstance(disk.device, str):
            if disk.device in seen:
                return disk.device
            seen.add(disk.device)
    return None


def _text_refusals(events: list[UsageEvent]) -> Iterable[str]:
    """Why a source, customer or free-text field of ``events`` is refused: each distinct value is
    checked once (a poll cycle repeats its sources and customers thousands of times)."""
    checks = (
        ("id", partial(text_refusal, trimmed=True), {event.id for event in events}),
        ("source", source_refusal, {event.source for event in events}),
        ("data.customer_id", identifier_refusal, {event.data.customer_id for event in events}),
        ("data.resource_id", partial(text_refusal, trimmed=True), {event.data.resource_id for event in events}),
        ("data.unit", unit_refusal, {e.data.unit for e in events if isinstance(e, XaasUsage)}),
        ("data", text_refusal, {text for event in events for text in _free_text(event)}),
    )
    for field, refusal, values in checks:
        for value in values:
            reason = refusal(value)
            if reason is not None:
                yield f"{field}: {reason}"


def _free_text(event: UsageEvent) -> list[str]:
    """The names an event carries for display: shown on invoices, CSV and pages."""
    data = event.data
    texts = [event.subject] if isinstance(event.subject, str) else []
    if isinstance(data.resource_name, str):
        texts.append(data.resource_name)
    if isinstance(data, VmSampleData):
        if isinstance(data.hypervisor, str):
            texts.append(data.hypervisor)
        texts.extend(disk.device for disk in data.disks if isinstance(disk.device, str))
    return texts


def split_raw(payload: bytes) -> list[msgspec.Raw]:
    """The events of a message as undecoded JSON, to check them one by one. JSON is UTF-8 (RFC
    8259): a message that is not is refused whole, before any of its strings is decoded."""
    try:
        payload.decode()
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"payload is not UTF-8, as JSON must be: {error.reason} at byte {error.start}") from None
    try:
        if payload.lstrip()[:1] == b"[":
            return _raw_batch.decode(payload)
        _any.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidEvent(f"payload is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidEvent(TOO_DEEP) from None
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"payload is not UTF-8, as JSON must be: {error.reason}") from None
    return [msgspec.Raw(payload)]


def event_spans(payload: bytes) -> list[tuple[int, int]]:
    """Where each event of a message lies in its bytes, as (offset, length), in order.

    Only the array's opening bracket, then commas, and white space lie before and between
    events, so an event starts right after them: its bytes can later be cut out of the stored
    message exactly. A compact array (as encoders write it) is measured without
    looking at its bytes again.
    """
    raws = split_raw(payload)
    if payload.lstrip()[:1] != b"[":
        return [(0, len(payload))]
    lengths = [len(raw) for raw in raws]
    if len(payload) == sum(lengths) + len(lengths) + 1:  # "[", the events, a comma between each two, "]"
        return list(zip(accumulate((length + 1 for length in lengths[:-1]), initial=1), lengths, strict=True))
    spans: list[tuple[int, int]] = []
    end = _OPENING.match(payload).end()  # type: ignore[union-attr]  # the array starts so: split_raw read it
    for raw in raws:
        offset = end if not spans else _BETWEEN.match(payload, end).end()  # type: ignore[union-attr]
        spans.append((offset, len(raw)))
        end = offset + len(raw)
    return spans


def as_json_value(raw: bytes | msgspec.Raw) -> Any:
    """An event as generic JSON data, for a dead-letter record."""
    return _any.decode(raw)


def _id_of(raw: bytes | msgspec.Raw) -> str | None:
    value = _any.decode(raw)
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, str) else None


def _reason(error: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.data.vcpu`" as "data.vcpu: Expected `int`, got `str`"."""
    message, _, where = str(error).rpartition(" - at `")
    if not message:
        return str(error)
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    return f"{path}: {message}" if path else message


def event_id(event_type: EventType, source: str, resource_id: str, time: datetime) -> str:
    """The deterministic id of a sample: the same observation always gets the same id."""
    key = f"{event_type.value}|{source}|{resource_id}|{format_time(time)}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def format_time(time: datetime) -> str:
    """RFC 3339 UTC with a ``Z``."""
    if time.tzinfo is None:
        raise ValueError("event times must be timezone-aware UTC")
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_batch(events: list[Event]) -> bytes:
    """The CloudEvents JSON batch format (``application/cloudevents-batch+json``)."""
    return _encoder.encode(events)


def batch_of(raw_events: Iterable[bytes]) -> bytes:
    """A JSON batch made of events that are already JSON, without re-encoding them."""
    return b"[" + b",".join(raw_events) + b"]"
