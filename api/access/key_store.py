"""API keys, revoked read tokens and signed-out portal sessions, stored in ClickHouse
(``storage.access_records``) and read through an in-memory copy.

Every request checks a key, so the check reads memory only; the API reads the copy again from
ClickHouse every ``REFRESH_S`` (a key revoked through another API replica stops working within
that), and at once after a change made here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from api.access.keys import ApiKey
from api.access.principals import Role
from api.access.tokens import IssuedToken, ReadToken
from storage.access_records import AccessRecords
from storage.connection import as_utc

REFRESH_S = 5.0
_COLUMNS = list(ApiKey.__dataclass_fields__)


class KeyStore:
    def __init__(self, records: AccessRecords) -> None:
        self._records = records
        self._keys: dict[str, ApiKey] = {}
        self._revoked_tokens: frozenset[str] = frozenset()
        self._signed_out: frozenset[str] = frozenset()
        self.refresh()

    def key(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    def keys(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda key: (key.created_at, key.key_id))

    def token_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked_tokens

    def session_ended(self, session_id: str) -> bool:
        """A portal session signed out before it expired."""
        return session_id in self._signed_out

    def end_session(self, session_id: str, now: datetime, expires_at: datetime) -> None:
        self._records.save_sign_out(session_id, now, expires_at)
        self.refresh()

    def save(self, key: ApiKey) -> None:
        self._records.save_key({**asdict(key), "role": key.role.value})
        self.refresh()

    def save_token(self, issued: IssuedToken) -> None:
        token = issued.token
        row = {
            "token_id": token.token_id,
            "role": token.role.value,
            "party_id": token.party_id,
            "meters": list(token.meters or ()),
            "issued_by": issued.issued_by,
            "issued_at": issued.issued_at,
            "expires_at": token.expires_at,
            "revoked_at": issued.revoked_at,
        }
        self._records.save_token(row)
        self.refresh()

    def revoke_party(self, party_id: str, now: datetime) -> None:
        """Revoke every key and read token of a party (a deleted customer or partner): its id may
        be given to another party later, which they must not open."""
        keys = [key for key in self.keys() if key.party_id == party_id]
        for key in keys:
            if key.revoked_at is None:
                self.save(key.revoked(now))
        key_ids = {key.key_id for key in keys}
        self.revoke_tokens(now, lambda issued: issued.token.party_id == party_id or issued.issued_by in key_ids)

    def revoke_tokens(self, now: datetime, which: Callable[[IssuedToken], bool]) -> None:
        """Revoke the unexpired read tokens ``which`` picks (those revoked already stay as they are)."""
        for issued in self.issued_tokens(now):
            if issued.revoked_at is None and which(issued):
                self.save_token(IssuedToken(issued.token, issued.issued_by, issued.issued_at, now))

    def issued_tokens(self, now: datetime) -> list[IssuedToken]:
        """The read tokens that have not expired, revoked or not, oldest first."""
        return [_issued_of(row) for row in self._records.unexpired_tokens(now)]

    def refresh(self) -> None:
        """Read the keys and revoked tokens again (the copy is swapped whole: readers never lock)."""
        keys = {row["key_id"]: _key_of(row) for row in self._records.keys(_COLUMNS)}
        self._revoked_tokens = self._records.revoked_token_ids()
        self._signed_out = self._records.signed_out_sessions()
        self._keys = keys


def _key_of(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        **{
            **row,
            "role": Role(row["role"]),
            "sources": tuple(row["sources"]),
            "customers": tuple(row["customers"]),
            "created_at": as_utc(row["created_at"]),
            "expires_at": as_utc(row["expires_at"]) if row["expires_at"] else None,
            "revoked_at": as_utc(row["revoked_at"]) if row["revoked_at"] else None,
        }
    )


def _issued_of(row: dict[str, Any]) -> IssuedToken:
    token = ReadToken(
        token_id=row["token_id"],
        role=Role(row["role"]),
        party_id=row["party_id"],
        meters=tuple(row["meters"]) or None,
        expires_at=as_utc(row["expires_at"]),
    )
    revoked_at = as_utc(row["revoked_at"]) if row["revoked_at"] else None
    return IssuedToken(token, row["issued_by"], as_utc(row["issued_at"]), revoked_at)
