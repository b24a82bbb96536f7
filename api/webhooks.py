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
import contextlib
import logging
import secrets
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from standardwebhooks.webhooks import Webhook
from starlette.concurrency import run_in_threadpool
from yarl import URL

from api import metrics
from billing.adapters.kafka_alerts import AlertTopics
from meterline.exceptions import InvalidQuery
from storage.alert_store import AlertStore, DeliveryRow, EndpointRow

log = logging.getLogger(__name__)
TOPIC_PREFIX = "topic:"
MAX_ATTEMPTS = 8
"""Then the delivery is dead (listed, and sent again only by hand)."""
TIMEOUT_S = 5.0
SENDERS = 16
"""Posts to one endpoint under way at once (one queue of its messages, this many senders)."""
MAX_IN_FLIGHT = 1024
"""Posts under way at once, to every endpoint."""
TENANT_SENDERS = 64
"""Posts under way at once to one tenant's endpoints (a partner's and its customers'; the
provider's): one tenant's slow endpoints cannot take every sender from the others."""
RESCAN = timedelta(seconds=2)
"""How often the outbox table is read for due deliveries when no retry falls due sooner."""
PENDING, RETRYING, DELIVERED, DEAD = "pending", "retrying", "delivered", "dead"
DEFAULT_PORTS = {"https": 443, "http": 80}


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 1, 2, 4 ... seconds, at most 5 minutes."""
    return timedelta(seconds=min(2 ** (attempts - 1), 300))


def allowed_hosts(setting: str) -> frozenset[str]:
    return frozenset(host.strip().lower() for host in setting.split(",") if host.strip())


def checked_url(url: str, allowed: frozenset[str]) -> str:
    """``url`` rebuilt from its parsed parts, or InvalidQuery saying why it may not be called."""
    if len(url) > 2000:
        raise InvalidQuery("a webhook URL is at most 2,000 characters")
    if any(not 0x21 <= ord(char) <= 0x7E for char in url):
        raise InvalidQuery("a webhook URL is printable ASCII, without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidQuery(f"not a URL: {error}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in DEFAULT_PORTS:
        raise InvalidQuery("a webhook URL is http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidQuery("a webhook URL carries no credentials: the signature authenticates meterline")
    if port == 0:
        raise InvalidQuery("port 0 cannot be called")
    if not host or not _allowed(host, port or DEFAULT_PORTS[parts.scheme], parts.scheme, allowed):
        raise InvalidQuery(
            f"{host or '(no host)'}:{port or DEFAULT_PORTS[parts.scheme]} is not among the hosts and ports "
            "webhooks may call (METERLINE_WEBHOOK_ALLOWED_HOSTS)"
        )
    if parts.fragment:
        raise InvalidQuery("a webhook URL has no fragment")
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}:{port}" if port else netloc, parts.path or "/", parts.query, ""))


def _allowed(host: str, port: int, scheme: str, allowed: frozenset[str]) -> bool:
    """An entry is a host (``*.example.com``: its subdomains) with, optionally, ``:port`` or
    ``:*``; without a port only the scheme's own (80, 443) may be called."""
    for entry in allowed:
        name, entry_port = _host_and_port(entry)
        wanted = name == host or (name.startswith("*.") and host.endswith(name[1:]))
        if wanted and (
            entry_port == "*" or entry_port == str(port) or (not entry_port and port == DEFAULT_PORTS[scheme])
        ):
            return True
    return False


def _host_and_port(entry: str) -> tuple[str, str]:
    """An allowed-hosts entry's host and port ("" if none): ``host:port``, ``[v6]:port``, a bare
    IPv6 address."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.removeprefix(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secrets_in_force(endpoint: EndpointRow, now: datetime) -> list[tuple[str, datetime | None]]:
    """The endpoint's secrets that sign at ``now``, each with the end of its overlap (None: none)."""
    pairs = zip(endpoint.secrets, endpoint.secrets_until, strict=True)
    return [(secret, until) for secret, until in pairs if until is None or until > now]


def signed_headers(endpoint: EndpointRow, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    signatures = " ".join(Webhook(secret).sign(message_id, now, body) for secret, _ in secrets_in_force(endpoint, now))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


class Outbox:
    """Sends due deliveries: to Kafka for ``topic:`` destinations, to endpoints over HTTP.

    Endpoints are called from the event loop with aiohttp: a post costs a fifth of the CPU of
    a thread-pooled synchronous client, which matters when a thousand alerts fire at once. An
    endpoint's deliveries wait in a queue of its own, which at most ``SENDERS`` senders post one
    after another (``MAX_IN_FLIGHT`` posts under way in all), and nothing waits for them: each
    outcome is stored with a later round's. An endpoint that answers in five seconds delays only
    its own messages.

    What a credit pass queues it also hands over in memory (``hand_over``), so a fresh alert is
    sent without reading the outbox table; the table is read for what is due when a retry falls
    due, and every ``RESCAN`` for what a pass stored but could not hand over (it died between).
    """

    def __init__(
        self,
        store: AlertStore,
        topics: AlertTopics,
        allowed: frozenset[str],
        tenant_of: Callable[[str], str] = lambda owner: owner,
    ) -> None:
        """``tenant_of`` names the tenant of an endpoint's owner (a customer's partner, if it has one)."""
        self._store = store
        self._topics = topics
        self._allowed = allowed
        self._tenant_of = tenant_of
        self._tenant_senders: Counter[str] = Counter()
        self._handed: deque[DeliveryRow] = deque()
        """Rows a pass stored and handed over, from its thread: deque appends are atomic."""
        self._next_read = datetime.min.replace(tzinfo=UTC)
        """When the table is read again for what is due (a retry's time, or ``RESCAN``)."""
        self._sending: dict[str, str] = {}
        """The endpoint of each delivery queued or posted whose outcome is not stored yet: it is
        not read as due again."""
        self._waiting: dict[str, deque[tuple[DeliveryRow, EndpointRow | None]]] = defaultdict(deque)
        self._senders: Counter[str] = Counter()
        self._outcomes: list[DeliveryRow] = []
        self._posts: set[asyncio.Task[None]] = set()

    def hand_over(self, rows: list[DeliveryRow]) -> None:
        """Rows just stored in the outbox, to send without reading them back (any thread)."""
        self._handed.extend(rows)

    async def send_due(self, http: aiohttp.ClientSession, now: datetime) -> int:
        """Store the outcomes of the posts that ended, then send what was handed over and, when
        the table is to be read, every delivery due by ``now``: the topics' in one batch, waited
        for; the endpoints' to their queues. The number of outcomes stored."""
        stored = await self._store_outcomes(self._take_outcomes())
        due = [self._handed.popleft() for _ in range(len(self._handed))]
        if now >= self._next_read:
            self._next_read = now + RESCAN
            due += await run_in_threadpool(self._store.due_deliveries, now)
        due = list({d.delivery_id: d for d in due if d.delivery_id not in self._sending}.values())
        to_topics = [d for d in due if d.endpoint_id.startswith(TOPIC_PREFIX)]
        if to_topics:
            failed = await run_in_threadpool(
                self._topics.publish,
                [(d.endpoint_id.removeprefix(TOPIC_PREFIX), d.customer_id, d.body.encode()) for d in to_topics],
            )
            outcomes = [
                _failed(d, "the broker did not acknowledge it", now) if n in failed else _delivered(d, now)
                for n, d in enumerate(to_topics)
            ]
            stored += await self._store_outcomes(outcomes)
        to_endpoints = [d for d in due if not d.endpoint_id.startswith(TOPIC_PREFIX)]
        if to_endpoints:
            endpoints = {endpoint.endpoint_id: endpoint for endpoint in await run_in_threadpool(self._store.endpoints)}
            for delivery in to_endpoints:
                self._sending[delivery.delivery_id] = delivery.endpoint_id
                self._waiting[delivery.endpoint_id].append((delivery, endpoints.get(delivery.endpoint_id)))
        self._start_senders(http)
        return stored

    async def drain(self) -> int:
        """Wait for the posts queued and under way and store their outcomes (a test, a shutdown)."""
        while self._posts:
            await asyncio.gather(*self._posts)
        return await self._store_outcomes(self._take_outcomes())

    def _start_senders(self, http: aiohttp.ClientSession) -> None:
        for endpoint_id, waiting in self._waiting.items():
            if not waiting:
                continue
            endpoint = waiting[0][1]
            tenant = self._tenant_of(endpoint.owner_id) if endpoint else ""
            for _ in range(min(SENDERS, len(waiting)) - self._senders[endpoint_id]):
                if self._senders.total() >= MAX_IN_FLIGHT:
                    return  # the next round starts the rest
                if self._tenant_senders[tenant] >= TENANT_SENDERS:
                    break
                self._senders[endpoint_id] += 1
                self._tenant_senders[tenant] += 1
                sender = asyncio.create_task(self._send_queue(http, endpoint_id, tenant))
                self._posts.add(sender)
                sender.add_done_callback(self._posts.discard)

    async def _send_queue(self, http: aiohttp.ClientSession, endpoint_id: str, tenant: str) -> None:
        """One of an endpoint's senders: post its waiting deliveries, one after another."""
        waiting = self._waiting[endpoint_id]
        try:
            while waiting:
                delivery, endpoint = waiting.popleft()
                now = datetime.now(UTC)
                try:
                    outcome = await self._post(http, delivery, endpoint, now)
                except Exception as error:  # whatever it was, the delivery is tried again, not forgotten
                    log.warning("posting %s failed unexpectedly: %r", delivery.delivery_id, error)
                    outcome = _failed(delivery, f"{type(error).__name__}: {error}"[:500], now)
                self._outcomes.append(outcome)
        finally:
            self._senders[endpoint_id] -= 1
            self._tenant_senders[tenant] -= 1

    def _take_outcomes(self) -> list[DeliveryRow]:
        taken, self._outcomes = self._outcomes, []
        return taken

    async def _store_outcomes(self, outcomes: list[DeliveryRow]) -> int:
        if not outcomes:
            return 0
        try:
            await run_in_threadpool(self._store.save, outcomes)
        except Exception:
            # kept (and their deliveries not sent again) until a later round stores them
            self._outcomes = [o for o in outcomes if o.delivery_id in self._sending] + self._outcomes
            raise
        for outcome in outcomes:
            self._sending.pop(outcome.delivery_id, None)
            if outcome.status == RETRYING:
                self._next_read = min(self._next_read, outcome.next_attempt_at)
            destination = "topic" if outcome.endpoint_id.startswith(TOPIC_PREFIX) else "webhook"
            metrics.ALERT_DELIVERIES.labels(destination, outcome.status).inc()
        return len(outcomes)

    async def _post(
        self, http: aiohttp.ClientSession, delivery: DeliveryRow, endpoint: EndpointRow | None, now: datetime
    ) -> DeliveryRow:
        if endpoint is None:
            return replace(delivery, status=DEAD, last_error="the endpoint was deleted", updated_at=now)
        body = delivery.body.encode()
        try:
            url = checked_url(endpoint.url, self._allowed)  # the allowed hosts may have changed since
            headers = signed_headers(endpoint, delivery.message_id, body, now)
            # encoded: call exactly the URL rebuilt from its parsed parts, not a re-quoted one
            async with http.post(URL(url, encoded=True), data=body, headers=headers, allow_redirects=False) as answer:
                # the status is the answer: its body is never read (an endpoint could send gigabytes)
                if not 200 <= answer.status < 300:
                    return _failed(delivery, f"answered {answer.status}", now)
        except TimeoutError:
            return _failed(delivery, f"no answer within {TIMEOUT_S:.0f} s", now)
        except (aiohttp.ClientError, InvalidQuery) as error:
            return _failed(delivery, str(error)[:500] or type(error).__name__, now)
        return _delivered(delivery, now)


def _delivered(delivery: DeliveryRow, now: datetime) -> DeliveryRow:
    return replace(delivery, status=DELIVERED, attempts=delivery.attempts + 1, last_error="", updated_at=now)


def _failed(delivery: DeliveryRow, error: str, now: datetime) -> DeliveryRow:
    """Retried after ``backoff``, or dead after ``MAX_ATTEMPTS``."""
    attempts = delivery.attempts + 1
    return replace(
        delivery,
        status=DEAD if attempts >= MAX_ATTEMPTS else RETRYING,
        attempts=attempts,
        next_attempt_at=now + backoff(attempts),
        last_error=error,
        updated_at=now,
    )


async def send_continuously(outbox: Outbox, passed: asyncio.Event, interval_s: float = 0.25) -> None:
    """Send what is due whenever a credit pass has ``passed`` (it may have fired alerts), and
    every ``interval_s`` for the retries."""
    # no limit per host: endpoints of several tenants on one relay host are limited apart
    connections = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connections, timeout=timeout, trust_env=False) as http:
        while True:
            passed.clear()
            try:
                await outbox.send_due(http, datetime.now(UTC))
            except Exception as error:  # storage hiccup: the rows are still due
                log.warning("could not send due alerts: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(passed.wait(), interval_s)
