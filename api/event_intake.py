"""Accept pushed usage events: validate each, spool the valid ones durably, report per event.

An answer of 202 means the accepted events are on this process's disk (fsynced), and they stay
there until the sink has stored them (``agents/publisher.py``): a broker that is down, or that
restarts and forgets, loses nothing. While the broker is away the spool grows, up to
``intake_spool_max_bytes``; beyond that the intake refuses at once (503, Retry-After) instead
of accepting what it may not be able to keep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agents.publisher import SpooledPublisher
from agents.spool import Spool
from api import metrics
from meterline.exceptions import InvalidEvent, MeterlineError
from meterline.settings import Settings
from schemas import columnar, receipts
from schemas.events import UsageEvent, as_json_value, batch_of, event_spans
from schemas.identity import IDENTITY_SEPARATOR, Identity, content_digest, identity
from schemas.intake import Acceptance, Rejection, ValidEvents, check_rows, row_rejection, split_message
from schemas.records import message_id

POLL_S = 0.2
RETRY_AFTER_S = 5
EVENTS_PER_MESSAGE = 500
"""As the agents do: the worker handles messages in groups, so a message stays small."""
ROWS_PER_MESSAGE = 1000
"""The same for columnar messages, whose rows are some 220 bytes each."""
MayReport = Callable[[str, str], bool]
"""Whether the caller may report usage of this source and customer."""


class IntakeFull(MeterlineError):
    """The spool holds as much as it may while the broker is away; nothing of the batch was
    accepted."""

    retry_after_s = RETRY_AFTER_S


class EventIntake:
    def __init__(self, settings: Settings, catalog_revision: Callable[[], int]) -> None:
        """``catalog_revision``: the catalog's revision now; each batch carries it as it is sent,
        so that usage sent after a price change is rated with it (``pipeline.app``)."""
        spool = Spool(settings.spool_dir / f"intake-{settings.intake.name}")

        def revision_header() -> list[tuple[str, bytes]]:
            return [(receipts.CATALOG_REVISION, str(catalog_revision()).encode())]

        self._publisher = SpooledPublisher(settings, f"intake/{settings.intake.name}", spool, revision_header)
        self._acceptance = Acceptance.of(settings)
        self._max_spool_bytes = settings.intake.spool_max_bytes
        self._closed = threading.Event()
        # sends, re-sends and forgets what is stored; polled all the time, so that its log
        # lines (a broker outage's) are handed over as they come
        self._pump = threading.Thread(target=self._serve, name="intake-publisher", daemon=True)
        self._pump.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._publisher.pump(POLL_S)
            metrics.INTAKE_BACKLOG.set(self._publisher.backlog)

    def submit(self, body: bytes, may_report: MayReport) -> tuple[list[UsageEvent], list[Rejection]]:
        """Spool the valid events, a source's events in the same messages (so that one worker
        sees each identity), and report the refused ones. A repeat within the batch is accepted
        once; a conflict (same source and id, other content) is refused, and so is an event of a
        source or customer the caller may not report for (``may_report(source, customer_id)``)."""
        spans = event_spans(body)  # a body that is not a JSON event or array of them is refused whole
        if not spans:
            raise InvalidEvent("the batch is empty")
        checked = split_message(body, self._acceptance, spans)
        accepted, refused = _once_each(checked, may_report)
        rejected = sorted(checked.rejected + refused, key=lambda rejection: rejection.index)
        if accepted and self._publisher.backlog_bytes >= self._max_spool_bytes:
            raise IntakeFull(
                f"{self._publisher.backlog_bytes} bytes of accepted events wait for the broker; "
                f"retry in {RETRY_AFTER_S} s"
            )
        by_source: dict[str, list[bytes]] = {}
        for index in accepted:
            by_source.setdefault(checked.events[index].source, []).append(checked.raw(index))
        self._publisher.publish_group(
            [
                (source, batch_of(raw[start : start + EVENTS_PER_MESSAGE]))
                for source, raw in by_source.items()
                for start in range(0, len(raw), EVENTS_PER_MESSAGE)
            ]
        )
        metrics.PUSHED_ACCEPTED.inc(len(accepted))
        metrics.PUSHED_REJECTED.inc(len(rejected))
        return [checked.events[index] for index in accepted], rejected

    def submit_rows(self, body: bytes, may_report: MayReport) -> tuple[list[str], list[Rejection]]:
        """``submit`` for an Arrow stream of VM samples (``schemas.columnar``): the ids of the rows
        accepted, spooled as streams of a source's rows, and a rejection for each other row."""
        # a stream that cannot be read, or of another schema, is refused whole (InvalidEvent)
        checked = check_rows([columnar.read(body)], [message_id(body)], self._acceptance)
        if not checked.frame.height and not checked.rejected:
            raise InvalidEvent("the batch is empty")
        frame = checked.frame
        keys, digests = columnar.identities(frame), columnar.digests(frame)
        pairs = list(frame.select("source", "customer_id").iter_rows())
        allowed = {pair: may_report(*pair) for pair in set(pairs)}
        kept, refused = _first_of_each(keys, digests, [(pair, allowed[pair]) for pair in pairs])
        rejected = sorted(
            checked.rejected + [row_rejection(frame.row(index, named=True), reason) for (index, reason) in refused],
            key=lambda rejection: rejection.index,
        )
        accepted = frame[kept] if kept else frame.clear()
        if accepted.height and self._publisher.backlog_bytes >= self._max_spool_bytes:
            raise IntakeFull(
                f"{self._publisher.backlog_bytes} bytes of accepted events wait for the broker; "
                f"retry in {RETRY_AFTER_S} s"
            )
        schema = columnar.VM_SAMPLE_SCHEMA
        self._publisher.publish_group(
            [
                (source, columnar.write(rows.select(schema.names).to_arrow().cast(schema)))
                for (source,), of_source in accepted.group_by("source", maintain_order=True)
                for rows in of_source.iter_slices(ROWS_PER_MESSAGE)
            ]
        )
        metrics.PUSHED_ACCEPTED.inc(accepted.height)
        metrics.PUSHED_REJECTED.inc(len(rejected))
        return accepted["id"].to_list(), rejected

    def broker_reachable(self, timeout_s: float = 1.0) -> bool:
        return self._publisher.broker_reachable(timeout_s)

    def close(self) -> None:
        self._closed.set()
        self._pump.join(timeout=2 * POLL_S)
        self._publisher.close()


def _first_of_each(
    keys: list[Identity], digests: list[int], allowed: list[tuple[tuple[str, str], bool]]
) -> tuple[list[int], list[tuple[int, str]]]:
    """The rows to send (the first of each identity the caller may report), and why each other
    row is refused: a conflict, or a source and customer the caller may not report for
    (``allowed``: each row's source and customer, and whether the caller may report them)."""
    first: dict[Identity, int] = {}
    kept: list[int] = []
    refused: list[tuple[int, str]] = []
    for index, (key, digest, ((source, customer), may)) in enumerate(zip(keys, digests, allowed, strict=True)):
        event_id = key.partition(IDENTITY_SEPARATOR)[2]
        if not may:
            refused.append((index, _not_yours(source, customer)))
        elif (earlier := first.get(key)) is None:
            first[key] = digest
            kept.append(index)
        elif earlier != digest:
            refused.append((index, _batch_conflict(source, event_id)))
    return kept, refused


def _not_yours(source: str, customer: str) -> str:
    return f"this key may not report for source {source!r} and customer {customer!r}"


def _batch_conflict(source: str, event_id: str) -> str:
    return (
        f"conflict: an earlier event of this batch has source {source!r} and "
        f"id {event_id!r} but other content; an event's (source, id) must name one usage"
    )


def _once_each(checked: ValidEvents, may_report: MayReport) -> tuple[list[int], list[Rejection]]:
    """The indices of the valid events to send (the first of each identity the caller may
    report), and a rejection for each conflict and each event it may not report."""
    first: dict[Identity, int] = {}
    kept: list[int] = []
    refused: list[tuple[int, str]] = []
    for index, event in enumerate(checked.events):
        if not may_report(event.source, event.data.customer_id):
            refused.append((index, _not_yours(event.source, event.data.customer_id)))
            continue
        key = identity(event)
        earlier = first.get(key)
        if earlier is None:
            first[key] = index
            kept.append(index)
        elif content_digest(checked.events[earlier]) != content_digest(event):
            refused.append((index, _batch_conflict(event.source, event.id)))
    return kept, [
        Rejection(checked.positions[index], checked.events[index].id, reason, as_json_value(checked.raw(index)))
        for index, reason in refused
    ]
