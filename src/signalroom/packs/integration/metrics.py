"""The integration layer's golden-signal metrics, as seed 001 names them.

Instrumented by the services (settings-sync job, Kong and Envoy gateways, event publishers,
settings registry), scraped or pushed into signalroom; the pack's rules and dashboards read
only these (plus ``up``, ``process_*`` and ``ALERTS``).
"""

from __future__ import annotations

from signalroom.tsdb import MetricMetadata

__all__ = ["METRICS", "metric_names"]

METRICS = (
    # Settings-sync job (Micrometer names, labels component / error_type).
    MetricMetadata(
        "settings_sync_duration_seconds", "histogram", "Duration of settings sync operations"
    ),
    MetricMetadata(
        "settings_sync_success_total", "counter", "Total successful settings sync operations"
    ),
    MetricMetadata(
        "settings_sync_errors_total", "counter", "Total failed settings sync operations"
    ),
    MetricMetadata(
        "gateway_policy_deployments_total", "counter", "Total gateway policy deployments"
    ),
    # Kong (prometheus plugin + custom): {service, route, status_code, tenant_id}.
    MetricMetadata("http_requests_total", "counter", "Gateway requests"),
    MetricMetadata("http_request_duration_seconds", "histogram", "Gateway request duration"),
    MetricMetadata(
        "kong_gateway_policy_active", "gauge", "Active gateway policies by type and tenant"
    ),
    MetricMetadata("kong_upstream_health", "gauge", "Kong upstream health"),
    MetricMetadata("kong_up", "gauge", "Kong is up"),
    # Envoy admin /stats/prometheus.
    MetricMetadata("envoy_http_requests_total", "counter", "Envoy requests by cluster and tenant"),
    MetricMetadata("envoy_http_request_duration_seconds", "histogram", "Envoy request duration"),
    MetricMetadata("envoy_circuit_breaker_open", "gauge", "Envoy circuit breaker open"),
    MetricMetadata("envoy_upstream_rq_active", "gauge", "Envoy active upstream requests"),
    MetricMetadata(
        "envoy_server_state", "gauge", "Envoy server state (0 live, 1 draining, 2 pre-init, 3 init)"
    ),
    # Event publishing and schemas.
    MetricMetadata("events_published_total", "counter", "Total events published"),
    MetricMetadata(
        "event_validation_duration_seconds", "histogram", "Duration of event schema validation"
    ),
    MetricMetadata("event_validation_errors_total", "counter", "Total event validation errors"),
    # Foundation services (settings registry, EVENT_CATALOG) and caches.
    MetricMetadata(
        "settings_registry_api_requests_total", "counter", "Settings registry API requests"
    ),
    MetricMetadata(
        "settings_registry_api_duration_seconds", "histogram", "Settings registry API duration"
    ),
    MetricMetadata("settings_cache_hits_total", "counter", "Settings cache hits"),
    MetricMetadata("settings_cache_misses_total", "counter", "Settings cache misses"),
)


def metric_names() -> set[str]:
    """Every series name the metrics above give (histograms: _bucket, _sum, _count)."""
    out: set[str] = set()
    for m in METRICS:
        if m.type == "histogram":
            out |= {f"{m.metric}_bucket", f"{m.metric}_sum", f"{m.metric}_count"}
        else:
            out.add(m.metric)
    return out
