"""The API process. Beside embedded chDB (one process per data dir) it also hosts the sink, in a
thread that is made anew if it fails (``sinks.runner``); beside a server the sink may run on its
own (``python -m sinks.main``, ``METERLINE_SINK_IN_API=false``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from api import (
    routes_access,
    routes_alerts,
    routes_catalog,
    routes_completeness,
    routes_credit,
    routes_dashboards,
    routes_dead_letters,
    routes_events,
    routes_invoices,
    routes_ops,
    routes_payments,
    routes_usage,
)
from api.access.audit import AuditMiddleware
from api.access.guard import Authenticator
from api.access.key_store import REFRESH_S, KeyStore
from api.body_limit import BodyLimit
from api.catalog_admin import CatalogAdmin
from api.credit_accounts import CreditAccounts
from api.credit_watch import CreditWatch, watch_continuously
from api.delivery import Deliveries, deliver_when_due
from api.errors import GUARDED_RESPONSES, install_error_handlers
from api.event_intake import EventIntake
from api.partner_credit import PartnerCredit
from api.payments import Payments, charge_when_due, gateways_of
from api.period_scheduler import close_periods_when_due
from api.portal import routes as portal
from api.services import Services
from api.webhooks import Outbox, allowed_hosts, send_continuously
from billing.adapters.kafka_alerts import AlertTopics
from billing.adapters.kafka_catalog import CatalogPublisher
from meterline.settings import Settings
from sinks.runner import SinkRunner, sink_of
from storage.access_records import AccessRecords
from storage.alert_store import AlertStore
from storage.audit_log import AuditLog
from storage.billed_usage import PeriodUsage
from storage.catalog_store import CatalogStore
from storage.clock import StoredThrough
from storage.connection import ClientPool, connect
from storage.credit_store import CreditStore
from storage.dashboards import Dashboards
from storage.dead_letters import DeadLetters
from storage.deliveries import DeliveryRecords
from storage.ledger import Ledger
from storage.party_records import PartyRecords
from storage.payments import PaymentStore
from storage.stored_messages import Completeness
from storage.usage_queries import UsageQueries

log = logging.getLogger(__name__)
CATALOG_RETRY_S = 5.0


def create_app(settings: Settings, *, run_sink: bool | None = None) -> FastAPI:
    run_sink = settings.sink.in_api if run_sink is None else run_sink

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = _services(settings, run_sink)
        app.state.services = services
        if services.sink is not None:
            services.sink.start()
        current_catalog = lambda: services.catalog_admin.catalog  # noqa: E731 - read at each use
        passed = asyncio.Event()  # a credit pass ended: the outbox sends what it fired
        tasks = [
            asyncio.create_task(routes_completeness.count_sources_with_gaps(services.completeness)),
            asyncio.create_task(_refresh_keys(services.authenticator.keys)),
            asyncio.create_task(_publish_catalog_when_pending(services.catalog_admin)),
            asyncio.create_task(watch_continuously(services.credit_watch, settings.credit_settle_interval_s, passed)),
            asyncio.create_task(send_continuously(services.outbox, passed)),
        ]
        if settings.auto_close:
            closing = close_periods_when_due(
                services.ledger,
                services.period_usage,
                current_catalog,
                services.stored_through,
                settings.late_usage_months,
                timedelta(hours=settings.close_grace_h),
                settings.close_check_interval_s,
                services.completeness.gaps,
                services.credit.apply_to_invoices,
            )
            tasks.append(asyncio.create_task(closing))
        if settings.payments.gateways:
            charging = charge_when_due(services.payments, settings.payments.charge_check_interval_s)
            tasks.append(asyncio.create_task(charging))
        if services.deliveries is not None:
            delivering = deliver_when_due(
                services.deliveries, services.ledger, current_catalog, settings.delivery_check_interval_s
            )
            tasks.append(asyncio.create_task(delivering))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if services.sink is not None:
                services.sink.stop(within_s=30)
            services.intake.close()

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
        routes_alerts,
        routes_credit,
        routes_dashboards,
        routes_dead_letters,
        routes_invoices,
        routes_payments,
    ):
        app.include_router(guarded.router, responses=GUARDED_RESPONSES)
    app.include_router(routes_ops.router)
    app.include_router(portal.router)
    return app


def _services(settings: Settings, run_sink: bool) -> Services:
    """Every part the routes and loops use, each on a ClickHouse client of its own (the readers
    side by side on a pool)."""
    database = settings.clickhouse_database
    query_client = connect(settings)  # the first: it migrates the schema
    another_client = partial(connect, settings, migrate_schema=False)
    pool = ClientPool(another_client, settings.query_clients)
    ledger = Ledger(another_client(), database)
    catalog_store = CatalogStore(another_client(), database)
    catalog_admin = CatalogAdmin(
        catalog_store,
        CatalogPublisher(settings),
        settings.catalog,
        ledger.latest_issued_period,
        PartyRecords(another_client(), database).currencies_held,
    )
    dashboards = Dashboards(pool, database)
    credit_store = CreditStore(another_client(), database)
    credit = CreditAccounts(credit_store, settings.late_usage_months, CreditStore(another_client(), database))
    partner_credit = PartnerCredit(credit, credit_store, PeriodUsage(another_client(), database))
    alert_store = AlertStore(another_client(), database)
    public_url = settings.payments.public_url or f"http://{settings.api_host}:{settings.api_port}"
    hosts = allowed_hosts(settings.webhook_allowed_hosts)
    authenticator = Authenticator(settings, KeyStore(AccessRecords(another_client(), database)))
    tenant_of = lambda owner: catalog_admin.catalog.tenant_of(owner)  # noqa: E731 - the catalog of the moment
    outbox = Outbox(AlertStore(another_client(), database), AlertTopics(settings), hosts, tenant_of)
    payments = Payments(
        PaymentStore(another_client(), database),
        gateways_of(settings.payments),
        ledger,
        credit,
        AuditLog(another_client(), database),
        lambda: catalog_admin.catalog,
        public_url,
        authenticator.token_secret,
    )
    return Services(
        queries=UsageQueries(pool, database),
        dashboards=dashboards,
        catalog_store=catalog_store,
        catalog_admin=catalog_admin,
        ledger=ledger,
        intake=EventIntake(settings, lambda: catalog_admin.revision),
        period_usage=PeriodUsage(another_client(), database),
        completeness=Completeness(another_client(), database),
        dead_letters=DeadLetters(another_client(), database),
        authenticator=authenticator,
        audit_log=AuditLog(another_client(), database),
        deliveries=Deliveries(DeliveryRecords(another_client(), database), settings.smtp, payments.pay_link)
        if settings.smtp.host
        else None,
        stored_through=StoredThrough(another_client(), database),
        store_answers=query_client.ping,
        sink=SinkRunner(lambda: sink_of(settings)) if run_sink else None,
        late_after=timedelta(seconds=settings.late_after_s),
        late_usage_months=settings.late_usage_months,
        credit=credit,
        partner_credit=partner_credit,
        alert_store=alert_store,
        credit_watch=CreditWatch(
            credit, alert_store, dashboards, lambda: catalog_admin.catalog, partner_credit, outbox.hand_over
        ),
        outbox=outbox,
        webhook_hosts=hosts,
        payments=payments,
        public_url=public_url,
    )


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
