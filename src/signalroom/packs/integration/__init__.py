"""Integration-layer pack (seed 001): settings-sync job, Kong/Envoy gateways and event
publishing: rules, dashboards, runbooks and the SettingsSyncJobFailure recovery."""

from signalroom.packs.integration.metrics import METRICS, metric_names

__all__ = ["METRICS", "metric_names"]
