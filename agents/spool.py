"""A durable on-disk queue of batches: written before sending, removed once acknowledged.

Batches are written in groups, one file per group (an agent's poll cycle): written to a
temporary name, fsynced, then renamed, so a file that exists is whole and one cycle costs one
fsync however many sources it covers (at one fsync per batch, a 200-source cycle spent most of
a second in fsync alone). Each batch has a growing sequence number; a file is named by its
first one, so replay in name order is send order. A file is removed once every batch in it has
been acknowledged; what a crash leaves is replayed whole, and downstream keeps each event once.

Numbers are never reused, even once every file is gone: completeness reads a number missing
between stored ones as a lost message. Before the newest file is removed, its last number is
written to ``LAST_SEQ``, which a restart continues from.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".spool"
LAST_SEQ = "last-seq"
LEGACY_SUFFIX = ".batch"  # one batch per file: [key length][key][payload], left by older agents
_HEADER = struct.Struct(">QII")  # sequence number, key length, payload length


@dataclass(frozen=True)
class SpooledBatch:
    seq: int
    key: bytes
    payload: bytes


class Spool:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        for leftover in self._dir.glob("*.tmp"):
            leftover.unlink()
        self._unacknowledged: dict[Path, set[int]] = {}
        self._file_of: dict[int, Path] = {}
        self._bytes_of: dict[Path, int] = {}
        for path in self._files():
            self._remember(path, [batch.seq for batch in _read(path)])
        self._next = max(max(self._file_of, default=0), self._last_seq_written()) + 1
        self._newest = self._files()[-1] if self._file_of else None

    def append(self, key: bytes, payload: bytes) -> SpooledBatch:
        (batch,) = self.append_group([(key, payload)])
        return batch

    def append_group(self, batches: Sequence[tuple[bytes, bytes]]) -> list[SpooledBatch]:
        """Durably add several batches with one write and one fsync."""
        spooled = [SpooledBatch(self._next + n, key, payload) for n, (key, payload) in enumerate(batches)]
        if not spooled:
            return []
        self._next += len(spooled)
        final = self._dir / f"{spooled[0].seq:020d}{SUFFIX}"
        temporary = final.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            for batch in spooled:
                handle.write(_HEADER.pack(batch.seq, len(batch.key), len(batch.payload)) + batch.key + batch.payload)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(final)
        self._sync_directory()
        self._remember(final, [batch.seq for batch in spooled])
        self._newest = final
        return spooled

    def pending(self) -> Iterator[SpooledBatch]:
        """Batches not yet acknowledged, oldest first."""
        for path in self._files():
            unacknowledged = self._unacknowledged.get(path, set())
            yield from (batch for batch in _read(path) if batch.seq in unacknowledged)

    def ack(self, seq: int) -> None:
        path = self._file_of.pop(seq, None)
        if path is None:
            return
        remaining = self._unacknowledged[path]
        remaining.discard(seq)
        if not remaining:
            del self._unacknowledged[path], self._bytes_of[path]
            if path == self._newest:
                self._write_last_seq(self._next - 1)
            path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._file_of)

    @property
    def size_bytes(self) -> int:
        """How much the files still held take on disk."""
        return sum(self._bytes_of.values())

    def _remember(self, path: Path, sequences: list[int]) -> None:
        self._unacknowledged[path] = set(sequences)
        self._file_of.update(dict.fromkeys(sequences, path))
        self._bytes_of[path] = path.stat().st_size

    def _last_seq_written(self) -> int:
        try:
            return int((self._dir / LAST_SEQ).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _write_last_seq(self, seq: int) -> None:
        """Durably, before the last file goes: the numbers it held must not be given again."""
        temporary = self._dir / f"{LAST_SEQ}.tmp"
        with temporary.open("w") as handle:
            handle.write(str(seq))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(self._dir / LAST_SEQ)
        self._sync_directory()

    def _files(self) -> list[Path]:
        paths = [*self._dir.glob(f"*{SUFFIX}"), *self._dir.glob(f"*{LEGACY_SUFFIX}")]
        return sorted(paths, key=lambda path: int(path.stem))

    def _sync_directory(self) -> None:
        descriptor = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read(path: Path) -> Iterator[SpooledBatch]:
    raw = path.read_bytes()
    if path.suffix == LEGACY_SUFFIX:
        key_length = int.from_bytes(raw[:4], "big")
        yield SpooledBatch(int(path.stem), raw[4 : 4 + key_length], raw[4 + key_length :])
        return
    offset = 0
    while offset < len(raw):
        seq, key_length, payload_length = _HEADER.unpack_from(raw, offset)
        offset += _HEADER.size
        key, offset = raw[offset : offset + key_length], offset + key_length
        payload, offset = raw[offset : offset + payload_length], offset + payload_length
        yield SpooledBatch(seq, key, payload)
