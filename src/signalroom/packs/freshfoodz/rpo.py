"""Differentiated RTO/RPO per data class (seeds 000/002: lead protection < 1 h, archive < 24 h).

The newest good recovery point of each data class arrives as
``backup_last_success_timestamp_seconds{data_class}`` (or
``replication_last_success_timestamp_seconds``), from a SQL source (a ``timestamptz`` column
becomes Unix seconds) or pushed by the backup job. This module writes the objectives as series
(``backup_rpo_objective_seconds`` / ``backup_rto_objective_seconds``) so the rules in
``rules/rpo.yml`` compare against them, and evaluates the same classification in Python
(:func:`classify`) for reports and tests. "At risk" means the recovery point's age is above
80 % of the RPO, "breached" above 100 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from signalroom.alerting.config import Duration
from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.tsdb import TSDB, AppendResult, MetricMetadata, SampleBatch

__all__ = [
    "AT_RISK_RATIO",
    "DEFAULT_OBJECTIVES",
    "DataClassObjective",
    "Freshness",
    "classify",
    "objective_series",
    "publish_objectives",
    "write_objectives",
]

AT_RISK_RATIO = 0.8

State = Literal["ok", "at_risk", "breached", "missing"]


class DataClassObjective(BaseModel):
    """Recovery objectives of one data class (``rpo``: data loss tolerated, ``rto``: time to
    restore)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_class: str
    rpo: Duration
    rto: Duration


DEFAULT_OBJECTIVES = (
    DataClassObjective(
        data_class="lead_protection", rpo=timedelta(hours=1), rto=timedelta(hours=1)
    ),
    DataClassObjective(data_class="archive", rpo=timedelta(hours=24), rto=timedelta(hours=24)),
)

METADATA = (
    MetricMetadata("backup_rpo_objective_seconds", "gauge", "Recovery point objective"),
    MetricMetadata("backup_rto_objective_seconds", "gauge", "Recovery time objective"),
)


@dataclass(frozen=True)
class Freshness:
    """How old the newest recovery point of a data class is, against its RPO."""

    data_class: str
    age: timedelta | None
    ratio: float | None
    state: State


def classify(
    last_success: Mapping[str, datetime],
    now: datetime,
    objectives: Iterable[DataClassObjective] = DEFAULT_OBJECTIVES,
) -> dict[str, Freshness]:
    """The state of each data class with an objective, as the rules compute it."""
    out: dict[str, Freshness] = {}
    for obj in objectives:
        last = last_success.get(obj.data_class)
        if last is None:
            out[obj.data_class] = Freshness(obj.data_class, None, None, "missing")
            continue
        age = now - last
        ratio = age / obj.rpo
        state: State = "breached" if ratio > 1 else "at_risk" if ratio > AT_RISK_RATIO else "ok"
        out[obj.data_class] = Freshness(obj.data_class, age, ratio, state)
    return out


def objective_series(
    objectives: Iterable[DataClassObjective] = DEFAULT_OBJECTIVES,
) -> list[tuple[Labels, float]]:
    out: list[tuple[Labels, float]] = []
    for obj in objectives:
        for name, value in (
            ("backup_rpo_objective_seconds", obj.rpo),
            ("backup_rto_objective_seconds", obj.rto),
        ):
            labels = Labels({METRIC_NAME: name, "data_class": obj.data_class})
            out.append((labels, value.total_seconds()))
    return out


async def write_objectives(
    tsdb: TSDB,
    tenant: str,
    at: datetime,
    objectives: Iterable[DataClassObjective] = DEFAULT_OBJECTIVES,
) -> AppendResult:
    """Append the objectives at ``at``; call it at least every few minutes (the rules read
    them with the usual 5-minute lookback)."""
    ts = int(at.timestamp() * 1000)
    batch = SampleBatch.from_series(
        (labels, [ts], [v]) for labels, v in objective_series(objectives)
    )
    tsdb.add_metadata(tenant, METADATA)
    return await tsdb.append_async(tenant, batch)


async def publish_objectives(
    tsdb: TSDB,
    tenant: str = "default",
    objectives: Iterable[DataClassObjective] = DEFAULT_OBJECTIVES,
    interval: timedelta = timedelta(minutes=1),
) -> None:
    """Write the objectives every ``interval`` until cancelled (run it as a task)."""
    import asyncio
    import logging

    objectives = list(objectives)
    while True:
        try:
            await write_objectives(tsdb, tenant, datetime.now(UTC), objectives)
        except Exception:  # a full disk must not end the loop
            logging.getLogger("signalroom.packs.freshfoodz").exception("RPO objectives")
        await asyncio.sleep(interval.total_seconds())
