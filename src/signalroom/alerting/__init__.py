"""The Alertmanager: configuration, matchers, routing tree, time intervals.

Delivery, grouping, inhibition and silences build on these.
"""

from signalroom.alerting.config import (
    AlertmanagerConfig,
    AlertmanagerConfigError,
    load_alertmanager_config,
)
from signalroom.alerting.matchers import Matcher, MatcherError, MatchType, parse_matchers
from signalroom.alerting.route import RouteNode, build_routing_tree

__all__ = [
    "AlertmanagerConfig",
    "AlertmanagerConfigError",
    "MatchType",
    "Matcher",
    "MatcherError",
    "RouteNode",
    "build_routing_tree",
    "load_alertmanager_config",
    "parse_matchers",
]
