"""The store's own metrics (served on /metrics by prometheus_client's registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SAMPLES_APPENDED = Counter(
    "signalroom_tsdb_samples_appended_total", "Samples stored in the head.", ["tenant"]
)
REJECTED_SAMPLES = Counter(
    "signalroom_tsdb_rejected_samples_total",
    "Samples not stored, by reason (the limit's or rule's name).",
    ["reason"],
)
DUPLICATES_IGNORED = Counter(
    "signalroom_tsdb_duplicate_samples_ignored_total",
    "Samples identical to the stored one at the same timestamp, ignored as Prometheus does.",
)
SERIES_CREATED = Counter("signalroom_tsdb_series_created_total", "Series created.", ["tenant"])
SERIES_REMOVED = Counter(
    "signalroom_tsdb_series_removed_total", "Series forgotten after their data was dropped."
)
HEAD_SERIES = Gauge("signalroom_tsdb_head_series", "Series in the index (all tenants).")
HEAD_SAMPLES = Gauge("signalroom_tsdb_head_samples", "Samples held in memory by the head.")
HEAD_BYTES = Gauge("signalroom_tsdb_head_bytes", "Bytes of sample data held by the head.")
BLOCKS = Gauge("signalroom_tsdb_blocks", "Blocks on disk.")
BLOCK_BYTES = Gauge("signalroom_tsdb_blocks_bytes", "Bytes of blocks on disk.")
COMPACTIONS = Counter(
    "signalroom_tsdb_compactions_total",
    "Head flushes and block merges done.",
    ["kind"],
)
COMPACTION_FAILURES = Counter(
    "signalroom_tsdb_compaction_failures_total", "Head flushes or block merges that failed."
)
COMPACTION_DURATION = Histogram(
    "signalroom_tsdb_compaction_duration_seconds",
    "Duration of head flushes and block merges.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BLOCKS_DELETED = Counter(
    "signalroom_tsdb_blocks_deleted_total", "Blocks deleted by retention.", ["reason"]
)
WAL_REPLAY_SECONDS = Gauge(
    "signalroom_tsdb_wal_replay_duration_seconds", "Duration of the last WAL replay on open."
)
