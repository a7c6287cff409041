"""Webhook receiver: POSTs Alertmanager's version-4 JSON payload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import WebhookConfig
from signalroom.alerting.notify.base import (
    Integration,
    http_client,
    lean_http,
    post_json,
    read_secret,
)
from signalroom.alerting.notify.templates import template_json

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext


def truncate_alerts(max_alerts: int, alerts: list[Alert]) -> tuple[list[Alert], int]:
    """``max_alerts`` > 0 keeps the first ``max_alerts``; returns them and how many were cut."""
    if max_alerts > 0 and len(alerts) > max_alerts:
        return alerts[:max_alerts], len(alerts) - max_alerts
    return alerts, 0


class WebhookIntegration(Integration):
    name = "webhook"

    def __init__(self, config: WebhookConfig, receiver: str, idx: int, external_url: str) -> None:
        super().__init__(receiver, idx, config.send_resolved, external_url)
        self.config = config
        self.client = http_client(config.http_config)
        self.lean = lean_http(config.http_config)  # plain-http URLs: far less CPU per POST
        if config.timeout is not None and config.timeout.total_seconds() > 0:
            self.timeout = config.timeout.total_seconds()

    def payload(self, ctx: FlushContext, alerts: list[Alert]) -> dict[str, Any]:
        kept, truncated = truncate_alerts(self.config.max_alerts, alerts)
        data = template_json(ctx.receiver, ctx.group_labels, kept, ctx.now, self.external_url)
        return {
            **data,
            "version": "4",
            "groupKey": ctx.group_key,
            "truncatedAlerts": truncated,
        }

    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        url = self.config.url or read_secret(None, self.config.url_file)
        await post_json(self.client, self.name, url, self.payload(ctx, alerts), self.lean)

    async def close(self) -> None:
        if self.lean is not None:
            await self.lean.aclose()
        await self.client.aclose()
