"""Load plans: k6-like ``stages`` of a ramping arrival rate, and k6 ``thresholds``.

A plan starts at ``start_rate`` requests/s and moves linearly to each stage's ``target`` over
the stage's duration, as k6's ``ramping-arrival-rate`` executor does. The arrival schedule is
the inverse of the cumulative rate curve, computed for all requests at once with NumPy.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from signalroom.units import parse_duration_s

# A plan that would send more than this many requests is refused: loops stay bounded.
MAX_PLANNED_REQUESTS = 2_000_000


class PlanError(ValueError):
    """A load plan or threshold that cannot be used, with a message for the user."""


def parse_seconds(value: str | float | int) -> float:
    """A duration as k6 or Prometheus writes it (``30s``, ``1m30s``, ``500ms``) or bare seconds."""
    if isinstance(value, bool):
        raise PlanError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_duration_s(text)
            except ValueError as exc:
                raise PlanError(str(exc)) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise PlanError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Stage:
    """Move the arrival rate linearly to ``target`` requests/s over ``duration`` seconds."""

    duration: float
    target: float


# -- thresholds --------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_THRESHOLD_RE = re.compile(
    r"^\s*(?P<agg>p\(\s*(?P<pct>\d+(?:\.\d+)?)\s*\)|avg|min|max|med|rate|count)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$"
)
# Which aggregations each metric has, as in k6: a Trend, a Rate and a Counter.
METRIC_AGGREGATES: dict[str, frozenset[str]] = {
    "http_req_duration": frozenset({"p", "avg", "min", "max", "med"}),
    "http_req_failed": frozenset({"rate"}),
    "http_reqs": frozenset({"count", "rate"}),
    "dropped_iterations": frozenset({"count", "rate"}),
}


@dataclass(frozen=True)
class Threshold:
    """One k6 threshold expression on one metric, e.g. ``http_req_duration: p(95)<500``.

    ``aggregate`` is ``p`` (with ``percentile``), ``avg``, ``min``, ``max``, ``med``, ``rate``
    or ``count``. Durations are in milliseconds, as in k6.
    """

    metric: str
    aggregate: str
    op: str
    value: float
    percentile: float | None = None

    @property
    def expression(self) -> str:
        agg = f"p({self.percentile:g})" if self.aggregate == "p" else self.aggregate
        return f"{agg}{self.op}{self.value:g}"

    def __str__(self) -> str:
        return f"{self.metric}: {self.expression}"

    def passes(self, observed: float) -> bool:
        return _OPERATORS[self.op](observed, self.value)


def parse_threshold(metric: str, expression: str) -> Threshold:
    """Parse a k6 threshold such as ``p(95)<500`` or ``rate<0.01`` for ``metric``."""
    metric = metric.strip()
    if metric not in METRIC_AGGREGATES:
        raise PlanError(
            f"unknown threshold metric {metric!r} (known: {', '.join(sorted(METRIC_AGGREGATES))})"
        )
    match = _THRESHOLD_RE.match(expression)
    if match is None:
        raise PlanError(
            f"cannot parse threshold {expression!r} for {metric} "
            "(use forms like p(95)<500, avg<200, rate<0.01, count>100)"
        )
    aggregate = "p" if match["pct"] is not None else match["agg"]
    if aggregate not in METRIC_AGGREGATES[metric]:
        raise PlanError(f"{metric} has no {match['agg']!r} aggregation")
    percentile = float(match["pct"]) if match["pct"] is not None else None
    if percentile is not None and not 0 <= percentile <= 100:
        raise PlanError(f"percentile must be in 0..100, got {percentile:g}")
    return Threshold(metric, aggregate, match["op"], float(match["value"]), percentile)


def parse_threshold_option(text: str) -> Threshold:
    """Parse the CLI form ``metric:expression`` (``http_req_duration:p(95)<500``)."""
    metric, sep, expression = text.partition(":")
    if not sep:
        raise PlanError(f"threshold {text!r} must look like metric:expression")
    return parse_threshold(metric, expression)


def parse_thresholds(spec: Mapping[str, Any]) -> list[Threshold]:
    """Parse a k6 ``thresholds`` mapping: metric -> expression or list of expressions.

    k6's object form ``{threshold: "...", abortOnFail: true}`` is accepted for its expression.
    """
    out: list[Threshold] = []
    for metric, value in spec.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, Mapping):
                item = item.get("threshold")
            if not isinstance(item, str):
                raise PlanError(f"threshold for {metric} must be a string, got {item!r}")
            out.append(parse_threshold(str(metric), item))
    return out


# -- plans -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """What to request, and at which arrival rate over time."""

    url: str
    stages: tuple[Stage, ...]
    start_rate: float = 0.0
    method: str = "GET"
    thresholds: tuple[Threshold, ...] = ()
    max_in_flight: int = 100
    timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stages:
            raise PlanError("a plan needs at least one stage")
        if self.start_rate < 0 or any(s.target < 0 or s.duration < 0 for s in self.stages):
            raise PlanError("rates and durations must be >= 0")
        if self.max_in_flight < 1:
            raise PlanError("max_in_flight must be at least 1")
        if self.timeout <= 0:
            raise PlanError("timeout must be > 0")
        if self.duration <= 0:
            raise PlanError("the stages last zero seconds in total")
        if self.expected_requests > MAX_PLANNED_REQUESTS:
            raise PlanError(
                f"the plan would send {self.expected_requests:,.0f} requests, "
                f"more than the limit of {MAX_PLANNED_REQUESTS:,}"
            )

    @property
    def duration(self) -> float:
        return float(sum(s.duration for s in self.stages))

    @property
    def peak_rate(self) -> float:
        return max(self.start_rate, *(s.target for s in self.stages))

    def _knots(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        times = np.concatenate([[0.0], np.cumsum([s.duration for s in self.stages])])
        rates = np.array([self.start_rate, *(s.target for s in self.stages)], dtype=np.float64)
        return times, rates

    def rate_at(self, t: float) -> float:
        """The planned arrival rate (requests/s) ``t`` seconds after the start."""
        times, rates = self._knots()
        if t < 0 or t > times[-1]:
            return 0.0
        # Zero-length stages jump; np.interp takes the last knot at an equal time.
        return float(np.interp(t, times, rates))

    def cumulative(self, t: float | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Requests planned from the start up to ``t`` (the integral of the rate)."""
        times, rates = self._knots()
        t_arr = np.clip(np.asarray(t, dtype=np.float64), 0.0, times[-1])
        seg_area = np.diff(times) * (rates[:-1] + rates[1:]) / 2
        area_before = np.concatenate([[0.0], np.cumsum(seg_area)])
        i = np.clip(np.searchsorted(times, t_arr, side="right") - 1, 0, len(self.stages) - 1)
        dt = t_arr - times[i]
        d = times[i + 1] - times[i]
        slope = np.divide(rates[i + 1] - rates[i], d, out=np.zeros_like(dt), where=d > 0)
        return np.asarray(area_before[i] + rates[i] * dt + slope * dt * dt / 2)

    @property
    def expected_requests(self) -> float:
        return float(self.cumulative(self.duration))

    def arrival_offsets(self) -> npt.NDArray[np.float64]:
        """Start offsets (seconds) of every planned request, in order.

        Request k (0-based) starts when the cumulative rate reaches k, so the first one is at
        0 and a constant rate r gives offsets 0, 1/r, 2/r, ...
        """
        times, rates = self._knots()
        total = self.expected_requests
        k = np.arange(math.ceil(total - 1e-9), dtype=np.float64)
        seg_area = np.diff(times) * (rates[:-1] + rates[1:]) / 2
        area_before = np.concatenate([[0.0], np.cumsum(seg_area)])
        # The segment whose cumulative range holds k (segments of zero area are skipped).
        i = np.clip(np.searchsorted(area_before, k, side="right") - 1, 0, len(self.stages) - 1)
        need = k - area_before[i]
        r0 = rates[i]
        d = times[i + 1] - times[i]
        slope = np.divide(rates[i + 1] - r0, d, out=np.zeros_like(need), where=d > 0)
        # Solve r0*x + slope*x^2/2 = need for x >= 0; the second form avoids cancellation.
        disc = np.sqrt(np.maximum(r0 * r0 + 2 * slope * need, 0.0))
        denom = r0 + disc
        x = np.divide(2 * need, denom, out=np.zeros_like(need), where=denom > 0)
        return np.asarray(np.minimum(times[i] + np.minimum(x, d), times[-1]), dtype=np.float64)


def ramp_plan(
    url: str,
    *,
    baseline_rps: float,
    multiplier: float,
    ramp: float,
    hold: float,
    ramp_down: float | None = None,
    warmup: float = 0.0,
    **options: Any,
) -> LoadPlan:
    """A seasonal-peak plan: baseline, ramp to ``multiplier`` x baseline, hold, ramp back.

    ``warmup`` seconds at the baseline come first; ``ramp_down`` defaults to ``ramp``.
    """
    if baseline_rps <= 0:
        raise PlanError("the baseline rate must be > 0 requests/s")
    if multiplier <= 0:
        raise PlanError("the multiplier must be > 0")
    peak = baseline_rps * multiplier
    stages = [Stage(warmup, baseline_rps)] if warmup > 0 else []
    stages += [Stage(ramp, peak), Stage(hold, peak)]
    down = ramp if ramp_down is None else ramp_down
    if down > 0:
        stages.append(Stage(down, baseline_rps))
    return LoadPlan(url=url, stages=tuple(stages), start_rate=baseline_rps, **options)


def load_plan_file(path: Path, *, url: str | None = None, **overrides: Any) -> LoadPlan:
    """Read a small k6-like YAML plan.

    ``stages`` (list of ``{duration, target}``), ``startRate``, ``thresholds`` (k6 form),
    ``url``, ``method``, ``timeout``, ``maxInFlight`` (or k6's ``maxVUs``) and ``headers``.
    A top-level ``scenarios``/``options`` wrapper as in a k6 script's options is unwrapped.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"{path}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise PlanError(f"{path}: a plan must be a mapping")
    return plan_from_mapping(doc, url=url, **overrides)


def _first(doc: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in doc:
            return doc[name]
    return None


def plan_from_mapping(
    doc: Mapping[str, Any], *, url: str | None = None, **overrides: Any
) -> LoadPlan:
    """Build a plan from a parsed YAML/JSON document; see :func:`load_plan_file`."""
    if isinstance(doc.get("options"), Mapping):
        doc = {**doc["options"], **{k: v for k, v in doc.items() if k != "options"}}
    thresholds = parse_thresholds(doc.get("thresholds") or {})
    scenarios = doc.get("scenarios")
    if isinstance(scenarios, Mapping) and scenarios:
        if len(scenarios) != 1:
            raise PlanError("only one scenario per plan is supported")
        doc = {**doc, **next(iter(scenarios.values()))}
    raw_stages = doc.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise PlanError("a plan needs a non-empty 'stages' list")
    stages: list[Stage] = []
    for n, raw in enumerate(raw_stages):
        if not isinstance(raw, Mapping) or "duration" not in raw or "target" not in raw:
            raise PlanError(f"stage {n + 1} needs 'duration' and 'target'")
        target = raw["target"]
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise PlanError(f"stage {n + 1}: target must be a number of requests/s")
        stages.append(Stage(parse_seconds(raw["duration"]), float(target)))
    target_url = url or doc.get("url")
    if not target_url:
        raise PlanError("no URL: give one on the command line or as 'url' in the plan")
    kwargs: dict[str, Any] = {}
    if (start := _first(doc, "startRate", "start_rate")) is not None:
        kwargs["start_rate"] = float(start)
    if (in_flight := _first(doc, "maxInFlight", "max_in_flight", "maxVUs")) is not None:
        kwargs["max_in_flight"] = int(in_flight)
    if (timeout := doc.get("timeout")) is not None:
        kwargs["timeout"] = parse_seconds(timeout)
    if (method := doc.get("method")) is not None:
        kwargs["method"] = str(method).upper()
    if isinstance(doc.get("headers"), Mapping):
        kwargs["headers"] = {str(k): str(v) for k, v in doc["headers"].items()}
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    extra: Sequence[Threshold] = kwargs.pop("thresholds", ())
    return LoadPlan(
        url=str(target_url), stages=tuple(stages), thresholds=(*thresholds, *extra), **kwargs
    )
