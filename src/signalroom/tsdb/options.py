"""Settings of the time-series store: limits, block sizes, out-of-order window, WAL policy."""

from __future__ import annotations

from dataclasses import dataclass

from signalroom.storage.wal import FsyncPolicy

__all__ = ["HOUR_MS", "TSDBOptions"]

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TSDBOptions:
    """Options of :class:`signalroom.tsdb.TSDB`. A limit of 0 means "no limit".

    Series limits (``max_series_*``) answer 429 (retryable: room comes back as series go away);
    everything else that rejects data answers 400.
    """

    # data layout
    block_duration_ms: int = 2 * HOUR_MS
    max_block_duration_ms: int = 31 * 24 * HOUR_MS
    head_chunk_samples: int = 1 << 18  # raw samples buffered before they are encoded
    head_max_samples: int = 60_000_000  # flush the head to a block beyond this many samples
    group_samples: int = 1 << 16  # samples per independently decodable group in a chunk set
    head_merge_span_ms: int = 30 * 60_000  # head chunk sets are merged up to this time span
    compression_level: int = 3
    # out-of-order samples: accepted when at most this much older than the series' newest
    out_of_order_window_ms: int = 0
    # write-ahead log
    wal_fsync: FsyncPolicy = "batch"
    wal_segment_bytes: int = 64 * 2**20
    wal_batch_interval: float = 0.002
    # retention (applied by apply_retention(); maintenance() uses these)
    retention_ms: int = 15 * 24 * HOUR_MS
    retention_bytes: int = 0
    # limits
    max_series_total: int = 2_000_000
    max_series_per_tenant: int = 0
    max_series_per_metric: int = 0
    max_label_name_length: int = 1024
    max_label_value_length: int = 4096
    max_label_names_per_series: int = 64
    max_samples_per_request: int = 5_000_000

    def __post_init__(self) -> None:
        for name in (
            "block_duration_ms",
            "head_chunk_samples",
            "head_max_samples",
            "group_samples",
            "head_merge_span_ms",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"TSDBOptions.{name} must be > 0")
        if self.max_block_duration_ms < self.block_duration_ms:
            raise ValueError("max_block_duration_ms must be >= block_duration_ms")
        for name in (
            "out_of_order_window_ms",
            "retention_ms",
            "retention_bytes",
            "max_series_total",
            "max_series_per_tenant",
            "max_series_per_metric",
            "max_label_name_length",
            "max_label_value_length",
            "max_label_names_per_series",
            "max_samples_per_request",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"TSDBOptions.{name} must be >= 0")
