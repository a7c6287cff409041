"""Scraping: Prometheus ``scrape_configs``, discovery, relabeling, exposition parsing, loops.

``ScrapeManager`` runs one loop per target and hands each scrape to an ``Appender`` as one
columnar batch; the storage side adapts that protocol to its own write path.
"""

from signalroom.scrape.appender import (
    NORMAL_NAN,
    STALE_NAN,
    Appender,
    MemoryAppender,
    MetricMetadata,
    is_stale_nan,
)
from signalroom.scrape.config import (
    ScrapeConfig,
    ScrapeConfigError,
    ScrapeProblem,
    default_self_scrape_config,
    parse_scrape_configs,
)
from signalroom.scrape.manager import ScrapeManager, TargetStatus
from signalroom.scrape.parser import ParsedScrape, ParseError, parse
from signalroom.scrape.relabel import RelabelConfig, RelabelError

__all__ = [
    "NORMAL_NAN",
    "STALE_NAN",
    "Appender",
    "MemoryAppender",
    "MetricMetadata",
    "ParseError",
    "ParsedScrape",
    "RelabelConfig",
    "RelabelError",
    "ScrapeConfig",
    "ScrapeConfigError",
    "ScrapeManager",
    "ScrapeProblem",
    "TargetStatus",
    "default_self_scrape_config",
    "is_stale_nan",
    "parse",
    "parse_scrape_configs",
]
