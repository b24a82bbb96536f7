"""A durable on-disk queue of batches: written before sending, removed once acknowledged.

One file per batch, named by a growing sequence number, written to a temporary name,
fsynced, then renamed: a file that exists is whole, and replay in name order is send order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".batch"


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
        sequences = [int(path.stem) for path in self._dir.glob(f"*{SUFFIX}")]
        self._next = max(sequences, default=0) + 1

    def append(self, key: bytes, payload: bytes) -> SpooledBatch:
        batch = SpooledBatch(self._next, key, payload)
        self._next += 1
        final = self._path(batch.seq)
        temporary = final.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            handle.write(len(key).to_bytes(4, "big") + key + payload)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(final)
        self._sync_directory()
        return batch

    def pending(self) -> Iterator[SpooledBatch]:
        """Batches not yet acknowledged, oldest first."""
        for seq in sorted(int(path.stem) for path in self._dir.glob(f"*{SUFFIX}")):
            raw = self._path(seq).read_bytes()
            key_length = int.from_bytes(raw[:4], "big")
            yield SpooledBatch(seq, raw[4 : 4 + key_length], raw[4 + key_length :])

    def ack(self, seq: int) -> None:
        self._path(seq).unlink(missing_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self._dir.glob(f"*{SUFFIX}"))

    def _path(self, seq: int) -> Path:
        return self._dir / f"{seq:020d}{SUFFIX}"

    def _sync_directory(self) -> None:
        descriptor = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
