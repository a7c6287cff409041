"""Product analytics over stored events, computed by DuckDB: trends, funnels, retention,
active users (DAU/WAU/MAU), stickiness, revenue, top products, and read-only SQL.

Every query runs on a fresh in-memory DuckDB connection whose ``events`` view covers the
tenant's Parquet files plus the buffer for the asked time range. Property values are read from
the JSON ``properties`` column. Names that end up in SQL (properties, intervals) are checked
against strict patterns; values are quoted literals.

With an :class:`~signalroom.events.index.EventIndex` (the service always has one unless
``events.index_max_rows`` is 0), funnels without step filters or breakdown and active users
run in NumPy on it (:mod:`signalroom.events.vectorised`) with the same results; the tests run
both engines.

Funnel semantics (documented where they differ from PostHog): ``ordered`` starts at each
user's first step-1 event in the range and takes, step by step, the first matching event after
the previous step within the conversion window (Mixpanel's rule; PostHog also tries later
starts). ``strict`` tries every step-1 event as a start and needs the steps as consecutive
events of the user. ``unordered`` counts the distinct steps done within the window after the
user's first event of any step. The breakdown value is the first step's (first touch).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb

from signalroom.events import vectorised
from signalroom.events.index import EventIndex
from signalroom.events.store import EventStore

__all__ = [
    "Analytics",
    "AnalyticsError",
    "FunnelStep",
    "TrendSeries",
    "parse_time",
]

Interval = Literal["hour", "day", "week", "month"]
_INTERVALS = ("hour", "day", "week", "month")
_PROPERTY = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$.\-]{0,199}$")
_RELATIVE = re.compile(r"^-(\d+)([hdwmy])$")
_DAY_NS = 86_400 * 10**9
# One funnel step's (users, average and median seconds from the previous step).
_StepStats = tuple[int, float | None, float | None]


class AnalyticsError(ValueError):
    """A query that cannot run as asked; the message names the parameter at fault."""


def parse_time(value: str | int | float | None, *, default: datetime, name: str) -> datetime:
    """An ISO date/time, epoch seconds, ``now`` or a relative ``-7d`` / ``-24h`` / ``-3m``."""
    now = datetime.now(UTC)
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    text = value.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match[1]), match[2]
        days = {
            "h": amount / 24,
            "d": amount,
            "w": 7 * amount,
            "m": 30 * amount,
            "y": 365 * amount,
        }[unit]
        return now - timedelta(days=days)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            raise AnalyticsError(f"{name}: {value!r} is not a date, epoch or -7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return "'" + str(value).replace("'", "''") + "'"


def _prop(name: str, what: str = "property") -> str:
    if not _PROPERTY.match(name):
        raise AnalyticsError(f"{what} {name!r}: use 1-200 of A-Z a-z 0-9 _ $ . -")
    return "'$.\"" + name.replace('"', "") + "\"'"


def _prop_expr(name: str, what: str = "property") -> str:
    return f"json_extract_string(properties, {_prop(name, what)})"


def _interval(value: str) -> str:
    if value not in _INTERVALS:
        raise AnalyticsError(f"interval {value!r}: use one of {', '.join(_INTERVALS)}")
    return value


def _buckets(start: datetime, end: datetime, interval: str) -> list[datetime]:
    """Bucket starts covering [start, end) the way date_trunc numbers them."""
    naive = start.astimezone(UTC).replace(tzinfo=None)
    if interval == "hour":
        cur = naive.replace(minute=0, second=0, microsecond=0)
    else:
        cur = naive.replace(hour=0, minute=0, second=0, microsecond=0)
        if interval == "week":
            cur -= timedelta(days=cur.weekday())
        elif interval == "month":
            cur = cur.replace(day=1)
    stop = end.astimezone(UTC).replace(tzinfo=None)
    out: list[datetime] = []
    while cur < stop and len(out) < 100_000:
        out.append(cur)
        if interval == "hour":
            cur += timedelta(hours=1)
        elif interval == "day":
            cur += timedelta(days=1)
        elif interval == "week":
            cur += timedelta(days=7)
        else:
            cur = (cur.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def _where_props(filters: dict[str, Any] | None) -> str:
    parts = []
    for key, value in (filters or {}).items():
        parts.append(f"{_prop_expr(key)} = {_lit(value)}")
    return "".join(f" AND {p}" for p in parts)


@dataclass(frozen=True)
class TrendSeries:
    """One line of a trend: ``math`` is total, dau (unique users), sum, avg, min or max."""

    event: str
    math: str = "total"
    property: str | None = None
    filters: dict[str, Any] | None = None


@dataclass(frozen=True)
class FunnelStep:
    event: str
    filters: dict[str, Any] | None = None


class Analytics:
    """Queries over one :class:`EventStore`. With an ``index``, funnels without step filters or
    breakdown and active users run on it in NumPy (:mod:`signalroom.events.vectorised`);
    everything else, and everything without one, runs in DuckDB."""

    def __init__(
        self, store: EventStore, *, threads: int = 2, index: EventIndex | None = None
    ) -> None:
        self.store = store
        self.threads = threads
        self.index = index

    def _connect(
        self, tenant: str, start: datetime | None, end: datetime | None
    ) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"threads": self.threads})
        con.execute("SET TimeZone='UTC'")
        self.store.register(con, tenant, _ns(start) if start else None, _ns(end) if end else None)
        return con

    def _range(
        self, date_from: Any, date_to: Any, default_days: int = 7
    ) -> tuple[datetime, datetime]:
        end = parse_time(date_to, default=datetime.now(UTC), name="date_to")
        start = parse_time(date_from, default=end - timedelta(days=default_days), name="date_from")
        if start >= end:
            raise AnalyticsError("date_from must be before date_to")
        return start, end

    # ------------------------------------------------------------------ trends

    def trends(
        self,
        tenant: str,
        series: Sequence[TrendSeries],
        *,
        interval: str = "day",
        date_from: Any = None,
        date_to: Any = None,
        breakdown: str | None = None,
        breakdown_limit: int = 25,
    ) -> dict[str, Any]:
        if not series:
            raise AnalyticsError("series: give at least one event")
        unit = _interval(interval)
        start, end = self._range(date_from, date_to)
        buckets = _buckets(start, end, unit)
        labels = [b.isoformat() + "Z" for b in buckets]
        index = {b: i for i, b in enumerate(buckets)}
        bv = _prop_expr(breakdown, "breakdown") if breakdown else "NULL"
        out = []
        con = self._connect(tenant, start, end)
        try:
            for s in series:
                agg = self._math(s)
                sql = (
                    f"SELECT date_trunc('{unit}', timestamp) AS b, {bv} AS bv, {agg} AS v "
                    f"FROM events WHERE event = {_lit(s.event)}{_where_props(s.filters)} "
                    "GROUP BY ALL"
                )
                rows = con.execute(sql).fetchall()
                per: dict[Any, list[float | None]] = {}
                totals: dict[Any, float] = {}
                for b, value, v in rows:
                    data = per.setdefault(value, [0.0] * len(buckets))
                    i = index.get(b)
                    if i is not None and v is not None:
                        data[i] = float(v)
                        totals[value] = totals.get(value, 0.0) + float(v)
                if not per:
                    per[None] = [0.0] * len(buckets)
                keep = sorted(per, key=lambda k: -totals.get(k, 0.0))[:breakdown_limit]
                for value in keep:
                    data = per[value]
                    out.append(
                        {
                            "event": s.event,
                            "math": s.math,
                            "property": s.property,
                            "breakdown_value": value,
                            "labels": labels,
                            "data": data,
                            "count": sum(x for x in data if x is not None),
                        }
                    )
        finally:
            con.close()
        return {
            "interval": unit,
            "date_from": start.isoformat(),
            "date_to": end.isoformat(),
            "result": out,
        }

    @staticmethod
    def _math(s: TrendSeries) -> str:
        if s.math == "total":
            return "count(*)"
        if s.math in ("dau", "unique_users"):
            return "count(DISTINCT user_id)"
        if s.math in ("sum", "avg", "min", "max", "median"):
            if not s.property:
                raise AnalyticsError(f"math {s.math!r} needs a property")
            return f"{s.math}(TRY_CAST({_prop_expr(s.property)} AS DOUBLE))"
        raise AnalyticsError(f"math {s.math!r}: use total, dau, sum, avg, min, max or median")

    # ------------------------------------------------------------------ funnels

    def funnel(
        self,
        tenant: str,
        steps: Sequence[FunnelStep],
        *,
        order: str = "ordered",
        window_s: float = 14 * 86_400,
        date_from: Any = None,
        date_to: Any = None,
        breakdown: str | None = None,
    ) -> dict[str, Any]:
        if len(steps) < 2:
            raise AnalyticsError("steps: a funnel needs at least two steps")
        if len(steps) > 30:
            raise AnalyticsError("steps: at most 30")
        if order not in ("ordered", "strict", "unordered"):
            raise AnalyticsError(f"order {order!r}: use ordered, strict or unordered")
        if window_s <= 0:
            raise AnalyticsError("conversion window must be positive")
        start, end = self._range(date_from, date_to, default_days=30)
        window = int(window_s * 1e9)
        if self.index is not None and breakdown is None and not any(s.filters for s in steps):
            fast = {
                "ordered": vectorised.ordered_funnel,
                "strict": vectorised.strict_funnel,
                "unordered": vectorised.unordered_funnel,
            }[order]
            stats = fast(self.index, tenant, [s.event for s in steps], window, _ns(start), _ns(end))
            return {
                "order": order,
                "window_seconds": window_s,
                "date_from": start.isoformat(),
                "date_to": end.isoformat(),
                **self._funnel_steps(steps, stats),
            }
        # events after the range still convert users who entered within it
        con = self._connect(tenant, start, end + timedelta(seconds=window_s))
        conds = [f"(event = {_lit(s.event)}{_where_props(s.filters)})" for s in steps]
        bv = _prop_expr(breakdown, "breakdown") if breakdown else "NULL::VARCHAR"
        names = sorted({s.event for s in steps})
        flags = ", ".join(f"{c} AS m{i}" for i, c in enumerate(conds))
        # Users are joined by a 64-bit hash of the id: integer keys make the joins several
        # times faster than strings (a collision needs ~4e9 users to become likely).
        base = (
            f"SELECT hash(user_id) AS user_id, epoch_ns(timestamp) AS t, {flags}, "
            f"CASE WHEN {conds[0]} THEN {bv} END AS bv FROM events "
            f"WHERE event IN ({', '.join(map(_lit, names))})"
        )
        start_ns, end_ns = _ns(start), _ns(end)
        n = len(steps)
        try:
            if order == "ordered":
                rows = self._ordered(con, base, steps, n, window, start_ns, end_ns)
            elif order == "strict":
                rows = self._strict(con, conds, bv, n, window, start_ns, end_ns)
            else:
                rows = self._unordered(con, base, n, window, start_ns, end_ns)
        finally:
            con.close()
        # rows: (bv, step index, users, avg seconds from previous, median seconds)
        empty: list[_StepStats] = [(0, None, None)] * n
        by_value: dict[Any, list[_StepStats]] = {}
        for value, k, users, avg_s, med_s in rows:
            by_value.setdefault(value, list(empty))[int(k)] = (int(users), avg_s, med_s)
        if breakdown is None:
            combined = by_value.get(None, empty)
            return {
                "order": order,
                "window_seconds": window_s,
                "date_from": start.isoformat(),
                "date_to": end.isoformat(),
                **self._funnel_steps(steps, combined),
            }
        all_steps: list[_StepStats] = [
            (sum(v[k][0] for v in by_value.values()), None, None) for k in range(n)
        ]
        return {
            "order": order,
            "window_seconds": window_s,
            "date_from": start.isoformat(),
            "date_to": end.isoformat(),
            **self._funnel_steps(steps, all_steps),
            "breakdown": [
                {"value": value, **self._funnel_steps(steps, data)}
                for value, data in sorted(by_value.items(), key=lambda kv: -kv[1][0][0])
            ],
        }

    @staticmethod
    def _funnel_steps(steps: Sequence[FunnelStep], data: Sequence[_StepStats]) -> dict[str, Any]:
        first = data[0][0]
        out = []
        for k, (step, (users, avg_s, med_s)) in enumerate(zip(steps, data, strict=True)):
            prev = data[k - 1][0] if k else users
            out.append(
                {
                    "index": k,
                    "event": step.event,
                    "count": users,
                    "conversion_from_first": users / first if first else 0.0,
                    "conversion_from_previous": users / prev if prev else 0.0,
                    "dropped_off": (prev - users) if k else 0,
                    "average_time_to_convert_s": avg_s,
                    "median_time_to_convert_s": med_s,
                }
            )
        last = data[-1][0]
        return {"steps": out, "conversion_rate": last / first if first else 0.0}

    @staticmethod
    def _ordered(
        con: duckdb.DuckDBPyConnection,
        base: str,
        steps: Sequence[FunnelStep],
        n: int,
        window: int,
        start_ns: int,
        end_ns: int,
    ) -> list[tuple[Any, ...]]:
        ctes = [
            f"e AS MATERIALIZED ({base})",
            "s0 AS (SELECT user_id, min(t) AS t0, arg_min(bv, t) AS bv FROM e "
            f"WHERE m0 AND t >= {start_ns} AND t < {end_ns} GROUP BY user_id)",
        ]
        # Step k is the user's first step-k event at or after step k-1: an ASOF join (a sorted
        # merge) finds it; when even that one is outside the window, no later one is inside.
        for k in range(1, n):
            cmp = ">" if steps[k].event == steps[k - 1].event else ">="
            ctes.append(
                f"s{k} AS (SELECT s.user_id, s.t0, s.bv, x.t AS t{k}, x.t - s.t{k - 1} AS d "
                f"FROM s{k - 1} s ASOF JOIN (SELECT user_id, t FROM e WHERE m{k}) x "
                f"ON x.user_id = s.user_id AND x.t {cmp} s.t{k - 1} "
                f"WHERE x.t <= s.t0 + {window})"
            )
        parts = ["SELECT bv, 0 AS k, count(*), NULL::DOUBLE, NULL::DOUBLE FROM s0 GROUP BY bv"]
        for k in range(1, n):
            parts.append(
                f"SELECT bv, {k}, count(*), avg(d) / 1e9, median(d) / 1e9 FROM s{k} GROUP BY bv"
            )
        sql = "WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(parts)
        return con.execute(sql).fetchall()

    @staticmethod
    def _strict(
        con: duckdb.DuckDBPyConnection,
        conds: list[str],
        bv: str,
        n: int,
        window: int,
        start_ns: int,
        end_ns: int,
    ) -> list[tuple[Any, ...]]:
        leads = ", ".join(
            f"lead({conds[k]}, {k}) OVER w AS l{k}, lead(epoch_ns(timestamp), {k}) OVER w AS lt{k}"
            for k in range(1, n)
        )
        levels = ["1"]
        chain = ""
        for k in range(1, n):
            chain += f" AND coalesce(l{k}, false) AND lt{k} <= t + {window}"
            levels.append(f"CASE WHEN true{chain} THEN 1 ELSE 0 END")
        sql = (
            "WITH users AS (SELECT DISTINCT user_id FROM events WHERE "
            f"{conds[0]} AND epoch_ns(timestamp) >= {start_ns} "
            f"AND epoch_ns(timestamp) < {end_ns}), "
            f"seq AS (SELECT user_id, epoch_ns(timestamp) AS t, {conds[0]} AS m0, "
            f"CASE WHEN {conds[0]} THEN {bv} END AS bv, {leads} "
            "FROM events WHERE user_id IN (SELECT user_id FROM users) "
            "WINDOW w AS (PARTITION BY user_id ORDER BY timestamp, event_id)), "
            f"starts AS (SELECT user_id, t, bv, {' + '.join(levels)} AS level, "
            f"lt{n - 1} - t AS d FROM seq WHERE m0 AND t >= {start_ns} AND t < {end_ns}), "
            "best AS (SELECT user_id, max(level) AS level, arg_max(bv, level * 1e18 - t) AS bv, "
            "arg_max(d, level * 1e18 - t) AS d FROM starts GROUP BY user_id) "
            "SELECT bv, k, count(*), "
            f"avg(CASE WHEN k = {n - 1} THEN d END) / 1e9, "
            f"median(CASE WHEN k = {n - 1} THEN d END) / 1e9 "
            f"FROM best, range({n}) r(k) WHERE level > k GROUP BY bv, k"
        )
        return con.execute(sql).fetchall()

    @staticmethod
    def _unordered(
        con: duckdb.DuckDBPyConnection,
        base: str,
        n: int,
        window: int,
        start_ns: int,
        end_ns: int,
    ) -> list[tuple[Any, ...]]:
        any_step = " OR ".join(f"m{k}" for k in range(n))
        flags = ", ".join(f"bool_or(e.m{k}) AS c{k}" for k in range(n))
        level = " + ".join(f"c{k}::INT" for k in range(n))
        sql = (
            f"WITH e AS MATERIALIZED ({base}), "
            f"f AS (SELECT user_id, min(t) AS t0, arg_min(bv, t) AS bv FROM e WHERE ({any_step}) "
            f"GROUP BY user_id HAVING min(t) >= {start_ns} AND min(t) < {end_ns}), "
            f"g AS (SELECT f.user_id, f.bv, max(e.t) - f.t0 AS d, {flags} FROM f JOIN e "
            f"ON e.user_id = f.user_id AND e.t >= f.t0 AND e.t <= f.t0 + {window} "
            "GROUP BY f.user_id, f.bv, f.t0), "
            f"h AS (SELECT bv, d, {level} AS level FROM g) "
            "SELECT bv, k, count(*), "
            f"avg(CASE WHEN k = {n - 1} THEN d END) / 1e9, "
            f"median(CASE WHEN k = {n - 1} THEN d END) / 1e9 "
            f"FROM h, range({n}) r(k) WHERE level > k GROUP BY bv, k"
        )
        return con.execute(sql).fetchall()

    # ------------------------------------------------------------------ retention

    def retention(
        self,
        tenant: str,
        *,
        target_event: str,
        returning_event: str | None = None,
        period: str = "day",
        periods: int = 7,
        retention_type: str = "recurring",
        date_from: Any = None,
        date_to: Any = None,
    ) -> dict[str, Any]:
        unit = _interval(period)
        if unit == "hour":
            raise AnalyticsError("period: use day, week or month")
        if retention_type not in ("recurring", "first_time"):
            raise AnalyticsError("retention_type: use recurring or first_time")
        if not 1 <= periods <= 366:
            raise AnalyticsError("periods: 1-366")
        start, end = self._range(date_from, date_to, default_days=periods)
        returning = returning_event or target_event
        # first-time cohorts need the history before the range
        con = self._connect(tenant, None if retention_type == "first_time" else start, None)
        try:
            if retention_type == "first_time":
                cohort = (
                    f"SELECT user_id, date_trunc('{unit}', min(timestamp)) AS c FROM events "
                    f"WHERE event = {_lit(target_event)} GROUP BY user_id"
                )
            else:
                cohort = (
                    f"SELECT DISTINCT user_id, date_trunc('{unit}', timestamp) AS c FROM events "
                    f"WHERE event = {_lit(target_event)}"
                )
            sql = (
                f"WITH c AS ({cohort}), "
                f"c2 AS (SELECT * FROM c WHERE c >= {_lit(_trunc(start, unit))}::TIMESTAMP "
                f"AND c < {_lit(end.replace(tzinfo=None).isoformat())}::TIMESTAMP), "
                f"r AS (SELECT DISTINCT user_id, date_trunc('{unit}', timestamp) AS p FROM events "
                f"WHERE event = {_lit(returning)}), "
                "sizes AS (SELECT c, count(*) AS n FROM c2 GROUP BY c), "
                f"ret AS (SELECT c2.c, datediff('{unit}', c2.c, r.p) AS k, "
                "count(DISTINCT user_id) AS n "
                f"FROM c2 JOIN r USING (user_id) WHERE r.p > c2.c GROUP BY ALL) "
                "SELECT 'size', c, 0, n FROM sizes UNION ALL SELECT 'ret', c, k, n FROM ret "
                f"WHERE k < {periods}"
            )
            rows = con.execute(sql).fetchall()
        finally:
            con.close()
        cohorts: dict[Any, list[int]] = {}
        for kind, c, k, count in rows:
            values = cohorts.setdefault(c, [0] * periods)
            if kind == "size":
                values[0] = int(count)
            else:
                values[int(k)] = int(count)
        result = []
        for c in sorted(cohorts):
            values = cohorts[c]
            size = values[0]
            result.append(
                {
                    "cohort": c.isoformat() + "Z",
                    "size": size,
                    "values": values,
                    "rates": [v / size if size else 0.0 for v in values],
                }
            )
        return {
            "period": unit,
            "retention_type": retention_type,
            "target_event": target_event,
            "returning_event": returning,
            "result": result,
        }

    # ------------------------------------------------------------------ active users

    def active_users(
        self,
        tenant: str,
        *,
        date_from: Any = None,
        date_to: Any = None,
        event: str | None = None,
        windows: Sequence[str] = ("dau", "wau", "mau"),
    ) -> dict[str, Any]:
        start, end = self._range(date_from, date_to, default_days=30)
        sizes = {"dau": 1, "wau": 7, "mau": 30}
        for w in windows:
            if w not in sizes:
                raise AnalyticsError(f"window {w!r}: use dau, wau or mau")
        longest = max((sizes[w] for w in windows), default=1)
        days = _buckets(start, end, "day")
        out: dict[str, Any] = {"labels": [d.isoformat() + "Z" for d in days]}
        if self.index is not None:
            out.update(
                vectorised.active_users(
                    self.index,
                    tenant,
                    event or None,
                    {w: sizes[w] for w in windows},
                    _ns(start - timedelta(days=longest - 1)),
                    _ns(end),
                    int(start.timestamp()) // 86_400,
                    len(days),
                )
            )
            if "dau" in out and "mau" in out:
                out["dau_mau_ratio"] = [
                    a / b if b else 0.0 for a, b in zip(out["dau"], out["mau"], strict=True)
                ]
            return out
        con = self._connect(tenant, start - timedelta(days=longest - 1), end)
        where = f"WHERE event = {_lit(event)}" if event else ""
        try:
            index = {d: i for i, d in enumerate(days)}
            # One (user, day) projection serves every window: integer days and hashed user
            # ids keep the DISTINCT cheap (exact unless two ids collide in 64 bits).
            projection = (
                "SELECT DISTINCT hash(user_id) AS u, "
                f"(epoch_ns(timestamp) // {_DAY_NS})::INTEGER AS d FROM events {where}"
            )
            if len(windows) > 1:
                con.execute(f"CREATE TEMP TABLE ud AS {projection}")
                source = "ud"
            else:
                source = f"({projection})"
            first_day = int(start.timestamp()) // 86_400
            for w in windows:
                if w == "dau":
                    sql = f"SELECT d, count(*) FROM {source} GROUP BY d"
                else:
                    sql = (
                        f"SELECT d + k AS day, count(DISTINCT u) FROM {source}, "
                        f"range({sizes[w]}) r(k) WHERE d + k >= {first_day} GROUP BY day"
                    )
                rows = [
                    (datetime.fromtimestamp(day * 86_400, UTC).replace(tzinfo=None), n)
                    for day, n in con.execute(sql).fetchall()
                ]
                out[w] = _series(rows, index, len(days))
        finally:
            con.close()
        if "dau" in out and "mau" in out:
            out["dau_mau_ratio"] = [
                a / b if b else 0.0 for a, b in zip(out["dau"], out["mau"], strict=True)
            ]
        return out

    def stickiness(
        self,
        tenant: str,
        *,
        event: str,
        interval: str = "day",
        date_from: Any = None,
        date_to: Any = None,
    ) -> dict[str, Any]:
        unit = _interval(interval)
        start, end = self._range(date_from, date_to, default_days=30)
        intervals = len(_buckets(start, end, unit))
        con = self._connect(tenant, start, end)
        try:
            rows = con.execute(
                f"SELECT n, count(*) FROM (SELECT user_id, count(DISTINCT date_trunc('{unit}', "
                f"timestamp)) AS n FROM events WHERE event = {_lit(event)} GROUP BY user_id) "
                "GROUP BY n ORDER BY n"
            ).fetchall()
        finally:
            con.close()
        counts = [0] * intervals
        for n, users in rows:
            if 1 <= n <= intervals:
                counts[n - 1] = int(users)
        return {
            "event": event,
            "interval": unit,
            "labels": list(range(1, intervals + 1)),
            "data": counts,
            "users": sum(counts),
        }

    # ------------------------------------------------------------------ commerce

    def revenue(
        self,
        tenant: str,
        *,
        event: str = "purchase_completed",
        value: str = "total_value",
        group_by: str = "payment_method",
        interval: str = "day",
        visit_event: str | None = None,
        date_from: Any = None,
        date_to: Any = None,
    ) -> dict[str, Any]:
        """Revenue per ``group_by`` value, average order value, a revenue series, and the
        conversion rate: buyers / users active in the range (or doing ``visit_event``)."""
        unit = _interval(interval)
        start, end = self._range(date_from, date_to, default_days=30)
        amount = f"TRY_CAST({_prop_expr(value)} AS DOUBLE)"
        group = _prop_expr(group_by, "group_by")
        buckets = _buckets(start, end, unit)
        index = {b: i for i, b in enumerate(buckets)}
        con = self._connect(tenant, start, end)
        try:
            by_group = con.execute(
                f"SELECT {group} AS g, sum({amount}), count(*), avg({amount}) FROM events "
                f"WHERE event = {_lit(event)} GROUP BY g ORDER BY 2 DESC NULLS LAST"
            ).fetchall()
            series = con.execute(
                f"SELECT date_trunc('{unit}', timestamp), sum({amount}) FROM events "
                f"WHERE event = {_lit(event)} GROUP BY 1"
            ).fetchall()
            visit = f"WHERE event = {_lit(visit_event)}" if visit_event else ""
            buyers, visitors = con.execute(
                f"SELECT (SELECT count(DISTINCT user_id) FROM events WHERE event = {_lit(event)}), "
                f"(SELECT count(DISTINCT user_id) FROM events {visit})"
            ).fetchone() or (0, 0)
        finally:
            con.close()
        total = sum(r[1] or 0.0 for r in by_group)
        orders = sum(int(r[2]) for r in by_group)
        return {
            "event": event,
            "value": value,
            "total_revenue": total,
            "orders": orders,
            "average_order_value": total / orders if orders else 0.0,
            "buyers": int(buyers or 0),
            "visitors": int(visitors or 0),
            "conversion_rate": (buyers or 0) / visitors if visitors else 0.0,
            "by": group_by,
            "groups": [
                {"value": g, "revenue": r or 0.0, "orders": int(n), "average_order_value": a or 0.0}
                for g, r, n, a in by_group
            ],
            "interval": unit,
            "labels": [b.isoformat() + "Z" for b in buckets],
            "data": _series(series, index, len(buckets)),
        }

    def top_products(
        self,
        tenant: str,
        *,
        view_event: str = "product_viewed",
        purchase_event: str = "purchase_completed",
        product: str = "product_id",
        value: str = "total_value",
        limit: int = 10,
        date_from: Any = None,
        date_to: Any = None,
    ) -> dict[str, Any]:
        """Top products by views and by revenue. A purchase naming several products (an array
        property, or ``product_ids``) splits its value evenly between them."""
        start, end = self._range(date_from, date_to, default_days=30)
        limit = max(1, min(limit, 1000))
        pid = _prop_expr(product, "product")
        plural = _prop(product + "s", "product")
        amount = f"TRY_CAST({_prop_expr(value)} AS DOUBLE)"
        con = self._connect(tenant, start, end)
        try:
            views = con.execute(
                f"SELECT {pid} AS p, count(*) AS n, count(DISTINCT user_id) FROM events "
                f"WHERE event = {_lit(view_event)} AND p IS NOT NULL GROUP BY p "
                f"ORDER BY n DESC, p LIMIT {limit}"
            ).fetchall()
            revenue = con.execute(
                f"WITH x AS (SELECT {amount} AS v, CASE WHEN {pid} IS NOT NULL THEN [{pid}] "
                f"ELSE CAST(json_extract(properties, {plural}) AS VARCHAR[]) END AS ps "
                f"FROM events WHERE event = {_lit(purchase_event)}), "
                "y AS (SELECT unnest(ps) AS p, v / len(ps) AS v FROM x WHERE len(ps) > 0) "
                f"SELECT p, sum(v) AS r, count(*) FROM y GROUP BY p ORDER BY r DESC NULLS LAST, p "
                f"LIMIT {limit}"
            ).fetchall()
        finally:
            con.close()
        return {
            "by_views": [{"product": p, "views": int(n), "viewers": int(u)} for p, n, u in views],
            "by_revenue": [
                {"product": p, "revenue": r or 0.0, "purchases": int(n)} for p, r, n in revenue
            ],
        }

    # ------------------------------------------------------------------ SQL

    def sql(
        self,
        tenant: str,
        query: str,
        *,
        max_rows: int = 10_000,
        timeout_s: float = 30.0,
        date_from: Any = None,
        date_to: Any = None,
    ) -> dict[str, Any]:
        """Run one read-only SELECT over the ``events`` view. File access other than the
        tenant's segments is off; results stop at ``max_rows``; a query is interrupted after
        ``timeout_s``."""
        start = (
            parse_time(date_from, default=datetime(1970, 1, 1, tzinfo=UTC), name="date_from")
            if date_from
            else None
        )
        end = parse_time(date_to, default=datetime.now(UTC), name="date_to") if date_to else None
        con = duckdb.connect(config={"threads": self.threads})
        try:
            con.execute("SET TimeZone='UTC'")
            try:
                statements = con.extract_statements(query)
            except duckdb.Error as exc:
                raise AnalyticsError(f"query: {exc}") from None
            if len(statements) != 1:
                raise AnalyticsError("query: send exactly one statement")
            if statements[0].type != duckdb.StatementType.SELECT:
                raise AnalyticsError("query: only SELECT statements are allowed (read-only)")
            self.store.register(
                con, tenant, _ns(start) if start else None, _ns(end) if end else None
            )
            root = self.store.table.store.root / f"tenant={tenant}"
            con.execute(f"SET allowed_directories=[{_lit(str(root) + '/')}]")
            con.execute("SET enable_external_access=false")
            con.execute("SET lock_configuration=true")
            timer = threading.Timer(timeout_s, con.interrupt)
            timer.start()
            started = time.perf_counter()
            try:
                cursor = con.execute(query)
                columns = [d[0] for d in cursor.description or []]
                rows = cursor.fetchmany(max_rows + 1)
            except duckdb.InterruptException:
                raise AnalyticsError(
                    f"query: cancelled after sql_timeout ({timeout_s:g}s)"
                ) from None
            except duckdb.Error as exc:
                raise AnalyticsError(f"query: {exc}") from None
            finally:
                timer.cancel()
        finally:
            con.close()
        truncated = len(rows) > max_rows
        return {
            "columns": columns,
            "rows": [[_json(v) for v in r] for r in rows[:max_rows]],
            "truncated": truncated,
            "max_rows": max_rows,
            "elapsed_s": round(time.perf_counter() - started, 6),
        }


def _trunc(moment: datetime, unit: str) -> str:
    first = _buckets(moment, moment + timedelta(days=32), unit)[0]
    return first.isoformat()


def _series(rows: list[tuple[Any, ...]], index: dict[Any, int], size: int) -> list[float]:
    data = [0.0] * size
    for b, v in rows:
        i = index.get(b)
        if i is not None and v is not None:
            data[i] = float(v)
    return data


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return str(value)
