"""Microsoft Teams receiver: a legacy MessageCard to an incoming webhook (Alertmanager 0.26)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import MSTeamsConfig
from signalroom.alerting.notify.base import Integration, http_client, post_json, read_secret
from signalroom.alerting.notify.templates import expand

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext

COLORS = {"firing": "8C1A1A", "resolved": "2DC72D"}


class MSTeamsIntegration(Integration):
    name = "msteams"

    def __init__(self, config: MSTeamsConfig, receiver: str, idx: int, external_url: str) -> None:
        super().__init__(receiver, idx, config.send_resolved, external_url)
        self.config = config
        self.client = http_client(config.http_config)

    def payload(self, ctx: FlushContext, alerts: list[Alert]) -> dict[str, Any]:
        data = self.data(ctx, alerts)
        return {
            "@context": "http://schema.org/extensions",
            "type": "MessageCard",
            "title": expand(self.config.title, data),
            "summary": expand(self.config.summary, data),
            "text": expand(self.config.text, data),
            "themeColor": COLORS.get(data.status, "808080"),
        }

    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        url = self.config.webhook_url or read_secret(None, self.config.webhook_url_file)
        await post_json(self.client, self.name, str(url), self.payload(ctx, alerts))

    async def close(self) -> None:
        await self.client.aclose()
