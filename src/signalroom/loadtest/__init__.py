"""Load testing (``signalroom loadtest``): the role k6 plays in the seed plans.

Ramp from a baseline request rate to N x baseline against a URL (a seasonal peak), with
k6-like stages and thresholds, a live view, a summary and optional push to signalroom.
"""

from signalroom.loadtest.plan import LoadPlan, PlanError, Stage, Threshold, ramp_plan
from signalroom.loadtest.runner import LatencyHistogram, RunStats, run_plan

__all__ = [
    "LatencyHistogram",
    "LoadPlan",
    "PlanError",
    "RunStats",
    "Stage",
    "Threshold",
    "ramp_plan",
    "run_plan",
]
