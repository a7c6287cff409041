"""The head: recent samples in memory.

Appended batches land in a raw buffer (NumPy columns, one part per batch). Once it holds
``head_chunk_samples`` samples it is handed over to be encoded into a :class:`ChunkSet`
(delta/XOR + zstd, ~1-2 bytes per sample) by the store's maintenance thread. Chunk sets are
merged tier by tier (four of a kind into one of the next tier) so each series' samples end up
in long, well-compressed runs. Queries read chunk sets, the buffers waiting to be encoded and
the raw buffer; sources are kept in write order so a later write of the same timestamp wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalroom.tsdb.codec import ChunkSet, encode_chunkset, merge_sorted

__all__ = ["Head", "Samples"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Samples = tuple[I64, I64, F64]  # series id per sample, timestamps, values

_FANOUT = 4
_MIN_RUN = 64  # samples per series a merged chunk set should reach despite its span
_MAX_RAW_PARTS = 32


def concat(parts: list[Samples]) -> Samples:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    if len(parts) == 1:
        return parts[0]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def select_raw(parts: list[Samples], wanted: I64, mint: int, maxt: int) -> Samples:
    """Samples of the wanted series (sorted ids) in [mint, maxt], in write order."""
    if not parts or not len(wanted):
        return concat([])
    member: npt.NDArray[np.bool_] | None = None
    if len(wanted) > 1:
        # a lookup table over ids beats np.isin (which sorts) on every part of every query;
        # the last slot stands for every id beyond the wanted ones (take clips to it)
        member = np.zeros(int(wanted[-1]) + 2, dtype=np.bool_)
        member[wanted] = True
    out: list[Samples] = []
    for gids, ts, vals in parts:  # part by part: no copy of the whole buffer per query
        # Series first, then time on the few positions left: one pass over the part instead
        # of three (a one-series read of a full buffer: ~1 ms instead of ~9).
        if member is None:
            at = np.flatnonzero(gids == wanted[0])
        else:
            at = np.flatnonzero(np.take(member, gids, mode="clip"))
        if not len(at):
            continue
        stamps = ts[at]
        at = at[(stamps >= mint) & (stamps <= maxt)]
        if len(at):
            out.append((gids[at], ts[at], vals[at]))
    return concat(out)


@dataclass
class _Tiered:
    chunk: ChunkSet
    tier: int


class Head:
    """In-memory samples of all tenants (series ids are global). Thread-safe."""

    def __init__(
        self,
        *,
        chunk_samples: int,
        group_samples: int,
        level: int,
        merge_span_ms: int = 30 * 60_000,
    ) -> None:
        self.chunk_samples = chunk_samples
        self.merge_span_ms = merge_span_ms
        self.group_samples = group_samples
        self.level = level
        self.lock = threading.Lock()
        self._raw: list[Samples] = []
        self._raw_samples = 0
        self._pending: list[list[Samples]] = []  # full raw buffers waiting to be encoded
        self._chunks: list[_Tiered] = []
        self.min_time = np.iinfo(np.int64).max
        self.max_time = np.iinfo(np.int64).min

    # -- writes -------------------------------------------------------------------------

    def add(self, gids: I64, ts: I64, values: F64) -> bool:
        """Add samples; True when a full buffer now waits for :meth:`encode_pending`."""
        if not len(ts):
            return False
        with self.lock:
            self._raw.append((gids, ts, values))
            self._raw_samples += len(ts)
            if len(self._raw) >= _MAX_RAW_PARTS:
                # every query filters every part: a few large parts cost less than many
                # small ones (one batch per remote-write request)
                self._raw = [concat(self._raw)]
            self.min_time = min(self.min_time, int(ts.min()))
            self.max_time = max(self.max_time, int(ts.max()))
            if self._raw_samples >= self.chunk_samples:
                # one part: every query reads the buffers still waiting to be encoded
                self._pending.append([concat(self._raw)])
                self._raw = []
                self._raw_samples = 0
            return bool(self._pending)

    def encode_pending(self) -> int:
        """Encode the buffers waiting (oldest first) and merge tiers. Call from one thread at a
        time (the store's maintenance lock). Returns how many buffers were encoded."""
        done = 0
        while True:
            with self.lock:
                if not self._pending:
                    break
                parts = self._pending[0]
            gids, ts, vals = merge_sorted(*concat(parts))
            chunk = encode_chunkset(
                gids, ts, vals, group_samples=self.group_samples, level=self.level
            )
            with self.lock:
                if self._pending and self._pending[0] is parts:
                    self._pending.pop(0)
                    self._chunks.append(_Tiered(chunk, 0))
                    done += 1
                else:  # taken by a flush meanwhile
                    break
            self._merge_tiers()
        return done

    def _merge_tiers(self) -> None:
        while True:
            with self.lock:
                tail = self._chunks[-_FANOUT:]
                if len(tail) < _FANOUT or len({t.tier for t in tail}) != 1:
                    return
                # A query decodes every chunk set its range touches: chunk sets of recent
                # data stay short in time, so "the last 5 minutes" reads little more; but
                # runs of a series need some length to compress well.
                span = max(t.chunk.max_time for t in tail) - min(t.chunk.min_time for t in tail)
                samples = sum(t.chunk.num_samples for t in tail)
                per_series = samples / max(1, max(t.chunk.num_series for t in tail))
                if span > self.merge_span_ms and per_series >= _MIN_RUN:
                    return
            merged = self._merge([t.chunk for t in tail])
            with self.lock:
                if self._chunks[-_FANOUT:] != tail:
                    return
                del self._chunks[-_FANOUT:]
                self._chunks.append(_Tiered(merged, tail[0].tier + 1))

    def _merge(self, chunks: list[ChunkSet]) -> ChunkSet:
        gids, ts, vals = merge_sorted(*concat([c.decode_all() for c in chunks]))
        return encode_chunkset(gids, ts, vals, group_samples=self.group_samples, level=self.level)

    def take_all(self) -> tuple[list[ChunkSet], list[Samples]]:
        """Remove and return everything (for a flush to disk); the head starts empty."""
        with self.lock:
            chunks = [t.chunk for t in self._chunks]
            raw = [p for parts in self._pending for p in parts] + self._raw
            self._chunks, self._pending, self._raw, self._raw_samples = [], [], [], 0
            self.min_time = np.iinfo(np.int64).max
            self.max_time = np.iinfo(np.int64).min
            return chunks, raw

    # -- reads ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[list[ChunkSet], list[Samples]]:
        with self.lock:
            return [t.chunk for t in self._chunks], [
                p for parts in self._pending for p in parts
            ] + list(self._raw)

    @property
    def num_samples(self) -> int:
        with self.lock:
            encoded = sum(t.chunk.num_samples for t in self._chunks)
            return (
                encoded
                + sum(len(p[1]) for parts in self._pending for p in parts)
                + (self._raw_samples)
            )

    @property
    def nbytes(self) -> int:
        with self.lock:
            total = sum(t.chunk.nbytes for t in self._chunks)
            for parts in [*self._pending, self._raw]:
                total += sum(p[0].nbytes + p[1].nbytes + p[2].nbytes for p in parts)
            return total

    @property
    def num_chunks(self) -> int:
        with self.lock:
            return len(self._chunks)
