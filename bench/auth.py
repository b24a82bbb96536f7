"""What authentication adds to a request: the guard every protected route runs, timed in process.

``Requires`` authenticates the bearer key (a dict lookup and a SHA-256), takes a token from the
key's bucket, derives the caller's scope from the catalog and checks the body's media type. It
is timed here on a real key and the demo catalog, for a partner (the dearest scope to derive),
and set against the API's measured latency of a usage query and of ``POST /v1/events``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp
from types import SimpleNamespace

from starlette.requests import Request

from api.access.guard import Authenticator, Requires
from api.access.keys import ApiKey, digest, new_key_material
from api.access.principals import Permission, Role
from billing.adapters.catalog_file import load_catalog
from meterline.settings import Settings


class _Keys:
    """The key store's read side, without ClickHouse: the guard reads memory only anyway."""

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def key(self, key_id: str) -> ApiKey | None:
        return self._key if key_id == self._key.key_id else None

    def token_revoked(self, token_id: str) -> bool:
        return False


class _State:
    """What ``api.services.services_of`` reads, with only the parts the guard uses."""

    def __init__(self, authenticator: Authenticator, catalog: object) -> None:
        admin = SimpleNamespace(catalog=catalog)
        self.services = SimpleNamespace(authenticator=authenticator, catalog_admin=admin)


def guard_us_per_call(calls: int = 20_000) -> float:
    settings = Settings(data_dir=Path(mkdtemp(prefix="meterline-auth-")), rate_limit_per_s=1e9, rate_limit_burst=10**9)
    key_id, secret, full = new_key_material()
    key = ApiKey(key_id, digest(secret), "bench", Role.PARTNER, "northwind", (), (), "bench", datetime.now(UTC))
    authenticator = Authenticator(settings, _Keys(key))  # type: ignore[arg-type]
    app = type("App", (), {"state": _State(authenticator, load_catalog(settings.catalog))})()
    guard = Requires(Permission.READ_USAGE)
    credentials = type("Credentials", (), {"credentials": full})()
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "app": app}

    async def run() -> float:
        began = time.perf_counter()
        for _ in range(calls):
            await guard(Request(scope), credentials)  # type: ignore[arg-type]
        return (time.perf_counter() - began) / calls * 1e6

    return round(asyncio.run(run()), 1)


if __name__ == "__main__":
    print(guard_us_per_call())
