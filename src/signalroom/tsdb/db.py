"""The time-series store: series index, WAL, head and blocks behind one object.

Write path (``append``): resolve each batch series to its id (one dict lookup on its key; new
series are validated and checked against the limits), check the samples against each series'
newest timestamp (vectorised; only series with out-of-order or duplicate samples take a
per-sample path), write one WAL record (new series, accepted samples), wait for it to be
durable (group commit), then add the samples to the head. Validation and the WAL write order
are decoupled: a record's samples are applied after it is durable, and replay does not depend
on record order (series records are restored first, samples are merged by time).

Persistence: ``flush`` writes everything in the head into blocks (one per ``block_duration``
window), a snapshot of the series index (ids, keys, newest sample per series) and the
metadata, then checkpoints the WAL. ``compact`` merges blocks of the same window, then
neighbouring windows into larger ones (x3 per level up to ``max_block_duration_ms``).
``apply_retention`` drops whole blocks. A maintenance thread does all three when due.

On disk, under ``directory``::

    wal/                       WAL segments (signalroom.storage.wal)
    blocks/<name>/             immutable blocks (signalroom.tsdb.block)
    series.snapshot.arrow      the index at the last flush
    metadata.json              TYPE/HELP/UNIT per tenant and metric at the last flush
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc as ipc

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.promql.storage import Matcher, SeriesData
from signalroom.storage.wal import WAL
from signalroom.tsdb import metrics as m
from signalroom.tsdb.batch import AppendResult, MetricMetadata, SampleBatch
from signalroom.tsdb.block import Block
from signalroom.tsdb.codec import ChunkSet, encode_chunkset, merge_sorted, ranges
from signalroom.tsdb.errors import (
    AppendError,
    DuplicateSampleError,
    InvalidLabelsError,
    LimitError,
    OutOfOrderError,
    TSDBError,
)
from signalroom.tsdb.head import Head, Samples, concat, select_raw
from signalroom.tsdb.index import NO_DATA, NO_TIME, SeriesIndex, TenantIndex, validate_pairs
from signalroom.tsdb.keys import (
    ParsedKeys,
    decode_key,
    encode_key,
    key_labels,
    labels_key,
    parse_keys,
)
from signalroom.tsdb.options import TSDBOptions
from signalroom.tsdb.records import (
    MetadataRecord,
    decode_record,
    encode_metadata,
    encode_samples,
)

__all__ = ["TSDB", "TSDBQuerier"]

logger = logging.getLogger("signalroom.tsdb")

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_EMPTY_SAMPLES: Samples = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
DEFAULT_TENANT = "default"
SNAPSHOT = "series.snapshot.arrow"
METADATA = "metadata.json"
_MAINTENANCE_INTERVAL = 15.0


@dataclass
class _Pending:
    """A batch validated and reserved, waiting for its WAL record to be durable."""

    tenant: str
    result: AppendResult
    payload: bytes | None = None
    samples: Samples | None = None
    new_series: int = 0


@dataclass
class _Flushing:
    chunks: list[ChunkSet] = field(default_factory=list)
    raw: list[Samples] = field(default_factory=list)


def _render(pairs: Iterable[tuple[str, str]]) -> str:
    items = list(pairs)
    name = next((v for n, v in items if n == METRIC_NAME), "")
    inner = ", ".join(f'{n}="{v}"' for n, v in sorted(items) if n != METRIC_NAME)
    return f"{name}{{{inner}}}"


class TSDB:
    """Metric series storage: index, WAL, head and blocks. Thread-safe; see the module doc."""

    def __init__(self, directory: Path, *, options: TSDBOptions | None = None) -> None:
        self.directory = Path(directory)
        self.options = options or TSDBOptions()
        self.index = SeriesIndex()
        self.head = self._new_head()
        self._blocks: list[Block] = []
        self._flushing: list[_Flushing] = []
        self._lock = threading.Lock()  # append reservations, source lists
        self._cond = threading.Condition(self._lock)
        self._inflight = 0
        self._draining = False
        self._maintenance_lock = threading.Lock()
        self._metadata: dict[str, dict[str, MetricMetadata]] = {}
        self._wal: WAL | None = None
        self._open = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def _new_head(self) -> Head:
        o = self.options
        return Head(
            chunk_samples=o.head_chunk_samples,
            group_samples=o.group_samples,
            level=o.compression_level,
            merge_span_ms=o.head_merge_span_ms,
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def blocks_dir(self) -> Path:
        return self.directory / "blocks"

    def open(self, *, background: bool = True) -> TSDB:
        """Load the snapshot, blocks and WAL; ``background`` starts the maintenance thread."""
        if self._open:
            return self
        self.blocks_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.blocks_dir.iterdir():
            if leftover.name.endswith((".tmp", ".deleted")):
                import shutil

                shutil.rmtree(leftover, ignore_errors=True)
        self._load_snapshot()
        self._load_metadata()
        for path in sorted(self.blocks_dir.iterdir()):
            if path.is_dir():
                self._blocks.append(Block.open(path))
        self._blocks.sort(key=lambda b: (b.meta.created_ms, b.meta.name))
        o = self.options
        self._wal = WAL(
            self.directory / "wal",
            name="tsdb",
            segment_bytes=o.wal_segment_bytes,
            fsync=o.wal_fsync,
            batch_interval=o.wal_batch_interval,
        )
        self._wal.open()
        self._replay()
        self._open = True
        self._update_gauges()
        if background:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._maintenance_loop, name="tsdb-maintenance", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop maintenance, close the WAL. The head is not flushed: the WAL holds it."""
        if not self._open:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._maintenance_lock:
            self._open = False
            if self._wal is not None:
                self._wal.close()

    def __enter__(self) -> TSDB:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> WAL:
        if not self._open or self._wal is None:
            raise TSDBError(f"TSDB at {self.directory} is not open")
        return self._wal

    # -- restore --------------------------------------------------------------------------

    def _load_snapshot(self) -> None:
        path = self.directory / SNAPSHOT
        if not path.exists():
            return
        with ipc.open_file(str(path)) as reader:
            table = reader.read_all()
        meta = table.schema.metadata or {}
        ids = table.column("series_id").to_numpy()
        tenants = table.column("tenant").to_pylist()
        keys = table.column("key").to_pylist()
        first = table.column("first_ts").to_numpy()
        last = table.column("last_ts").to_numpy()
        last_value = table.column("last_value").to_numpy()
        index = self.index
        with index.lock:
            for sid, tenant, key in zip(ids.tolist(), tenants, keys, strict=True):
                index.add(index.tenant(tenant), key, decode_key(key), series_id=sid)
            if len(ids):
                index.first_ts[ids] = first
                index.last_ts[ids] = last
                index.last_value[ids] = last_value
            index.next_id = max(index.next_id, int(meta.get(b"next_id", b"0")))

    def _load_metadata(self) -> None:
        path = self.directory / METADATA
        if not path.exists():
            return
        raw = json.loads(path.read_text())
        for tenant, entries in raw.items():
            self._apply_metadata(tenant, entries)

    def _replay(self) -> None:
        assert self._wal is not None
        started = time.perf_counter()
        samples: list[Samples] = []
        records = 0
        index = self.index
        with index.lock:
            for lsn, payload in self._wal.replay():
                records += 1
                try:
                    record = decode_record(payload)
                except ValueError as exc:
                    logger.error("TSDB WAL record %d skipped: %s", lsn, exc)
                    continue
                if isinstance(record, MetadataRecord):
                    self._apply_metadata(record.tenant, record.entries)
                    continue
                tenant = index.tenant(record.tenant)
                for sid, key in zip(record.series_ids.tolist(), record.keys, strict=True):
                    if sid < len(index.keys) and index.keys[sid] is not None:
                        continue
                    index.add(tenant, key, decode_key(key), series_id=sid)
                if len(record.timestamps):
                    samples.append((record.sample_ids, record.timestamps, record.values))
            index.finish_restore()
        if samples:
            gids, ts, vals = concat(samples)
            known = np.array([k is not None for k in index.keys], dtype=np.bool_)
            ok = (gids < len(known)) & known[np.minimum(gids, max(len(known) - 1, 0))]
            if not ok.all():
                logger.error("TSDB WAL: %d samples of unknown series skipped", int((~ok).sum()))
                gids, ts, vals = gids[ok], ts[ok], vals[ok]
            self._restore_newest(gids, ts, vals)
            step = self.options.head_chunk_samples
            for start in range(0, len(ts), step):
                stop = start + step
                self.head.add(gids[start:stop], ts[start:stop], vals[start:stop])
            self.head.encode_pending()
        elapsed = time.perf_counter() - started
        m.WAL_REPLAY_SECONDS.set(elapsed)
        logger.info(
            "TSDB opened at %s: %d series, %d blocks, %d WAL records replayed in %.2fs",
            self.directory,
            index.num_series,
            len(self._blocks),
            records,
            elapsed,
        )

    def _restore_newest(self, gids: I64, ts: I64, vals: F64) -> None:
        """Newest timestamp/value and first timestamp per series from replayed samples."""
        order = np.lexsort((ts, gids))
        g, t, v = gids[order], ts[order], vals[order]
        last = np.ones(len(g), dtype=np.bool_)
        last[:-1] = g[1:] != g[:-1]
        first = np.ones(len(g), dtype=np.bool_)
        first[1:] = g[1:] != g[:-1]
        index = self.index
        lg = g[last]
        newer = t[last] >= index.last_ts[lg]
        index.last_ts[lg[newer]] = t[last][newer]
        index.last_value[lg[newer]] = v[last][newer]
        fg = g[first]
        index.first_ts[fg] = np.minimum(index.first_ts[fg], t[first])

    # -- append ---------------------------------------------------------------------------

    def append(self, tenant: str, batch: SampleBatch) -> AppendResult:
        """Store a batch; returns once the accepted samples are durable in the WAL.

        Raises :class:`LimitError` (``max_samples_per_request``) for a batch too big to take
        at all; every other problem rejects only the samples concerned and is reported in the
        result (whose ``errors`` are typed :class:`AppendError` s).
        """
        wal = self._check_open()
        pending = self._prepare(tenant or DEFAULT_TENANT, batch)
        if pending.payload is None:
            return pending.result
        try:
            lsn = wal.append([pending.payload])
        except BaseException:
            self._finish(pending, None)
            raise
        self._finish(pending, lsn)
        return pending.result

    async def append_async(self, tenant: str, batch: SampleBatch) -> AppendResult:
        """Like :meth:`append` without blocking the event loop on validation or fsync."""
        wal = self._check_open()
        if len(batch) > 20_000:
            pending = await asyncio.to_thread(self._prepare, tenant or DEFAULT_TENANT, batch)
        else:
            pending = self._prepare(tenant or DEFAULT_TENANT, batch)
        if pending.payload is None:
            return pending.result
        try:
            lsn = await wal.append_async([pending.payload])
        except BaseException:
            self._finish(pending, None)
            raise
        self._finish(pending, lsn)
        return pending.result

    def _prepare(self, tenant_name: str, batch: SampleBatch) -> _Pending:
        o = self.options
        n = len(batch)
        result = AppendResult()
        pending = _Pending(tenant_name, result)
        if o.max_samples_per_request and n > o.max_samples_per_request:
            m.REJECTED_SAMPLES.labels("max_samples_per_request").inc(n)
            raise LimitError(
                "max_samples_per_request",
                f"request has {n} samples, more than max_samples_per_request="
                f"{o.max_samples_per_request}",
                retryable=False,
                samples=n,
            )
        tenant = self.index.tenant(tenant_name)
        ns = batch.num_series
        if batch.keys is not None:
            keys = list(batch.keys)
        else:
            assert batch.series is not None
            keys = [labels_key(labels) for labels in batch.series]
        get = tenant.ids.get
        removals = self.index.removals
        sids = np.fromiter(map(get, keys, repeat(-1, ns)), np.int64, count=ns)
        per_series = np.bincount(batch.series_index, minlength=ns) if ns else np.zeros(0, int)
        new_ids: list[int] = []
        new_keys: list[bytes] = []
        with self._cond:
            while self._draining:
                self._cond.wait()
            with self.index.lock:
                if self.index.removals != removals:  # series were forgotten since the lookup
                    sids = np.fromiter(map(get, keys, repeat(-1, ns)), np.int64, count=ns)
                missing = np.flatnonzero(sids < 0)
                if len(missing):
                    self._create_series(
                        tenant, batch, keys, missing, sids, per_series, result, new_ids, new_keys
                    )
                accepted = self._check_samples(batch, sids, result)
            pending.new_series = len(new_ids)
            result.new_series = len(new_ids)
            if accepted is None and not new_ids:
                self._count(pending)
                return pending
            if accepted is None:
                accepted = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
            pending.samples = accepted
            pending.payload = encode_samples(
                tenant_name, np.array(new_ids, dtype=np.int64), new_keys, *accepted
            )
            self._inflight += 1
        return pending

    def _create_series(
        self,
        tenant: TenantIndex,
        batch: SampleBatch,
        keys: list[bytes],
        missing: I64,
        sids: I64,
        per_series: I64,
        result: AppendResult,
        new_ids: list[int],
        new_keys: list[bytes],
    ) -> None:
        """Find or create the batch series ``missing`` (not found by their key), filling
        ``sids``; rejections go into ``result``. Caller holds the index lock.

        Keys that :func:`parse_keys` vouches for are limit-checked and created (or rejected)
        in bulk, with no per-series Python beyond slicing; the others take
        :meth:`_resolve_new` one by one (it finds unsorted label sets, explains invalid ones).
        """
        o = self.options
        todo = missing
        todo_keys = keys if len(missing) == len(keys) else [keys[i] for i in missing.tolist()]
        weight = np.zeros(len(keys), dtype=np.int64)  # samples per distinct series
        repeated = len(set(todo_keys)) != len(todo_keys)
        if repeated:  # a series sent twice in one batch is created once
            first: dict[bytes, int] = {}
            for i in missing.tolist():
                first.setdefault(keys[i], i)
            todo = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            owner = np.fromiter(map(first.__getitem__, todo_keys), np.int64, count=len(missing))
            todo_keys = list(first)
            np.add.at(weight, owner, per_series[missing])
        else:
            weight[todo] = per_series[todo]
        parsed = parse_keys(
            todo_keys,
            max_name_length=o.max_label_name_length,
            max_value_length=o.max_label_value_length,
            max_labels=o.max_label_names_per_series,
        )
        fast = np.flatnonzero(parsed.ok)
        if len(fast):
            created = self._limit_new(tenant, parsed, fast, weight[todo[fast]], result)
            chosen = fast[created]
            chosen_keys = [todo_keys[j] for j in chosen.tolist()]
            ids = self.index.add_parsed(tenant, chosen_keys, parsed, chosen)
            sids[todo[chosen]] = ids
            new_ids.extend(ids.tolist())
            new_keys.extend(chosen_keys)
        for j in np.flatnonzero(~parsed.ok).tolist():
            i = int(todo[j])
            try:
                sid, new_key = self._resolve_new(tenant, batch, i, keys[i])
            except AppendError as error:
                result.add_error(error, int(weight[i]))
                continue
            sids[i] = sid
            if new_key is not None:
                new_ids.append(sid)
                new_keys.append(new_key)
        if repeated:
            sids[missing] = sids[owner]

    def _limit_new(
        self,
        tenant: TenantIndex,
        parsed: ParsedKeys,
        fast: I64,
        weight: I64,
        result: AppendResult,
    ) -> npt.NDArray[np.intp]:
        """Which of the valid new series ``fast`` the series limits let in (positions into
        ``fast``, in order), the rest reported per limit and metric in bulk.

        As if checked one by one in batch order: a metric's first series up to its room,
        then, over all metrics, the first series up to the room left in total and per tenant.
        """
        o = self.options
        count = len(fast)
        refused_by_metric = np.zeros(count, dtype=np.bool_)
        metrics, metric_of = parsed.metrics, parsed.metric_of[fast]
        if o.max_series_per_metric:
            room_of = np.array(
                [max(o.max_series_per_metric - tenant.series_of_metric(x), 0) for x in metrics],
                dtype=np.int64,
            )
            order = np.argsort(metric_of, kind="stable")
            group_starts = np.searchsorted(metric_of[order], np.arange(len(metrics)))
            rank = np.empty(count, dtype=np.int64)
            rank[order] = np.arange(count) - group_starts[metric_of[order]]
            refused_by_metric = rank >= room_of[metric_of]
        rest = np.flatnonzero(~refused_by_metric)
        room, limit = len(rest), ""
        if o.max_series_total:
            room, limit = o.max_series_total - self.index.num_series, "max_series_total"
        if o.max_series_per_tenant and o.max_series_per_tenant - tenant.num_series < room:
            room, limit = o.max_series_per_tenant - tenant.num_series, "max_series_per_tenant"
        room = max(room, 0)
        created, over = rest[:room], rest[room:]
        if len(over) or refused_by_metric.any():
            if refused_by_metric.any():
                by_metric = np.flatnonzero(refused_by_metric)
                self._refuse(
                    "max_series_per_metric", tenant, parsed, fast, by_metric,
                    metrics, metric_of, weight, result,
                )  # fmt: skip
            if len(over):
                self._refuse(limit, tenant, parsed, fast, over, metrics, metric_of, weight, result)
        return created

    def _refuse(
        self,
        limit: str,
        tenant: TenantIndex,
        parsed: ParsedKeys,
        fast: I64,
        refused: npt.NDArray[np.intp],
        metrics: list[str],
        metric_of: I64,
        weight: I64,
        result: AppendResult,
    ) -> None:
        """One :class:`LimitError` per metric for the new series a series limit refused."""
        o = self.options
        groups = metric_of[refused]
        series_per_metric = np.bincount(groups, minlength=len(metrics))
        samples_per_metric = np.bincount(groups, weights=weight[refused], minlength=len(metrics))
        first_of = np.full(len(metrics), -1, dtype=np.int64)
        first_of[groups[::-1]] = refused[::-1]  # the earliest refused series of each metric
        for g in np.flatnonzero(series_per_metric).tolist():
            metric = metrics[g]
            j = int(fast[first_of[g]])
            series = _render(decode_key(parsed.key(j)))
            n = int(series_per_metric[g])
            what = f"{n} new series of metric {metric!r} not created (first: {series})"
            if limit == "max_series_total":
                message = f"series limit max_series_total={o.max_series_total} reached; {what}"
            elif limit == "max_series_per_tenant":
                message = (
                    f"tenant {tenant.name!r} has max_series_per_tenant="
                    f"{o.max_series_per_tenant} series; {what}"
                )
            else:
                message = (
                    f"metric {metric!r} has max_series_per_metric={o.max_series_per_metric} "
                    f"series; {what}"
                )
            error = LimitError(limit, message, retryable=True, metric=metric, series=series)
            result.add_error(error, int(samples_per_metric[g]))

    def _resolve_new(
        self, tenant: TenantIndex, batch: SampleBatch, i: int, raw_key: bytes
    ) -> tuple[int, bytes | None]:
        """Id of batch series i not found by its key: validate, then find or create it."""
        sid = tenant.ids.get(raw_key)
        if sid is not None:
            return sid, None
        o = self.options
        pairs = [(n, v) for n, v in batch.pairs(i) if v or not n]  # empty value = no label
        problem = validate_pairs(pairs)
        if problem is not None:
            raise InvalidLabelsError(f"{problem} in series {_render(pairs)}", series=_render(pairs))
        metric = next(v for n, v in pairs if n == METRIC_NAME)
        for name, value in pairs:
            if o.max_label_name_length and len(name) > o.max_label_name_length:
                raise LimitError(
                    "max_label_name_length",
                    f"label name {name[:64]!r}... of metric {metric!r} is {len(name)} characters "
                    f"long, more than max_label_name_length={o.max_label_name_length}",
                    retryable=False,
                    metric=metric,
                )
            if o.max_label_value_length and len(value) > o.max_label_value_length:
                raise LimitError(
                    "max_label_value_length",
                    f"value of label {name!r} of metric {metric!r} is {len(value)} characters "
                    f"long, more than max_label_value_length={o.max_label_value_length}",
                    retryable=False,
                    metric=metric,
                )
        if o.max_label_names_per_series and len(pairs) > o.max_label_names_per_series:
            raise LimitError(
                "max_label_names_per_series",
                f"series of metric {metric!r} has {len(pairs)} labels, more than "
                f"max_label_names_per_series={o.max_label_names_per_series}",
                retryable=False,
                metric=metric,
            )
        ordered = sorted(pairs)
        key = encode_key(ordered)
        sid = tenant.ids.get(key)
        if sid is not None:
            return sid, None
        index = self.index
        if o.max_series_total and index.num_series >= o.max_series_total:
            series = _render(ordered)  # only for the message
            raise LimitError(
                "max_series_total",
                f"series limit max_series_total={o.max_series_total} reached; new series "
                f"{series} of metric {metric!r} not created",
                retryable=True,
                metric=metric,
                series=series,
            )
        if o.max_series_per_tenant and tenant.num_series >= o.max_series_per_tenant:
            series = _render(ordered)  # only for the message
            raise LimitError(
                "max_series_per_tenant",
                f"tenant {tenant.name!r} has max_series_per_tenant={o.max_series_per_tenant} "
                f"series; new series {series} of metric {metric!r} not created",
                retryable=True,
                metric=metric,
                series=series,
            )
        if o.max_series_per_metric and tenant.series_of_metric(metric) >= o.max_series_per_metric:
            series = _render(ordered)  # only for the message
            raise LimitError(
                "max_series_per_metric",
                f"metric {metric!r} has max_series_per_metric={o.max_series_per_metric} series; "
                f"new series {series} not created",
                retryable=True,
                metric=metric,
                series=series,
            )
        sid = index.add(tenant, key, ordered)
        return sid, key

    def _check_samples(self, batch: SampleBatch, sids: I64, result: AppendResult) -> Samples | None:
        """Accepted samples sorted by series (arrival order within); updates each series'
        newest timestamp/value. Caller holds the index lock."""
        if not len(batch):
            return None
        per_sample = sids[batch.series_index]
        valid = np.flatnonzero(per_sample >= 0)
        if not len(valid):
            return None
        g = per_sample[valid]
        order = np.argsort(g, kind="stable")
        g = g[order]
        t = batch.timestamps[valid][order]
        v = batch.values[valid][order]
        index = self.index
        starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
        prev = np.empty(len(t), dtype=np.int64)
        prev[1:] = t[:-1]
        prev[starts] = index.last_ts[g[starts]]
        bad = t <= prev
        keep = self._check_slow(g, t, v, starts, bad, result) if bad.any() else None
        if keep is not None:
            g, t, v = g[keep], t[keep], v[keep]
            if not len(g):
                return None
            starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
        ends = np.append(starts[1:], len(g)) - 1
        gs = g[starts]
        index.first_ts[gs] = np.minimum(index.first_ts[gs], np.minimum.reduceat(t, starts))
        newest = np.maximum.reduceat(t, starts)
        # in-order samples raise the newest timestamp; the value is the one at that time
        raise_mask = newest > index.last_ts[gs]
        at = ends.copy()
        if keep is not None and not bool(np.all(t[ends] == newest)):
            # out-of-order samples may end a segment: find the position of the maximum
            for j in np.flatnonzero(t[ends] != newest).tolist():
                seg = slice(int(starts[j]), int(ends[j]) + 1)
                at[j] = int(starts[j]) + int(np.argmax(t[seg]))
        index.last_ts[gs[raise_mask]] = newest[raise_mask]
        index.last_value[gs[raise_mask]] = v[at[raise_mask]]
        return g, t, v

    def _check_slow(
        self,
        g: I64,
        t: I64,
        v: F64,
        starts: npt.NDArray[np.intp],
        bad: npt.NDArray[np.bool_],
        result: AppendResult,
    ) -> npt.NDArray[np.bool_]:
        """Prometheus's rules, sample by sample, for the series with a suspicious sample."""
        window = self.options.out_of_order_window_ms
        keep = np.ones(len(t), dtype=np.bool_)
        bounds = np.append(starts, len(t))
        seg_of_bad = np.unique(np.searchsorted(bounds, np.flatnonzero(bad), side="right") - 1)
        bits = v.view(np.uint64)
        index = self.index
        duplicates = 0
        for s in seg_of_bad.tolist():
            a, b = int(bounds[s]), int(bounds[s + 1])
            sid = int(g[a])
            maxt = int(index.last_ts[sid])
            last_bits = int(index.last_value[sid : sid + 1].view(np.uint64)[0])
            ooo: list[int] = []
            dup: list[int] = []
            for j in range(a, b):
                tj = int(t[j])
                bj = int(bits[j])
                if tj > maxt:
                    maxt, last_bits = tj, bj
                elif tj == maxt:
                    keep[j] = False
                    if bj == last_bits:
                        duplicates += 1
                    else:
                        dup.append(tj)
                elif window and tj >= maxt - window:
                    pass  # accepted out of order
                else:
                    keep[j] = False
                    ooo.append(tj)
            if ooo or dup:
                key = index.keys[sid]
                series = str(key_labels(key)) if key is not None else f"#{sid}"
                metric = key_labels(key).name if key is not None else ""
                if ooo:
                    result.add_error(
                        OutOfOrderError(
                            f"out of order sample for series {series}: timestamps "
                            f"{ooo[:5]} are older than the newest sample",
                            series=series,
                            metric=metric,
                            timestamps=ooo,
                        ),
                        len(ooo),
                    )
                if dup:
                    result.add_error(
                        DuplicateSampleError(
                            f"duplicate sample for timestamp {dup[0]} of series {series}: "
                            "a different value is already stored",
                            series=series,
                            metric=metric,
                            timestamps=dup,
                        ),
                        len(dup),
                    )
        result.duplicates_ignored += duplicates
        return keep

    def _finish(self, pending: _Pending, lsn: int | None) -> None:
        try:
            if lsn is not None and pending.samples is not None:
                pending.result.lsn = lsn
                pending.result.accepted = len(pending.samples[1])
                if self.head.add(*pending.samples):
                    if self._thread is not None:
                        self._wake.set()
                    else:
                        with self._maintenance_lock:
                            self.head.encode_pending()
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()
        if lsn is not None:
            self._count(pending)

    def _count(self, pending: _Pending) -> None:
        result = pending.result
        if result.accepted:
            m.SAMPLES_APPENDED.labels(pending.tenant).inc(result.accepted)
        if pending.new_series:
            m.SERIES_CREATED.labels(pending.tenant).inc(pending.new_series)
            m.HEAD_SERIES.set(self.index.num_series)
        if result.duplicates_ignored:
            m.DUPLICATES_IGNORED.inc(result.duplicates_ignored)
        for reason, count in result.rejected.items():
            m.REJECTED_SAMPLES.labels(reason).inc(count)

    # -- metadata -------------------------------------------------------------------------

    def add_metadata(self, tenant: str, entries: Sequence[MetricMetadata]) -> None:
        """Store TYPE/HELP/UNIT (WAL first); unchanged entries write nothing."""
        wal = self._check_open()
        tenant = tenant or DEFAULT_TENANT
        known = self._metadata.get(tenant, {})
        changed = [e for e in entries if known.get(e.metric) != e]
        if not changed:
            return
        dicts = [
            {"metric": e.metric, "type": e.type, "help": e.help, "unit": e.unit} for e in changed
        ]
        with self._cond:
            while self._draining:
                self._cond.wait()
            self._inflight += 1
        try:
            wal.append([encode_metadata(tenant, dicts)])
            self._apply_metadata(tenant, dicts)
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _apply_metadata(self, tenant: str, entries: list[dict[str, Any]]) -> None:
        table = self._metadata.setdefault(tenant, {})
        for e in entries:
            table[e["metric"]] = MetricMetadata(
                e["metric"], e.get("type", "unknown"), e.get("help", ""), e.get("unit", "")
            )

    def metadata(
        self, metric: str | None = None, *, tenant: str = DEFAULT_TENANT, limit: int = 0
    ) -> dict[str, list[dict[str, str]]]:
        """TYPE/HELP/UNIT per metric in the form of Prometheus's /api/v1/metadata."""
        table = self._metadata.get(tenant, {})
        names = [metric] if metric is not None else sorted(table)
        out: dict[str, list[dict[str, str]]] = {}
        for name in names:
            entry = table.get(name)
            if entry is not None:
                out[name] = [entry.to_api()]
                if limit and len(out) >= limit:
                    break
        return out

    # -- reads ----------------------------------------------------------------------------

    def querier(self, tenant: str, mint_ms: int, maxt_ms: int) -> TSDBQuerier:
        """A reader of the tenant's data in [mint_ms, maxt_ms] (the PromQL ``Querier``)."""
        return TSDBQuerier(self, tenant or DEFAULT_TENANT, mint_ms, maxt_ms)

    def _sources(self, mint: int, maxt: int) -> tuple[list[ChunkSet], list[Samples]]:
        """Chunk sets and raw parts overlapping the range, oldest write first."""
        with self._lock:
            chunks = [b.chunks for b in self._blocks if b.max_time >= mint and b.min_time <= maxt]
            raw: list[Samples] = []
            for flushing in self._flushing:
                chunks.extend(flushing.chunks)
                raw.extend(flushing.raw)
            head_chunks, head_raw = self.head.snapshot()
        chunks.extend(head_chunks)
        raw.extend(head_raw)
        return chunks, raw

    def read(self, ids: I64, mint: int, maxt: int) -> Samples:
        """Samples of series ``ids`` (sorted) in [mint, maxt], merged and sorted by (id, t)."""
        chunks, raw = self._sources(mint, maxt)
        parts = [c.select(ids, mint, maxt) for c in chunks]
        parts.append(merge_sorted(*select_raw(raw, ids, mint, maxt)))
        parts = [p for p in parts if len(p[0])]
        if len(parts) > 1:
            interleaved = _interleave(parts, ids)
            if interleaved is not None:
                return interleaved
        return merge_sorted(*concat(parts))

    # -- flush, compaction, retention ------------------------------------------------------

    def flush(self) -> list[Block]:
        """Write the whole head to blocks, snapshot the index, checkpoint the WAL."""
        self._check_open()
        with self._maintenance_lock:
            return self._flush_locked()

    def _flush_locked(self) -> list[Block]:
        wal = self._wal
        assert wal is not None
        started = time.perf_counter()
        with self._cond:
            self._draining = True
            try:
                while self._inflight:
                    self._cond.wait()
                lsn = wal.last_lsn
                chunks, raw = self.head.take_all()
                flushing = _Flushing(chunks, raw)
                self._flushing.append(flushing)
                snapshot = self._snapshot_table()
            finally:
                self._draining = False
                self._cond.notify_all()
        blocks: list[Block] = []
        try:
            parts = [c.decode_all() for c in chunks] + raw
            gids, ts, vals = merge_sorted(*concat(parts))
            if len(ts):
                blocks = self._write_windows(gids, ts, vals, level=1)
            with self._lock:
                self._blocks.extend(blocks)
                self._flushing.remove(flushing)
            self._write_atomically(self.directory / SNAPSHOT, snapshot)
            self._write_metadata()
            if lsn > wal.checkpoint_lsn:
                wal.checkpoint(lsn)
        except BaseException:
            m.COMPACTION_FAILURES.inc()
            with self._lock:  # keep the data queryable and in the head: nothing is lost
                if flushing in self._flushing:
                    self._flushing.remove(flushing)
                    self._blocks = [b for b in self._blocks if b not in blocks]
                    for c in chunks:
                        g, t, v = c.decode_all()
                        self.head.add(g, t, v)
                    for g, t, v in raw:
                        self.head.add(g, t, v)
            raise
        m.COMPACTIONS.labels("head").inc()
        m.COMPACTION_DURATION.labels("head").observe(time.perf_counter() - started)
        self._update_gauges()
        return blocks

    def _snapshot_table(self) -> bytes:
        index = self.index
        with index.lock:
            ids = np.array([i for i, k in enumerate(index.keys) if k is not None], np.int64)
            keys = [index.keys[i] for i in ids.tolist()]
            tenants = [index.tenant_names[t] for t in index.tenant_of[ids].tolist()]
            table = pa.table(
                {
                    "series_id": pa.array(ids, pa.int64()),
                    "tenant": pa.array(tenants, pa.string()).dictionary_encode(),
                    "key": pa.array(keys, pa.binary()),
                    "first_ts": pa.array(index.first_ts[ids], pa.int64()),
                    "last_ts": pa.array(index.last_ts[ids], pa.int64()),
                    "last_value": pa.array(index.last_value[ids], pa.float64()),
                }
            ).replace_schema_metadata({"next_id": str(index.next_id)})
        sink = pa.BufferOutputStream()
        options = ipc.IpcWriteOptions(compression="zstd")
        with ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue())

    def _write_metadata(self) -> None:
        data = {
            tenant: [
                {"metric": e.metric, "type": e.type, "help": e.help, "unit": e.unit}
                for e in table.values()
            ]
            for tenant, table in self._metadata.items()
        }
        self._write_atomically(self.directory / METADATA, json.dumps(data).encode())

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_windows(self, gids: I64, ts: I64, vals: F64, *, level: int) -> list[Block]:
        """One block per block_duration window the samples fall in."""
        width = self.options.block_duration_ms
        windows = ts // width
        blocks = []
        for w in np.unique(windows).tolist():
            mask = windows == w
            blocks.append(
                self._write_block(
                    gids[mask], ts[mask], vals[mask], level, (w * width, (w + 1) * width)
                )
            )
        return blocks

    def _write_block(
        self, gids: I64, ts: I64, vals: F64, level: int, window: tuple[int, int]
    ) -> Block:
        o = self.options
        chunks = encode_chunkset(
            gids, ts, vals, group_samples=o.group_samples, level=o.compression_level
        )
        index = self.index
        with index.lock:
            ids = chunks.gids.tolist()
            keys = [index.keys[i] or b"" for i in ids]
            tenants = [index.tenant_names[t] for t in index.tenant_of[chunks.gids].tolist()]
        return Block.write(
            self.blocks_dir, chunks, tenants=tenants, keys=keys, level=level, window=window
        )

    def compact(self) -> int:
        """Merge blocks: same window first, then into windows x3 larger. Returns merges."""
        self._check_open()
        with self._maintenance_lock:
            return self._compact_locked()

    def _compact_locked(self) -> int:
        merges = 0
        o = self.options
        while True:
            with self._lock:
                blocks = list(self._blocks)
            plan = self._plan(blocks, o)
            if plan is None:
                return merges
            group, window = plan
            started = time.perf_counter()
            group.sort(key=lambda b: (b.meta.created_ms, b.meta.name))  # later writes win
            parts = [b.chunks.decode_all() for b in group]
            gids, ts, vals = merge_sorted(*concat(parts))
            level = max(b.meta.level for b in group) + 1
            merged = self._write_block(gids, ts, vals, level, window)
            with self._lock:
                self._blocks = [b for b in self._blocks if b not in group] + [merged]
            for b in group:
                b.delete()
            merges += 1
            m.COMPACTIONS.labels("blocks").inc()
            m.COMPACTION_DURATION.labels("blocks").observe(time.perf_counter() - started)
            self._update_gauges()

    @staticmethod
    def _plan(blocks: list[Block], o: TSDBOptions) -> tuple[list[Block], tuple[int, int]] | None:
        by_window: dict[tuple[int, int], list[Block]] = {}
        for b in blocks:
            by_window.setdefault((b.meta.window_start, b.meta.window_end), []).append(b)
        for window, group in sorted(by_window.items()):
            if len(group) > 1:
                return group, window
        if not blocks:
            return None
        newest = max(b.max_time for b in blocks)
        width = o.block_duration_ms * 3
        while width <= o.max_block_duration_ms:
            groups: dict[int, list[Block]] = {}
            for b in blocks:
                start = b.meta.window_start // width * width
                if b.meta.window_end <= start + width:  # fits in the aligned window
                    groups.setdefault(start, []).append(b)
            for start, group in sorted(groups.items()):
                if len(group) > 1 and start + width <= newest:
                    return group, (start, start + width)
            width *= 3
        return None

    def apply_retention(self, max_age_ms: int | None = None, max_bytes: int | None = None) -> int:
        """Drop whole blocks older than ``max_age_ms`` (before the newest sample) and the
        oldest blocks while all blocks take more than ``max_bytes``. Returns blocks dropped."""
        self._check_open()
        with self._maintenance_lock:
            with self._lock:
                blocks = sorted(self._blocks, key=lambda b: b.min_time)
            if not blocks:
                return 0
            newest = max(max(b.max_time for b in blocks), self.head.max_time)
            doomed: list[Block] = []
            reasons: list[str] = []
            if max_age_ms:
                for b in blocks:
                    if b.max_time < newest - max_age_ms:
                        doomed.append(b)
                        reasons.append("time")
            if max_bytes:
                total = sum(b.size_bytes for b in blocks if b not in doomed)
                for b in blocks:
                    if total <= max_bytes:
                        break
                    if b not in doomed:
                        doomed.append(b)
                        reasons.append("size")
                        total -= b.size_bytes
            if not doomed:
                return 0
            with self._lock:
                self._blocks = [b for b in self._blocks if b not in doomed]
            for b, reason in zip(doomed, reasons, strict=True):
                b.delete()
                m.BLOCKS_DELETED.labels(reason).inc()
            self._gc_series()
            self._update_gauges()
            return len(doomed)

    def _gc_series(self) -> None:
        """Forget series that have no sample left in any block or the head."""
        with self._lock:
            blocks = list(self._blocks)
            flushing = bool(self._flushing)
        if flushing:
            return
        index = self.index
        with self._cond:
            self._draining = True
            try:
                while self._inflight:
                    self._cond.wait()
                used = [np.zeros(0, np.int64)]
                used.extend(b.chunks.gids for b in blocks)
                chunks, raw = self.head.snapshot()
                used.extend(c.gids for c in chunks)
                used.extend(np.unique(r[0]) for r in raw)
                alive = np.unique(np.concatenate(used))
                with index.lock:
                    known = np.array(
                        [i for i, k in enumerate(index.keys) if k is not None], np.int64
                    )
                    doomed = np.setdiff1d(known, alive, assume_unique=True)
                    # series created but never given a sample stay (they may get one soon)
                    doomed = doomed[index.last_ts[doomed] != NO_TIME]
                    removed = index.remove(doomed)
            finally:
                self._draining = False
                self._cond.notify_all()
        if removed:
            m.SERIES_REMOVED.inc(removed)
            m.HEAD_SERIES.set(index.num_series)

    def maintenance(self) -> None:
        """Encode head buffers; flush, compact and apply retention when due."""
        with self._maintenance_lock:
            if not self._open:
                return
            self.head.encode_pending()
            o = self.options
            head = self.head
            span = head.max_time - head.min_time if head.max_time >= head.min_time else 0
            if span >= o.block_duration_ms * 3 // 2 or head.num_samples >= o.head_max_samples:
                self._flush_locked()
            self._compact_locked()
        if self.options.retention_ms or self.options.retention_bytes:
            self.apply_retention(
                self.options.retention_ms or None, self.options.retention_bytes or None
            )
        self._update_gauges()

    def _maintenance_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_MAINTENANCE_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.maintenance()
            except Exception:
                m.COMPACTION_FAILURES.inc()
                logger.exception("TSDB maintenance failed; will retry")
                self._stop.wait(5.0)

    def _update_gauges(self) -> None:
        with self._lock:
            blocks = list(self._blocks)
        m.BLOCKS.set(len(blocks))
        m.BLOCK_BYTES.set(sum(b.size_bytes for b in blocks))
        m.HEAD_SERIES.set(self.index.num_series)
        m.HEAD_SAMPLES.set(self.head.num_samples)
        m.HEAD_BYTES.set(self.head.nbytes)

    # -- status ---------------------------------------------------------------------------

    @property
    def blocks(self) -> list[Block]:
        with self._lock:
            return sorted(self._blocks, key=lambda b: b.min_time)

    def stats(self, tenant: str = DEFAULT_TENANT, limit: int = 10) -> dict[str, Any]:
        """The data of Prometheus's /api/v1/status/tsdb for one tenant."""
        index = self.index
        t = index.tenants.get(tenant)
        by_metric: list[tuple[str, int]] = []
        value_counts: list[tuple[str, int]] = []
        memory: list[tuple[str, int]] = []
        pairs: list[tuple[str, int]] = []
        num_pairs = 0
        num_series = 0
        if t is not None:
            with index.lock:
                num_series = t.num_series
                for name, values in t.postings.items():
                    value_counts.append((name, len(values)))
                    num_pairs += len(values)
                    size = 0
                    for value, members in values.items():
                        count = len(members)
                        size += len(value.encode()) * count
                        pairs.append((f"{name}={value}", count))
                        if name == METRIC_NAME:
                            by_metric.append((value, count))
                    memory.append((name, size))

        def top(items: list[tuple[str, int]]) -> list[dict[str, Any]]:
            items.sort(key=lambda kv: (-kv[1], kv[0]))
            return [{"name": k, "value": v} for k, v in items[:limit]]

        head = self.head
        empty = head.max_time < head.min_time
        return {
            "headStats": {
                "numSeries": num_series,
                "numLabelPairs": num_pairs,
                "chunkCount": head.num_chunks,
                "minTime": 0 if empty else head.min_time,
                "maxTime": 0 if empty else head.max_time,
            },
            "seriesCountByMetricName": top(by_metric),
            "labelValueCountByLabelName": top(value_counts),
            "memoryInBytesByLabelName": top(memory),
            "seriesCountByLabelValuePair": top(pairs),
        }


def _interleave(parts: list[Samples], ids: I64) -> Samples | None:
    """Parts each sorted by (id, time) put together without sorting: ordered by their first
    timestamp, each part's run of a series goes after the earlier parts' runs. That is the
    (id, time) order when every series' parts follow each other in time (blocks of disjoint
    windows, head chunks of in-order appends); None (``parts`` untouched) when they overlap,
    to merge and sort. Otherwise ``parts`` is emptied as it is copied, so each part's memory
    can go as soon as it has been copied."""
    if len(ids) == 1:  # one series: its parts only need to follow each other in time
        parts.sort(key=lambda p: int(p[1][0]))
        if any(int(a[1][-1]) >= int(b[1][0]) for a, b in pairwise(parts)):
            return None
        return concat(parts)
    parts.sort(key=lambda p: int(p[1].min()))
    lefts = [np.searchsorted(p[0], ids, "left") for p in parts]
    rights = [np.searchsorted(p[0], ids, "right") for p in parts]
    counts = np.stack([r - lo for r, lo in zip(rights, lefts, strict=True)])
    # every series' run in a part must start after its runs in the earlier parts ended
    newest = np.full(len(ids), np.iinfo(np.int64).min)
    for (_, p_ts, _), lo, hi, n in zip(parts, lefts, rights, counts, strict=True):
        has = n > 0
        if np.any(p_ts[lo[has]] <= newest[has]):
            return None
        newest[has] = p_ts[hi[has] - 1]
    before = np.cumsum(counts, axis=0) - counts  # per part and series: samples of earlier parts
    series_start = np.cumsum(counts.sum(axis=0)) - counts.sum(axis=0)
    total = int(counts.sum())
    gids = np.empty(total, np.int64)
    ts = np.empty(total, np.int64)
    vals = np.empty(total, np.float64)
    for n, earlier in zip(counts, before, strict=True):
        p_gids, p_ts, p_vals = parts.pop(0)
        dest = ranges(series_start + earlier, n)
        gids[dest], ts[dest], vals[dest] = p_gids, p_ts, p_vals
        del p_gids, p_ts, p_vals, dest
    return gids, ts, vals


class TSDBQuerier:
    """Reads one tenant's series in a time range; implements the PromQL ``Querier``."""

    def __init__(self, db: TSDB, tenant: str, mint_ms: int, maxt_ms: int) -> None:
        self.db = db
        self.tenant = tenant
        self.mint = mint_ms
        self.maxt = maxt_ms

    def _ids(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> I64:
        index = self.db.index
        ids = index.match(self.tenant, matchers)
        if not len(ids):
            return ids
        with index.lock:
            first = index.first_ts[ids]
            last = index.last_ts[ids]
        alive: I64 = ids[(first <= maxt) & (last >= mint) & (first != NO_DATA)]
        return alive

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[SeriesData]:
        """Series matching all matchers with their samples in [start_ms, end_ms], sorted by
        labels; StaleNaN markers are returned as stored."""
        labels, ts, vals, offsets = self.select_flat(matchers, start_ms, end_ms)
        bounds = offsets.tolist()
        return [
            SeriesData(lbl, ts[a:b], vals[a:b])
            for lbl, a, b in zip(labels, bounds[:-1], bounds[1:], strict=True)
        ]

    def select_flat(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> tuple[list[Labels], I64, F64, I64]:
        """`select` as flat arrays: series in label order, series i owning
        ``ts[offsets[i]:offsets[i + 1]]`` (the engine's ``FlatQuerier``; no object per series)."""
        mint, maxt = max(start_ms, self.mint), min(end_ms, self.maxt)
        ids = self._ids(matchers, mint, maxt) if maxt >= mint else np.zeros(0, np.int64)
        gids, ts, vals = self.db.read(ids, mint, maxt) if len(ids) else _EMPTY_SAMPLES
        if not len(gids):
            return [], ts, vals, np.zeros(1, np.int64)
        starts = np.concatenate(([0], np.flatnonzero(gids[1:] != gids[:-1]) + 1))
        offsets = np.append(starts, len(gids)).astype(np.int64)
        series_ids = gids[starts].tolist()
        del gids  # 8 bytes a sample: gone before the copies below
        index = self.db.index
        labels_of = index.labels
        labels = [labels_of(g) for g in series_ids]
        keys: Sequence[Any] | None = index.order_keys(series_ids)
        if keys is None:
            keys = [lbl.items() for lbl in labels]
        # Ids follow creation order, which is often label order already: check before sorting.
        if any(a > b for a, b in pairwise(keys)):
            order = sorted(range(len(labels)), key=keys.__getitem__)
            lengths = np.diff(offsets)[order]
            idx = ranges(offsets[:-1][order], lengths)
            ts = ts[idx]  # one column at a time: a single extra copy alive at once
            vals = vals[idx]
            del idx
            labels = [labels[i] for i in order]
            offsets = np.zeros(len(labels) + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
        return labels, ts, vals, offsets

    def series(self, matchers: Sequence[Matcher]) -> list[Labels]:
        """Label sets of the matching series with data in the querier's range."""
        ids = self._ids(matchers, self.mint, self.maxt)
        labels_of = self.db.index.labels
        return sorted((labels_of(i) for i in ids.tolist()), key=lambda lab: lab.items())

    def label_names(self, matchers: Sequence[Matcher] = ()) -> list[str]:
        ids = self._ids(matchers, self.mint, self.maxt)
        tenant = self.db.index.tenants.get(self.tenant)
        if tenant is None or not len(ids):
            return []
        if len(ids) == tenant.num_series:
            with self.db.index.lock:
                return sorted(tenant.postings)
        names: set[str] = set()
        keys = self.db.index.keys
        for i in ids.tolist():
            key = keys[i]
            if key is not None:
                names.update(n for n, _ in decode_key(key))
        return sorted(names)

    def label_values(self, name: str, matchers: Sequence[Matcher] = ()) -> list[str]:
        ids = self._ids(matchers, self.mint, self.maxt)
        tenant = self.db.index.tenants.get(self.tenant)
        if tenant is None or not len(ids):
            return []
        index = self.db.index
        if len(ids) == tenant.num_series:
            with index.lock:
                return sorted(tenant.postings.get(name, {}))
        with index.lock:
            values = tenant.postings.get(name, {})
            found = [
                v
                for v, members in values.items()
                if len(np.intersect1d(np.frombuffer(members, np.int64), ids, True))
            ]
        return sorted(found)
