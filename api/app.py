"""The API process: owns ClickHouse (one process per chDB data dir), so it also runs the sink."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from api import (
    routes_access,
    routes_catalog,
    routes_completeness,
    routes_dashboards,
    routes_dead_letters,
    routes_events,
    routes_invoices,
    routes_ops,
    routes_usage,
)
from api.access.audit import AuditMiddleware
from api.access.guard import Authenticator
from api.access.key_store import REFRESH_S, KeyStore
from api.body_limit import BodyLimit
from api.catalog_admin import CatalogAdmin
from api.delivery import Deliveries, deliver_when_due
from api.errors import GUARDED_RESPONSES, install_error_handlers
from api.event_intake import EventIntake
from api.period_scheduler import close_periods_when_due
from billing.adapters.kafka_catalog import CatalogPublisher
from meterline.settings import Settings
from sinks.clickhouse import ClickHouseSink
from sinks.consumer import SinkConsumer
from storage.access_records import AccessRecords
from storage.audit_log import AuditLog
from storage.billed_usage import PeriodUsage
from storage.catalog_store import CatalogStore
from storage.clock import InsertClock
from storage.connection import ClientPool, connect
from storage.dashboards import Dashboards
from storage.dead_letters import DeadLetters
from storage.deliveries import DeliveryRecords
from storage.ledger import Ledger
from storage.received import ReceivedStore
from storage.stored_messages import Completeness
from storage.usage_queries import UsageQueries
from storage.usage_store import UsageStore

log = logging.getLogger(__name__)
CATALOG_RETRY_S = 5.0


def create_app(settings: Settings, *, run_sink: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.query_client = connect(settings)
        another_client = partial(connect, settings, migrate_schema=False)
        app.state.query_pool = ClientPool(another_client, settings.query_clients)
        app.state.queries = UsageQueries(app.state.query_pool, settings.clickhouse_database)
        app.state.dashboards = Dashboards(app.state.query_pool, settings.clickhouse_database)
        app.state.settings = settings
        app.state.catalog_store = CatalogStore(another_client(), settings.clickhouse_database)
        app.state.ledger = Ledger(another_client(), settings.clickhouse_database)
        app.state.catalog_admin = CatalogAdmin(
            app.state.catalog_store,
            CatalogPublisher(settings),
            settings.catalog,
            app.state.ledger.latest_issued_period,
        )
        app.state.intake = EventIntake(settings, lambda: app.state.catalog_admin.revision)
        app.state.period_usage = PeriodUsage(another_client(), settings.clickhouse_database)
        app.state.completeness = Completeness(another_client(), settings.clickhouse_database)
        app.state.dead_letters = DeadLetters(another_client(), settings.clickhouse_database)
        app.state.authenticator = Authenticator(
            settings, KeyStore(AccessRecords(another_client(), settings.clickhouse_database))
        )
        app.state.audit_log = AuditLog(another_client(), settings.clickhouse_database)
        app.state.late_after = timedelta(seconds=settings.late_after_s)
        database = settings.clickhouse_database
        app.state.deliveries = (
            Deliveries(DeliveryRecords(another_client(), database), settings) if settings.smtp_host else None
        )
        app.state.insert_clock = InsertClock()
        app.state.late_usage_months = settings.late_usage_months
        sink_client = another_client()  # the sink thread's own
        sink = ClickHouseSink(
            UsageStore(sink_client, settings.clickhouse_database, writer=settings.intake_name),
            ReceivedStore(sink_client, settings.clickhouse_database),
            settings,
            app.state.insert_clock,
        )
        consumer = SinkConsumer(settings, sink) if run_sink else None
        app.state.sink_consumer = consumer
        app.state.sink_thread = _start_sink(consumer) if consumer else None
        closer = (
            asyncio.create_task(
                close_periods_when_due(
                    app.state.ledger,
                    app.state.period_usage,
                    lambda: app.state.catalog_admin.catalog,
                    app.state.insert_clock,
                    settings.late_usage_months,
                    timedelta(hours=settings.close_grace_h),
                    settings.close_check_interval_s,
                    app.state.completeness.gaps,
                )
            )
            if settings.auto_close
            else None
        )
        courier = (
            asyncio.create_task(
                deliver_when_due(
                    app.state.deliveries,
                    app.state.ledger,
                    lambda: app.state.catalog_admin.catalog,
                    settings.delivery_check_interval_s,
                )
            )
            if app.state.deliveries
            else None
        )
        gap_counter = asyncio.create_task(routes_completeness.count_sources_with_gaps(app.state.completeness))
        key_refresher = asyncio.create_task(_refresh_keys(app.state.authenticator.keys))
        catalog_sender = asyncio.create_task(_publish_catalog_when_pending(app.state.catalog_admin))
        try:
            yield
        finally:
            for task in (closer, courier, gap_counter, key_refresher, catalog_sender):
                if task:
                    task.cancel()
            if consumer and app.state.sink_thread:
                consumer.stop()
                app.state.sink_thread.join(timeout=30)
            app.state.intake.close()

    # the documentation pages with their scripts from the package, not a CDN: they work offline
    app = FastAPIOffline(title="meterline", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(BodyLimit)  # added last, so outermost: nothing reads a body before it
    for guarded in (
        routes_access,
        routes_events,
        routes_usage,
        routes_catalog,
        routes_completeness,
        routes_dashboards,
        routes_dead_letters,
        routes_invoices,
    ):
        app.include_router(guarded.router, responses=GUARDED_RESPONSES)
    app.include_router(routes_ops.router)
    return app


async def _refresh_keys(keys: KeyStore) -> None:
    """Keys revoked or made through another API replica count here within ``REFRESH_S``."""
    while True:
        await asyncio.sleep(REFRESH_S)
        try:
            await run_in_threadpool(keys.refresh)
        except Exception as error:  # storage hiccup: keep the copy, try again
            log.warning("could not read the API keys again: %s", error)


async def _publish_catalog_when_pending(admin: CatalogAdmin) -> None:
    """A catalog the broker did not take (at start, or a change while it was away) is sent again."""
    while True:
        await asyncio.sleep(CATALOG_RETRY_S)
        try:
            await run_in_threadpool(admin.publish_pending)
        except Exception as error:  # storage or broker hiccup: try again
            log.warning("could not publish the catalog again: %s", error)


def _start_sink(consumer: SinkConsumer) -> threading.Thread:
    def run() -> None:
        try:
            consumer.run()
        except BaseException:
            log.exception("the sink stopped; exiting so that the supervisor restarts from committed offsets")
            os.kill(os.getpid(), signal.SIGTERM)
            raise

    thread = threading.Thread(target=run, name="clickhouse-sink", daemon=True)
    thread.start()
    return thread
