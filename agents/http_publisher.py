"""Hand spooled messages to a meterline API with an ingest key, for agents outside Kafka's reach.

``POST /v1/events`` answers 202 once the API has fsynced the accepted events in its own spool,
which keeps them until they are stored: from then on they are the API's, and the agent forgets
the message. Events the API refuses are reported with their reason and logged (sending them
again would be refused again). A message stays in the agent's spool, in order, through a
connection failure, a 429 or 503 (the API's ``Retry-After`` is waited out) and a 401 or 403 (a
key revoked or too narrow: an operator must act, and nothing is lost meanwhile).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from agents.spool import Spool, SpooledBatch
from schemas import columnar

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/cloudevents-batch+json"
KEY_REFUSED_WAIT_S = 30.0
UNREACHABLE_WAIT_S = 2.0


class HttpPublisher:
    def __init__(
        self, api_url: str, ingest_key: str, spool: Spool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = httpx.Client(
            base_url=api_url,
            headers={"Authorization": f"Bearer {ingest_key}", "Content-Type": MEDIA_TYPE},
            timeout=30,
        )
        self._spool = spool
        self._clock = clock
        self._paused_until = float("-inf")

    def publish(self, key: str, payload: bytes) -> None:
        self._spool.append(key.encode(), payload)

    def publish_group(self, batches: list[tuple[str, bytes]]) -> None:
        """Durably spool several messages at once (one fsync); they are sent by ``pump``."""
        self._spool.append_group([(key.encode(), payload) for key, payload in batches])

    def pump(self, timeout_s: float = 0.0) -> None:
        """Send what is spooled, oldest first, until one cannot be handed over or ``timeout_s``
        has passed (at least one attempt is made when not paused)."""
        deadline = self._clock() + timeout_s
        for batch in self._spool.pending():
            if self._clock() < self._paused_until or not self._hand_over(batch):
                break
            if self._clock() >= deadline:
                break
        remaining = deadline - self._clock()
        if remaining > 0 and (len(self._spool) == 0 or self._clock() < self._paused_until):
            time.sleep(min(remaining, 0.1))

    def drain(self, timeout_s: float) -> int:
        """Pump until nothing is spooled or ``timeout_s`` has passed; returns what is left."""
        deadline = self._clock() + timeout_s
        while len(self._spool) and self._clock() < deadline:
            self.pump(min(1.0, deadline - self._clock()))
        return len(self._spool)

    @property
    def backlog(self) -> int:
        return len(self._spool)

    def close(self) -> None:
        self._client.close()

    def _hand_over(self, batch: SpooledBatch) -> bool:
        try:
            answer = self._client.post("/v1/events", content=batch.payload, headers=_content_type(batch.payload))
        except httpx.HTTPError as error:
            return self._pause(UNREACHABLE_WAIT_S, f"the API is unreachable ({error})")
        if answer.status_code in (202, 422):
            self._report_refused(answer, batch)
            self._spool.ack(batch.seq)
            return True
        if answer.status_code in (429, 503):
            return self._pause(float(answer.headers.get("retry-after", "5")), f"the API answered {answer.status_code}")
        if answer.status_code in (401, 403):
            return self._pause(KEY_REFUSED_WAIT_S, f"the API refused the ingest key: {_detail(answer)}")
        return self._pause(UNREACHABLE_WAIT_S, f"the API answered {answer.status_code}: {_detail(answer)}")

    def _pause(self, wait_s: float, why: str) -> bool:
        log.warning("%s; %d messages kept, trying again in %.0f s", why, len(self._spool), wait_s)
        self._paused_until = self._clock() + wait_s
        return False

    @staticmethod
    def _report_refused(answer: httpx.Response, batch: SpooledBatch) -> None:
        body = answer.json()
        for refused in body.get("rejected", []):
            log.warning("message %d: event %s refused: %s", batch.seq, refused.get("id"), refused.get("reason"))


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text))
    except ValueError:
        return answer.text[:200]


def _content_type(payload: bytes) -> dict[str, str]:
    return {"Content-Type": columnar.CONTENT_TYPE if columnar.is_columnar(payload) else MEDIA_TYPE}
