"""How a producer learns that what it sent is stored: numbered messages and stored receipts.

Every message a meterline producer (an agent's spool, the API's intake) sends to the events
topic carries two headers: who sent it (``PRODUCER``) and its number in that producer's
sequence (``SEQ``, growing, never reused). The worker passes the numbers of the messages it
handled along with its output (``HANDLED``: one ``Handled`` each, with the usage it carried),
and the sink, once that output is written, records them and announces them on the stored
topic (one ``StoredReceipt`` per producer, keyed by it). A producer keeps each message until
its number comes back, so an acknowledgement from a broker that then loses its log (the
embedded one keeps topics in memory) loses nothing: the message is sent again, and storage
keeps each event once.

The stored numbers are also what completeness is measured on: a number missing between
stored ones is a message that was sent and never stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

import msgspec

PRODUCER = "meterline-producer"
SEQ = "meterline-seq"
HANDLED = "meterline-handled"
CATALOG_REVISION = "meterline-catalog-revision"
"""On an intake message: the catalog revision the API had when it sent it (a worker rates the
message with that revision or a later one)."""
"""On a rated message: the numbered messages its worker group handled (JSON list of Handled)."""


Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None
"""A Kafka message's headers, as the clients hand them over."""


class Handled(msgspec.Struct, frozen=True):
    """One numbered message the worker is done with: every event in it is in the same output,
    refused with a reason, or a repeat of one stored before. ``first_usage``/``last_usage``
    bound the usage of its new events (absent when it had none)."""

    producer: str
    seq: int
    events: int
    first_usage: datetime | None = None
    last_usage: datetime | None = None


class StoredReceipt(msgspec.Struct, frozen=True):
    """Numbers of one producer's messages that are now stored, as inclusive ranges."""

    producer: str
    ranges: list[tuple[int, int]]

    def numbers(self) -> Iterator[int]:
        for first, last in self.ranges:
            yield from range(first, last + 1)


def header(headers: Headers, name: str) -> bytes | None:
    """One header's value (the first of that name), or None."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in pairs:
        if key == name and value is not None:
            return value.encode() if isinstance(value, str) else value
    return None


def numbered(headers: Headers) -> tuple[str, int] | None:
    """The (producer, seq) a message's headers carry, or None for a message not numbered
    (one written to the topic by something other than a meterline producer)."""
    producer, seq = header(headers, PRODUCER), header(headers, SEQ)
    if producer is None or seq is None:
        return None
    try:
        return producer.decode(), int(seq)
    except (UnicodeDecodeError, ValueError):
        return None


def catalog_revision(headers: Headers) -> int:
    """The catalog revision a message asks to be rated with (0: any)."""
    value = header(headers, CATALOG_REVISION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def headers_of(producer: str, seq: int) -> list[tuple[str, str | bytes | None]]:
    return [(PRODUCER, producer.encode()), (SEQ, str(seq).encode())]


def ranges_of(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Numbers as sorted inclusive ranges: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    ranges: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return ranges


def receipts_of(handled: Iterable[Handled]) -> list[StoredReceipt]:
    """One receipt per producer for everything in ``handled``."""
    by_producer: dict[str, list[int]] = {}
    for message in handled:
        by_producer.setdefault(message.producer, []).append(message.seq)
    return [StoredReceipt(producer, ranges_of(numbers)) for producer, numbers in sorted(by_producer.items())]


encode = msgspec.json.encode
decode_handled = msgspec.json.Decoder(list[Handled]).decode
decode_receipt = msgspec.json.Decoder(StoredReceipt).decode
