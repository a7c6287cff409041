"""Which row groups of a segment file can hold a span a search asks for.

A search's conditions name a service, an operation, attribute pairs (``key=value`` in a span's
``attributes`` or ``resource``), an error status and durations. Files are sorted by trace id,
so every row group spans its whole hour and Parquet's min/max statistics cannot skip any of
these. Instead each row group gets a small Bloom filter over the keys its spans hold:

- ``hash(service)``, ``hash(service, operation)``,
- ``hash(service, key, value)`` for every top-level pair of ``attributes`` and ``resource``,
  with ``value`` as DuckDB's ``json_extract_string`` gives it (the text the search compares),
- the same keys again, salted, for spans with an error status, so ``error=true`` searches
  test "an error span of this service with this pair" rather than each part alone.

Keys are hashed by DuckDB, here and when a search builds its probe, so both sides agree on
every value's text. A row group whose filter lacks any key of the search (for every service
the search allows) cannot hold a matching span; the others are read. Bloom filters have no
false negatives; false positives only cost reading a row group.

Each filter is blocked: a key sets 4 bits inside one 64-bit word (about 1% false positives at
12 bits a key). A file's row groups share one width of 12 bits per distinct key of its
fullest row group, capped at ``MAX_BITS_PER_ROW`` (2 bytes a span, plus 24 bytes a row group).
When a file has more distinct keys than that pays for, the pairs of the attribute names with
the most distinct values are left out (``SearchSummary.unindexed``: a search for one of those
cannot rule anything out) rather than saturating every filter.

Entries are built in memory from the file (``SearchIndex.warm``, called by the store's
maintenance; about 2 µs of CPU a span) and dropped when their file leaves the store, like
:class:`TraceIndex`; a file not summarised yet is read whole, and so are rows still in the
buffer (not in a file yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from signalroom.traces.index import PerFileIndex
from signalroom.traces.model import STATUS_ERROR

__all__ = ["SearchIndex", "SearchProbe", "SearchSummary", "search_probe"]

U64 = np.ndarray[Any, np.dtype[np.uint64]]
I64 = np.ndarray[Any, np.dtype[np.int64]]

_BITS_PER_KEY = 12
MAX_BITS_PER_ROW = 16
_ERROR_SALT = np.uint64(0x5BD1E9955BD1E995)

# Keys of every span: the service, its operation and each attribute pair, with the error flag.
_KEYS_SQL = """
WITH spans AS (
    SELECT rg, coalesce(status_code = {error}, false) AS err, service::VARCHAR AS service,
           name::VARCHAR AS name, attributes, resource::VARCHAR AS resource
    FROM {source}
),
resources AS (SELECT DISTINCT rg, err, service, resource FROM spans WHERE resource IS NOT NULL)
SELECT DISTINCT rg, err, k, h FROM (
    SELECT rg, err, NULL::VARCHAR AS k, hash(service) AS h FROM spans
    UNION ALL SELECT rg, err, NULL, hash(service, name) FROM spans
    UNION ALL SELECT rg, err, j.key, hash(service, j.key, json_extract_string(j.value, '$'))
        FROM spans, json_each(spans.attributes) AS j
    UNION ALL SELECT rg, err, j.key, hash(service, j.key, json_extract_string(j.value, '$'))
        FROM resources, json_each(resources.resource) AS j
)
"""
_KEY_COLUMNS = ["service", "name", "status_code", "attributes", "resource"]


def _mix(values: U64) -> U64:
    """A 64-bit finaliser (splitmix64's), so every bit of a key is as good as any other."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def _error_variant(keys: U64) -> U64:
    return _mix(keys ^ _ERROR_SALT)


def _word_and_mask(keys: U64, width: int) -> tuple[I64, U64]:
    """The word of a ``width``-word filter a key lives in, and the 4 bits it sets there."""
    word = ((keys >> np.uint64(32)) * np.uint64(width)) >> np.uint64(32)
    one = np.uint64(1)
    mask = np.zeros(len(keys), np.uint64)
    for shift in (0, 6, 12, 18):
        mask |= one << ((keys >> np.uint64(shift)) & np.uint64(63))
    return word.astype(np.int64), mask


@dataclass(frozen=True)
class SearchSummary:
    """What the search index knows of one file."""

    filters: U64
    """Bloom filter words, one row of ``width`` words per row group."""
    rows: I64
    """Rows of each row group."""
    min_duration: I64
    max_duration: I64
    services: frozenset[str]
    unindexed: frozenset[str] = frozenset()
    """Attribute names whose pairs are not in the filters (too many distinct values)."""

    @property
    def nbytes(self) -> int:
        return int(
            self.filters.nbytes + self.rows.nbytes + self.min_duration.nbytes
            + self.max_duration.nbytes
            + sum(len(s) + 49 for s in self.services | self.unindexed)
        )  # fmt: skip

    def holds(self, keys: U64) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Row groups whose filter holds every one of ``keys``."""
        found = np.ones(len(self.rows), np.bool_)
        if not len(keys):
            return found
        words, masks = _word_and_mask(keys, self.filters.shape[1])
        for word, mask in zip(words.tolist(), masks.tolist(), strict=True):
            column = self.filters[:, word]
            found &= (column & np.uint64(mask)) == np.uint64(mask)
        return found


@dataclass(frozen=True)
class SearchProbe:
    """The keys a search needs, per service it allows: a row group may hold a match only if
    its filter holds every key of at least one of those services."""

    keys: Mapping[str, U64]
    names: tuple[str | None, ...] = ()
    """The attribute name of each key (None: the service or operation key)."""
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None

    def row_groups(self, summary: SearchSummary) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which row groups of the summarised file may hold a matching span."""
        candidates = np.zeros(len(summary.rows), np.bool_)
        usable = np.array([name not in summary.unindexed for name in self.names], np.bool_)
        for service in summary.services.intersection(self.keys):
            keys = self.keys[service]
            candidates |= summary.holds(keys[usable] if len(usable) else keys)
        if self.min_duration_ns is not None:
            candidates &= summary.max_duration >= self.min_duration_ns
        if self.max_duration_ns is not None:
            candidates &= summary.min_duration <= self.max_duration_ns
        return candidates


def search_probe(
    connection: duckdb.DuckDBPyConnection,
    services: Iterable[str],
    operation: str | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    error: bool = False,
    min_duration_ns: int | None = None,
    max_duration_ns: int | None = None,
) -> SearchProbe:
    """The probe of a search: the index keys a matching span of each allowed service has
    (its service and operation, each attribute pair, as an error span when ``error``)."""
    names = sorted(set(services))
    parts = ["hash(s)"]
    key_names: list[str | None] = [None]
    params: list[Any] = []
    if operation is not None:
        parts.append("hash(s, ?::VARCHAR)")
        key_names.append(None)
        params.append(operation)
    for key, value in pairs:
        parts.append("hash(s, ?::VARCHAR, ?::VARCHAR)")
        key_names.append(key)
        params += [key, value]
    out: dict[str, U64] = {}
    if names:
        sql = f"SELECT s, [{', '.join(parts)}] FROM unnest(?::VARCHAR[]) AS t(s)"
        for service, hashes in connection.execute(sql, [*params, names]).fetchall():
            keys = _mix(np.array(hashes, np.uint64))
            out[service] = _error_variant(keys) if error else keys
    return SearchProbe(out, tuple(key_names), min_duration_ns, max_duration_ns)


def _statistics(metadata: pq.FileMetaData, column: str) -> tuple[I64, I64]:
    """Per row group min and max of an integer column, open-ended where not recorded."""
    groups = metadata.num_row_groups
    low = np.full(groups, np.iinfo(np.int64).min, np.int64)
    high = np.full(groups, np.iinfo(np.int64).max, np.int64)
    index = metadata.schema.to_arrow_schema().get_field_index(column)
    if index < 0:
        return low, high
    for group in range(groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is not None and stats.has_min_max:
            low[group], high[group] = int(stats.min), int(stats.max)
    return low, high


def summarise(
    path: Path,
    connection: duckdb.DuckDBPyConnection,
    metadata: pq.FileMetaData | None = None,
    max_bits_per_row: int = MAX_BITS_PER_ROW,
) -> SearchSummary:
    """Build the summary of one segment file (reads its key columns once), its filters
    at most ``max_bits_per_row`` bits a row."""
    if metadata is None:
        metadata = pq.read_metadata(path)
    sizes = np.array(
        [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)], np.int64
    )
    if len(sizes) <= 1 or bool((sizes[:-1] == sizes[0]).all()):
        # the usual case (the writer cuts every row group but the last at one size): DuckDB
        # reads the file itself, about a quarter cheaper than through an Arrow table
        quoted = "'" + str(path).replace("'", "''") + "'"
        group_rows = int(sizes[0]) if len(sizes) and sizes[0] else 1
        source = (
            f"(SELECT *, (file_row_number // {group_rows})::INTEGER AS rg"
            f" FROM read_parquet({quoted}, file_row_number = true))"
        )
    else:
        table = pq.ParquetFile(path, metadata=metadata).read(columns=_KEY_COLUMNS)
        groups = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        connection.register("indexed_rows", table.append_column("rg", pa.array(groups)))
        source = "indexed_rows"
    try:
        keys = connection.sql(_KEYS_SQL.format(error=STATUS_ERROR, source=source)).to_arrow_table()
        services = connection.sql(
            f"SELECT DISTINCT service::VARCHAR AS s FROM {source} WHERE service IS NOT NULL"
        ).to_arrow_table()
    finally:
        if source == "indexed_rows":
            connection.unregister("indexed_rows")
    budget = int(sizes.sum()) * max_bits_per_row // _BITS_PER_KEY
    keys, unindexed = _within_budget(keys, budget)
    group = keys["rg"].to_numpy().astype(np.int64)
    error = keys["err"].to_numpy(zero_copy_only=False).astype(np.bool_)
    hashes = _mix(keys["h"].to_numpy().astype(np.uint64))
    per_group = np.bincount(group, minlength=len(sizes)) + np.bincount(
        group[error], minlength=len(sizes)
    )
    wanted = int(per_group.max(initial=0)) * _BITS_PER_KEY
    cap = int(sizes.max(initial=0)) * max_bits_per_row
    width = max(1, -(-min(wanted, cap) // 64))
    all_keys = np.concatenate([hashes, _error_variant(hashes[error])])
    all_groups = np.concatenate([group, group[error]])
    words, masks = _word_and_mask(all_keys, width)
    filters = np.zeros(len(sizes) * width, np.uint64)
    np.bitwise_or.at(filters, all_groups * width + words, masks)
    low, high = _statistics(metadata, "duration")
    return SearchSummary(
        filters.reshape(len(sizes), width),
        sizes,
        low,
        high,
        frozenset(services["s"].to_pylist()),
        unindexed,
    )


def _within_budget(keys: pa.Table, budget: int) -> tuple[pa.Table, frozenset[str]]:
    """The keys to index: all when there are at most ``budget`` (an error span's count twice),
    else without the pairs of the attribute names with the most distinct values (ids, URLs),
    which would fill every filter and so make it useless for the rest. Returns the kept keys
    and the names left out."""
    if keys.num_rows + (pc.sum(keys["err"]).as_py() or 0) <= budget:
        return keys, frozenset()
    entries = keys.group_by("k").aggregate([("err", "count"), ("err", "sum")]).to_pylist()
    weight = {row["k"]: row["err_count"] + row["err_sum"] for row in entries}
    ranked = sorted(weight, key=lambda name: (name is not None, weight[name]))
    total, kept = 0, []
    for name in ranked:
        total += weight[name]
        if name is not None and total > budget:
            break
        kept.append(name)
    left_out = frozenset(name for name in ranked[len(kept) :] if name is not None)
    names = pa.array([name for name in kept if name is not None], pa.string())
    keep = pc.or_kleene(pc.is_null(keys["k"]), pc.is_in(keys["k"], names))
    return keys.filter(keep), left_out


class SearchIndex(PerFileIndex[SearchSummary | None]):
    """Search summaries of segment files (None: a file that could not be summarised)."""

    def __init__(self, max_bits_per_row: int = MAX_BITS_PER_ROW) -> None:
        super().__init__()
        self.max_bits_per_row = max_bits_per_row
        self._duckdb = duckdb.connect()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Memory the summaries take."""
        with self._lock:
            return sum(s.nbytes for s in self._entries.values() if s is not None)

    def get(self, path: Path) -> SearchSummary | None:
        """The summary of ``path`` when built (None: read the whole file)."""
        with self._lock:
            return self._entries.get(path)

    def build(self, path: Path, metadata: pq.FileMetaData | None = None) -> SearchSummary | None:
        """Summarise ``path`` now (None when its attributes cannot be parsed: a search then
        reads it whole). Raises FileNotFoundError when a compaction removed the file."""
        with self._lock:
            connection = self._duckdb.cursor()
        try:
            summary: SearchSummary | None = summarise(
                path, connection, metadata, self.max_bits_per_row
            )
        except duckdb.IOException as exc:
            raise FileNotFoundError(str(path)) from exc
        except duckdb.Error:
            summary = None
        finally:
            connection.close()
        with self._lock:
            self._entries[path] = summary
        return summary

    def warm(
        self,
        paths: Iterable[Path],
        footer: Callable[[Path], pq.FileMetaData] | None = None,
    ) -> int:
        """Summarise files not summarised yet (``footer`` gives a file's cached footer);
        returns how many."""
        built = 0
        for path in paths:
            with self._lock:
                if path in self._entries:
                    continue
            try:
                self.build(path, footer(path) if footer is not None else None)
            except FileNotFoundError:
                continue
            built += 1
        return built
