"""The Faust application: events topic -> process_batch -> rated and dead-letter topics.

Messages are taken in groups and handled as one frame (per-frame costs dominate otherwise).
Delivery is at least once (the embedded broker has no transactions): Faust flushes the producer
before it commits the input offsets, and a group processed again after a crash republishes the
same rows, which storage keeps once per event id. Each output names the numbered messages it
accounts for (``schemas/receipts.py``), so that producers can forget them once it is stored.
What a group read from an events partition goes to the rated partition of the same number, so
that a partition's messages are stored in the order they were read (``rated_parts``). Prices
come from the catalog topic and follow its changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping

import faust
from faust.types import TP

from billing.adapters.kafka_catalog import CatalogFeed
from billing.pricing import price_book
from meterline.settings import Settings
from meterline.stalls import CHECK_EVERY_S, GroupWatch, past_the_end
from pipeline import metrics
from pipeline.dedup import RecentEvents
from pipeline.processing import process_batch, rated_parts
from schemas import receipts
from schemas.intake import Acceptance
from schemas.records import USAGE_EVENT_SCHEMA, encode_frame

LAG_REFRESH_S = 2.0
CATALOG_WAIT_S = 10.0
"""How long usage waits for the catalog revision it was accepted under."""
EXIT_STALLED = 75
"""EX_TEMPFAIL: stopped to be started again."""
log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    topics = settings.topics
    app_id = f"{settings.consumer_group}-pipeline"
    app = faust.App(
        app_id,
        # Faust's default is a directory in the working directory; keep it with the other data
        datadir=str(settings.data_dir / f"{app_id}-faust"),
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_partitions=topics.partitions,
        broker_commit_interval=settings.pipeline.commit_interval_s,
        producer_acks=-1,
        # a worker killed without leaving holds its partitions this long: keep it short
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        web_enabled=False,
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    events = app.topic(topics.events, value_serializer="raw", key_serializer="raw")
    rated = app.topic(topics.rated, value_serializer="raw", key_serializer="raw")
    dead_letter = app.topic(topics.dead_letter, value_serializer="raw", key_serializer="raw")
    recent = RecentEvents()
    acceptance = Acceptance.of(settings)
    catalog = CatalogFeed(settings)
    prices = {"book": price_book(catalog.wait_for_catalog())}
    metrics.CATALOG_LOADED.set(1)

    def take_price_changes() -> None:
        if catalog.poll() and catalog.catalog is not None:
            prices["book"] = price_book(catalog.catalog)
            metrics.CATALOG_UPDATES.inc()

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust.App.timer is untyped
    async def follow_price_changes() -> None:
        take_price_changes()

    given_up = {"revision": 0}

    async def catch_up_with(wanted: int) -> None:
        """Usage the API accepted after a catalog change asks for that revision: wait for it
        (the change is on its way in the catalog topic), so that a new price or a new customer's
        plan is in force. A revision that does not come (the API could not publish it yet) is
        waited for once, then the catalog in hand rates."""
        deadline = asyncio.get_running_loop().time() + CATALOG_WAIT_S
        while catalog.revision < wanted and asyncio.get_running_loop().time() < deadline:
            take_price_changes()
            await asyncio.sleep(0.02)
        if catalog.revision < wanted:
            given_up["revision"] = wanted
            log.warning("rating with catalog revision %d: revision %d did not come", catalog.revision, wanted)

    @app.timer(interval=LAG_REFRESH_S)  # type: ignore[untyped-decorator]  # faust.App.timer is untyped
    async def report_lag() -> None:
        monitor = app.monitor
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == topics.events]
        metrics.CONSUMER_LAG.clear()
        for tp, unread in unread_messages(assigned, monitor.tp_end_offsets, monitor.tp_read_offsets).items():
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(unread)

    watch = GroupWatch(settings, app_id, [topics.events], "worker")

    @app.timer(interval=CHECK_EVERY_S)  # type: ignore[untyped-decorator]  # faust.App.timer is untyped
    async def notice_a_stall() -> None:
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == topics.events]
        lost = [
            tp for tp in assigned if past_the_end(await app.consumer.position(tp), None, app.consumer.highwater(tp))
        ]
        if lost:
            # reading past the end of a log the broker lost: as a member of the group (no other
            # client may commit for it), commit the new log's start, and start again from it
            await app.consumer._commit(dict.fromkeys(lost, 0))  # type: ignore[attr-defined]  # faust's own commit
            exit_stalled(f"reads past the end of {', '.join(f'{tp.topic}[{tp.partition}]' for tp in lost)}", watch)
        # reading the broker blocks: off the event loop
        stuck = await asyncio.get_running_loop().run_in_executor(None, watch.check)
        mine = {(tp.topic, tp.partition) for tp in assigned}
        if stuck and (not mine or stuck & mine):
            exit_stalled(f"made no progress with messages waiting on {watch.describe(stuck)}", watch)

    @app.agent(events)
    async def rate_usage(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # take_events, not take: the headers number each message (faust's StreamT does not declare it)
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.pipeline.batch_messages, within=settings.pipeline.batch_within_s
        )
        async for group in batches:
            wanted = max(receipts.catalog_revision(event.headers) for event in group)
            if wanted > max(catalog.revision, given_up["revision"]):
                await catch_up_with(wanted)
            payloads = [event.value for event in group]
            with metrics.BATCH_SECONDS.time():
                outcome = process_batch(payloads, recent, prices["book"], acceptance)
                numbers = [receipts.numbered(event.headers) for event in group]
                parts = rated_parts([event.message.partition for event in group], numbers, payloads, outcome.events)
            for rejection in outcome.rejected:
                await dead_letter.send(value=rejection.to_json())
            for part in parts:
                if part.events.height or part.handled:
                    # the sink stores the events and the numbers of their messages together, and
                    # only then tells the producers these are stored (refusals went to the
                    # dead-letter topic first, which the sink stores too)
                    await rated.send(
                        value=encode_frame(part.events, USAGE_EVENT_SCHEMA) if part.events.height else b"",
                        headers={receipts.HANDLED: receipts.encode(part.handled)},
                        partition=part.partition % topics.partitions,
                    )
            recent.remember(outcome.identities)
            metrics.EVENTS_IN.inc(outcome.events.height + outcome.duplicates + len(outcome.rejected))
            metrics.EVENTS_REJECTED.inc(len(outcome.rejected))
            metrics.EVENTS_DUPLICATE.inc(outcome.duplicates)
            metrics.RATED_ROWS.inc(outcome.rated.height)
            yield None

    return app


def exit_stalled(why: str, watch: GroupWatch) -> None:
    """Exit at once, to be started again by the supervisor (``make run``'s, or the cluster's): a
    Faust worker that lost its way after a broker restart does not find it back in place. What
    it had not committed is handled again by whoever takes its partitions, and stored once."""
    log.error("the worker %s; exiting to be restarted", why)
    watch.recovered()
    logging.shutdown()
    os._exit(EXIT_STALLED)


def unread_messages(
    assigned: Iterable[TP], end_offsets: Mapping[TP, int], read_offsets: Mapping[TP, int]
) -> dict[TP, int]:
    """Per assigned partition the worker has read from, the messages after the last one it read.

    Faust learns a partition's end offset (the next offset to be written) from each fetch.
    """
    return {
        tp: max(0, end_offsets[tp] - read_offsets[tp] - 1)
        for tp in assigned
        if tp in end_offsets and tp in read_offsets
    }
