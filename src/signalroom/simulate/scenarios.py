"""Incident scenarios and their schedule.

Each scenario changes what the companies produce while it runs, so that one of the demo's
alert rules (``examples/demo-rules.yml``) fires and resolves when the scenario ends:

==========================  ====================================  ==========================
scenario                    what happens                          alert
==========================  ====================================  ==========================
``payment_failures``        checkout and payment answer 5xx       HighErrorRate
``latency_spike``           backend and gateway upstreams slow    GatewayLatencyHigh,
                                                                  SlowResponseTime
``sample_success_drop``     sample requests succeed ~50 %         SampleSuccessRateLow/Critical
``event_flow_stopped``      no cross-module events published      CrossModuleEventFlowStopped
``cost_budget_exceeded``    cost per lead ~32 EUR                 CostPerLeadBudgetExceeded
``seasonal_peak``           ``signalroom loadtest`` ramps the     (none: the war-room
                            shop to 5x its baseline (Christmas)   dashboard shows the peak)
==========================  ====================================  ==========================

Start and duration are simulated seconds; at the default speed (one simulated hour per real
minute) a 60-minute incident lasts one real minute, long enough for a ``for: 20s`` rule over a
one-minute window to fire, notify and resolve.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SCENARIOS: dict[str, str] = {
    "payment_failures": "checkout and payment return 5xx; purchases fail",
    "latency_spike": "backend and gateway upstreams answer ~10x slower",
    "sample_success_drop": "FreshFoodz sample requests succeed ~50 % instead of ~97 %",
    "event_flow_stopped": "the integration layer publishes no cross-module events",
    "cost_budget_exceeded": "cost per lead rises above the 25 EUR budget",
    "seasonal_peak": "a load test ramps the shop's product page to 5x its baseline rate",
}

#: One cycle of the default schedule, in simulated seconds (then it repeats).
CYCLE_SECONDS = 10 * 3600.0


@dataclass(frozen=True)
class Incident:
    """One scheduled run of a scenario, in simulated seconds since the simulation started."""

    scenario: str
    start: float
    duration: float

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            known = ", ".join(SCENARIOS)
            raise ValueError(f"unknown scenario {self.scenario!r}; known: {known}")
        if self.duration <= 0:
            raise ValueError(f"incident {self.scenario}: duration must be positive")

    def active_at(self, sim_seconds: float) -> bool:
        return self.start <= sim_seconds < self.start + self.duration


def default_schedule() -> list[Incident]:
    """The demo's incidents: the first starts 20 simulated minutes in (20 real seconds at the
    default speed), one at a time with calm gaps so each alert resolves before the next."""
    minute = 60.0
    return [
        Incident("payment_failures", 20 * minute, 80 * minute),
        # in the calm gap, within the first two real minutes: a Christmas peak (load test)
        Incident("seasonal_peak", 102 * minute, 36 * minute),
        Incident("latency_spike", 140 * minute, 60 * minute),
        Incident("sample_success_drop", 240 * minute, 60 * minute),
        # rate(...[1m]) == 0 needs a whole flat minute before ``for`` starts counting
        Incident("event_flow_stopped", 350 * minute, 100 * minute),
        Incident("cost_budget_exceeded", 500 * minute, 60 * minute),
    ]


def active_scenarios(
    schedule: Sequence[Incident], sim_seconds: float, *, cycle: float | None = CYCLE_SECONDS
) -> frozenset[str]:
    """Names of the scenarios running at ``sim_seconds``; with ``cycle`` the schedule repeats."""
    moment = sim_seconds % cycle if cycle else sim_seconds
    return frozenset(i.scenario for i in schedule if i.active_at(moment))


def remaining(
    schedule: Sequence[Incident], scenario: str, sim_seconds: float, *, cycle: float | None
) -> float:
    """Simulated seconds left of the running incident of ``scenario`` (0 when none runs)."""
    moment = sim_seconds % cycle if cycle else sim_seconds
    return max(
        (i.start + i.duration - moment for i in schedule
         if i.scenario == scenario and i.active_at(moment)),
        default=0.0,
    )  # fmt: skip


def parse_forced(names: Iterable[str]) -> list[str]:
    """Validate scenario names given on the command line."""
    out = []
    for name in names:
        Incident(name, 0, 1)  # raises with the list of known names
        out.append(name)
    return out
