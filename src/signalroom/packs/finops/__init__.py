"""FinOps pack: cost per lead and per order from AI usage, infrastructure and sales time."""

from signalroom.packs.finops.costs import (
    AiCostSource,
    CostItem,
    CostReport,
    CurCsvSource,
    FinopsConfig,
    FixedMonthlyCost,
    SalesTimeSource,
    compute_costs,
)
from signalroom.packs.finops.service import FinopsService, store_events_source, window_bounds

__all__ = [
    "AiCostSource",
    "CostItem",
    "CostReport",
    "CurCsvSource",
    "FinopsConfig",
    "FinopsService",
    "FixedMonthlyCost",
    "SalesTimeSource",
    "compute_costs",
    "store_events_source",
    "window_bounds",
]
