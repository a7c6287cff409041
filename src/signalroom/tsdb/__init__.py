"""Metric time series storage: series ids, label index, head, WAL, blocks, limits."""

from signalroom.tsdb.batch import AppendResult, MetricMetadata, SampleBatch
from signalroom.tsdb.block import Block, BlockMeta
from signalroom.tsdb.db import TSDB, TSDBQuerier
from signalroom.tsdb.errors import (
    AppendError,
    DuplicateSampleError,
    InvalidLabelsError,
    LimitError,
    OutOfBoundsError,
    OutOfOrderError,
    TSDBError,
)
from signalroom.tsdb.options import TSDBOptions

__all__ = [
    "TSDB",
    "AppendError",
    "AppendResult",
    "Block",
    "BlockMeta",
    "DuplicateSampleError",
    "InvalidLabelsError",
    "LimitError",
    "MetricMetadata",
    "OutOfBoundsError",
    "OutOfOrderError",
    "SampleBatch",
    "TSDBError",
    "TSDBOptions",
    "TSDBQuerier",
]
