"""Webhook endpoints and the outbox that sends alerts to them and to Kafka.

Messages are signed the Standard Webhooks way (the ``standardwebhooks`` package): headers
``webhook-id`` (the message's id, the same on every retry), ``webhook-timestamp`` (the attempt's
Unix time) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per
secret in force: during a rotation the old secret signs too, until its overlap ends).

An endpoint URL is parsed, not pattern-matched: http or https, no credentials in it, and a host
that ``METERLINE_WEBHOOK_ALLOWED_HOSTS`` lists, so a tenant cannot make meterline call an
internal address; what is stored and called is rebuilt from the parsed parts.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook
from starlette.concurrency import run_in_threadpool

from billing.adapters.kafka_alerts import AlertTopics, TopicNotReached
from meterline.exceptions import InvalidQuery
from storage.alert_store import AlertStore, DeliveryRow, EndpointRow

log = logging.getLogger(__name__)
TOPIC_PREFIX = "topic:"
MAX_ATTEMPTS = 8
"""Then the delivery is dead (listed, and sent again only by hand)."""
TIMEOUT_S = 5.0
PENDING, RETRYING, DELIVERED, DEAD = "pending", "retrying", "delivered", "dead"


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 1, 2, 4 ... seconds, at most 5 minutes."""
    return timedelta(seconds=min(2 ** (attempts - 1), 300))


def allowed_hosts(setting: str) -> frozenset[str]:
    return frozenset(host.strip().lower() for host in setting.split(",") if host.strip())


def checked_url(url: str, allowed: frozenset[str]) -> str:
    """``url`` rebuilt from its parsed parts, or InvalidQuery saying why it may not be called."""
    if len(url) > 2000:
        raise InvalidQuery("a webhook URL is at most 2,000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidQuery(f"not a URL: {error}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http"):
        raise InvalidQuery("a webhook URL is http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidQuery("a webhook URL carries no credentials: the signature authenticates meterline")
    if not host or not _allowed(host, allowed):
        raise InvalidQuery(
            f"host {host or '(none)'!r} is not among the hosts webhooks may call (METERLINE_WEBHOOK_ALLOWED_HOSTS)"
        )
    if parts.fragment:
        raise InvalidQuery("a webhook URL has no fragment")
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}:{port}" if port else netloc, parts.path or "/", parts.query, ""))


def _allowed(host: str, allowed: frozenset[str]) -> bool:
    return host in allowed or any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(endpoint: EndpointRow, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    in_force = [
        s for s, until in zip(endpoint.secrets, endpoint.secrets_until, strict=True) if until is None or until > now
    ]
    signatures = " ".join(Webhook(secret).sign(message_id, now, body) for secret in in_force)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


class Outbox:
    """Sends due deliveries: to Kafka for ``topic:`` destinations, to endpoints over HTTP."""

    def __init__(self, store: AlertStore, topics: AlertTopics, allowed: frozenset[str]) -> None:
        self._store = store
        self._topics = topics
        self._allowed = allowed
        self._http = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)

    def send_due(self, now: datetime) -> int:
        due = self._store.due_deliveries(now)
        if not due:
            return 0
        endpoints = {endpoint.endpoint_id: endpoint for endpoint in self._store.endpoints()}
        outcomes = [self._attempt(delivery, endpoints.get(delivery.endpoint_id), now) for delivery in due]
        self._store.save(outcomes)
        return len(outcomes)

    def _attempt(self, delivery: DeliveryRow, endpoint: EndpointRow | None, now: datetime) -> DeliveryRow:
        body = delivery.body.encode()
        try:
            if delivery.endpoint_id.startswith(TOPIC_PREFIX):
                self._topics.publish(delivery.endpoint_id.removeprefix(TOPIC_PREFIX), delivery.customer_id, body)
            elif endpoint is None:
                return replace(delivery, status=DEAD, last_error="the endpoint was deleted", updated_at=now)
            else:
                url = checked_url(endpoint.url, self._allowed)  # the allowed hosts may have changed since
                answer = self._http.post(
                    url, content=body, headers=signed_headers(endpoint, delivery.message_id, body, now)
                )
                if not 200 <= answer.status_code < 300:
                    raise OSError(f"answered {answer.status_code}")
        except (OSError, httpx.HTTPError, TopicNotReached, InvalidQuery) as error:
            attempts = delivery.attempts + 1
            status = DEAD if attempts >= MAX_ATTEMPTS else RETRYING
            return replace(
                delivery,
                status=status,
                attempts=attempts,
                next_attempt_at=now + backoff(attempts),
                last_error=str(error)[:500] or type(error).__name__,
                updated_at=now,
            )
        return replace(delivery, status=DELIVERED, attempts=delivery.attempts + 1, last_error="", updated_at=now)


async def send_continuously(outbox: Outbox, interval_s: float = 0.25) -> None:
    while True:
        try:
            await run_in_threadpool(outbox.send_due, datetime.now(UTC))
        except Exception as error:  # storage hiccup: the rows are still due
            log.warning("could not send due alerts: %s", error)
        await asyncio.sleep(interval_s)
