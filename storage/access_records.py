"""API keys and read tokens as stored: versioned rows, the latest of each id wins (``changed_at``).

Rows go in and come out as plain columns; what they mean (roles, scopes, expiry) is
``api.access``'s, which keeps a copy in memory (``api.access.key_store``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from storage.tables import API_KEYS, PORTAL_SIGN_OUTS, READ_TOKENS


class AccessRecords:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._keys_table = f"{database}.{API_KEYS}"
        self._tokens_table = f"{database}.{READ_TOKENS}"
        self._sign_outs_table = f"{database}.{PORTAL_SIGN_OUTS}"
        self._lock = threading.Lock()

    def save_key(self, row: dict[str, Any]) -> None:
        self._insert(self._keys_table, row)

    def save_token(self, row: dict[str, Any]) -> None:
        self._insert(self._tokens_table, row)

    def keys(self, columns: list[str]) -> list[dict[str, Any]]:
        """Every key's latest row."""
        with self._lock:
            return list(
                self._client.query(f"SELECT {', '.join(columns)} FROM {self._keys_table} FINAL").named_results()
            )

    def unexpired_tokens(self, now: datetime) -> list[dict[str, Any]]:
        """The latest row of every read token that has not expired by ``now``, oldest first."""
        query = (
            f"SELECT * FROM {self._tokens_table} FINAL WHERE expires_at > {{now:DateTime64(3, 'UTC')}} "
            "ORDER BY issued_at, token_id"
        )
        with self._lock:
            return list(self._client.query(query, parameters={"now": now}).named_results())

    def revoked_token_ids(self) -> frozenset[str]:
        """The read tokens revoked before they expire."""
        with self._lock:
            rows = self._client.query(
                f"SELECT token_id FROM {self._tokens_table} FINAL "
                "WHERE revoked_at IS NOT NULL AND expires_at > now64(3)"
            ).result_rows
        return frozenset(token_id for (token_id,) in rows)

    def save_sign_out(self, session_id: str, signed_out_at: datetime, expires_at: datetime) -> None:
        row = [session_id, signed_out_at, expires_at]
        with self._lock:
            self._client.insert(
                self._sign_outs_table, [row], column_names=["session_id", "signed_out_at", "expires_at"]
            )

    def signed_out_sessions(self) -> frozenset[str]:
        """The portal sessions signed out that have not expired yet."""
        with self._lock:
            rows = self._client.query(
                f"SELECT DISTINCT session_id FROM {self._sign_outs_table} WHERE expires_at > now64(3)"
            ).result_rows
        return frozenset(session_id for (session_id,) in rows)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        stamped = {**row, "changed_at": datetime.now(UTC)}
        with self._lock:
            self._client.insert(table, [list(stamped.values())], column_names=list(stamped))
