"""The collector contract: what an agent asks of any source of usage."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from schemas.events import Event


class Collector(Protocol):
    """Observes resources and describes what they consumed over the last interval.

    ``collect`` returns CloudEvents ready to publish, with deterministic ids: collecting the
    same instant twice yields the same ids, so a re-send is recognised downstream.
    """

    def collect(self, at: datetime) -> dict[str, list[Event]]:
        """Samples covering the interval that ends at ``at`` (UTC), grouped by source.

        The source (a hypervisor, a service) is the Kafka key: one resource is always reported
        by one source, so its samples stay in one partition, in order.
        """
        ...

    def spooled(self) -> None:
        """The samples of the last ``collect`` are durably spooled; move any baseline on."""
        ...
