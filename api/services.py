"""What the routes use, built once by the API's composition root (``api.app``) and read, typed,
through ``services_of``: no route reads the application's state itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from fastapi import Request

from api.catalog_admin import CatalogAdmin
from api.credit_accounts import CreditAccounts
from api.credit_watch import CreditWatch
from api.delivery import Deliveries
from api.event_intake import EventIntake
from api.partner_credit import PartnerCredit
from api.payments import Payments
from api.webhooks import Outbox
from sinks.runner import SinkRunner
from storage.alert_store import AlertStore
from storage.audit_log import AuditLog
from storage.billed_usage import PeriodUsage
from storage.catalog_store import CatalogStore
from storage.clock import StoredThrough
from storage.dashboards import Dashboards
from storage.dead_letters import DeadLetters
from storage.ledger import Ledger
from storage.stored_messages import Completeness
from storage.usage_queries import UsageQueries

if TYPE_CHECKING:  # the guard reads its authenticator from here
    from api.access.guard import Authenticator


@dataclass(frozen=True)
class Services:
    queries: UsageQueries
    dashboards: Dashboards
    catalog_store: CatalogStore
    catalog_admin: CatalogAdmin
    ledger: Ledger
    intake: EventIntake
    period_usage: PeriodUsage
    completeness: Completeness
    dead_letters: DeadLetters
    authenticator: Authenticator
    audit_log: AuditLog
    deliveries: Deliveries | None
    """None where email is not set up."""
    stored_through: StoredThrough
    store_answers: Callable[[], bool]
    sink: SinkRunner | None
    """None where the sink runs in a process of its own."""
    late_after: timedelta
    late_usage_months: int
    credit: CreditAccounts
    alert_store: AlertStore
    partner_credit: PartnerCredit
    credit_watch: CreditWatch
    outbox: Outbox
    webhook_hosts: frozenset[str]
    """Hosts webhook endpoints may name (``METERLINE_WEBHOOK_ALLOWED_HOSTS``)."""
    payments: Payments
    public_url: str
    """Where buyers reach this API (``METERLINE_PAYMENTS_PUBLIC_URL``): payment links and returns."""


def services_of(request: Request) -> Services:
    """The one place that reads the application's state."""
    return cast(Services, request.app.state.services)
