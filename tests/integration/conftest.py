"""Real brokers (Tansu and Apache Kafka) started once per session; a fresh System per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from meterline.brokers import ApacheKafkaBroker, Broker, TansuBroker
from storage.schema import migrate
from tests.factories import catalog_document
from tests.integration.gateways import STRIPE_MOCK, start_stripe_mock
from tests.integration.harness import System, free_port, system_with_catalog

BROKERS = ["tansu", "kafka"]


@pytest.fixture(scope="session", params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    home = tmp_path_factory.mktemp(request.param)
    if request.param == "tansu":
        instance: Broker = TansuBroker(free_port(), home / "broker.log")
    else:
        instance = ApacheKafkaBroker(free_port(pair=True), home / "broker.log", home / "kafka")
    try:
        instance.start()
    except Exception as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"the {request.param} broker could not start here: {error}")
    yield instance
    instance.stop()


@pytest.fixture
def system(broker: Broker, tmp_path) -> Iterator[System]:
    running = System(broker, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def billing(broker: Broker, tmp_path: Path) -> Iterator[System]:
    """A started System on the small test catalog (a direct customer, a partner and its customer)."""
    running = system_with_catalog(broker, tmp_path, catalog_document())
    yield running.start_all()
    running.stop_all()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    """The real ClickHouse engine (chDB) on a fresh data directory, migrated to database
    ``meterline``: storage code tested without a broker."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'clickhouse'}")
    migrate(client, "meterline")
    yield client
    client.close()  # one engine per process: let the next test open its own


@pytest.fixture(scope="session")
def stripe_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """stripe-mock's address (http://127.0.0.1:port), for the payment tests."""
    if not STRIPE_MOCK.exists():
        if os.environ.get("CI") == "true":
            raise FileNotFoundError(f"{STRIPE_MOCK}: `make stripe-mock` installs it")
        pytest.skip("stripe-mock is not installed here: make stripe-mock")
    process, url = start_stripe_mock(tmp_path_factory.mktemp("stripe-mock"))
    yield url
    process.terminate()
    process.wait(timeout=10)
