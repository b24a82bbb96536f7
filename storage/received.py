"""What the sink stores beside usage: messages as received, dead letters with their reasons, and
which numbered messages are now stored (what producers may forget, and a close waits for)."""

from __future__ import annotations

from datetime import datetime

import orjson
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from schemas.receipts import Handled
from storage.tables import DEAD_LETTERS, RAW_MESSAGES, STORED_MESSAGES
from storage.usage_store import INSERT_SETTINGS, INSERTED_AT, in_every_row


class ReceivedStore:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._messages_table = f"{database}.{RAW_MESSAGES}"
        self._stored_table = f"{database}.{STORED_MESSAGES}"
        self._dead_letters_table = f"{database}.{DEAD_LETTERS}"

    def messages(self, message_ids: list[str], payloads: list[bytes], received_at: datetime) -> None:
        """Messages of the events topic, whole, valid or not, keyed by their content hash."""
        rows = pa.table(
            {
                "message_id": message_ids,
                "payload": pa.array(payloads, pa.binary()),
                "received_at": in_every_row(received_at, len(payloads)),
            }
        )
        self._client.insert_arrow(self._messages_table, rows, settings=INSERT_SETTINGS)

    def dead_letters(self, payloads: list[bytes], refused_at: datetime) -> None:
        self._client.insert_arrow(self._dead_letters_table, _dead_letter_rows(payloads, refused_at))

    def stored(self, handled: list[Handled], stored_at: datetime) -> None:
        self._client.insert_arrow(self._stored_table, _stored_rows(handled, stored_at))


def _stored_rows(handled: list[Handled], stored_at: datetime) -> pa.Table:
    return pa.table(
        {
            "producer": [message.producer for message in handled],
            "seq": pa.array([message.seq for message in handled], pa.uint64()),
            "events": pa.array([message.events for message in handled], pa.uint32()),
            "first_usage": pa.array([message.first_usage for message in handled], INSERTED_AT),
            "last_usage": pa.array([message.last_usage for message in handled], INSERTED_AT),
            "stored_at": in_every_row(stored_at, len(handled)),
        }
    )


def _dead_letter_rows(payloads: list[bytes], refused_at: datetime) -> pa.Table:
    """A dead letter is ``Rejection.to_json``: the event as it came (any JSON), its id and reason."""
    letters = [_letter(payload) for payload in payloads]
    return pa.table(
        {
            "event_id": [str(letter.get("event_id") or "") for letter in letters],
            "source": [_source_of(letter.get("event")) for letter in letters],
            "reason": [str(letter.get("reason", "")) for letter in letters],
            "event": [orjson.dumps(letter.get("event")).decode() for letter in letters],
            "refused_at": in_every_row(refused_at, len(letters)),
        }
    )


def _letter(payload: bytes) -> dict[str, object]:
    """A dead letter as written by the worker, or what to keep of one that is not."""
    try:
        letter = orjson.loads(payload)
    except orjson.JSONDecodeError:
        letter = None
    if isinstance(letter, dict):
        return letter
    return {"reason": "a dead letter that is not a JSON object", "event": payload.decode(errors="replace")}


def _source_of(event: object) -> str:
    source = event.get("source") if isinstance(event, dict) else None
    return source if isinstance(source, str) else ""
