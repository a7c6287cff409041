"""Notification delivery: the pipeline, its stages and the integrations."""

from __future__ import annotations

from signalroom.alerting.config import Receiver
from signalroom.alerting.notify.base import Integration, NotifyError
from signalroom.alerting.notify.email import EmailIntegration
from signalroom.alerting.notify.msteams import MSTeamsIntegration
from signalroom.alerting.notify.pagerduty import PagerDutyIntegration
from signalroom.alerting.notify.slack import SlackIntegration
from signalroom.alerting.notify.webhook import WebhookIntegration

__all__ = ["Integration", "NotifyError", "build_integrations"]


def build_integrations(receiver: Receiver, external_url: str) -> list[Integration]:
    """The integrations of one receiver, in Alertmanager's order and with its indexes."""
    name = receiver.name
    out: list[Integration] = []
    for i, wh in enumerate(receiver.webhook_configs):
        out.append(WebhookIntegration(wh, name, i, external_url))
    for i, em in enumerate(receiver.email_configs):
        out.append(EmailIntegration(em, name, i, external_url))
    for i, pd in enumerate(receiver.pagerduty_configs):
        out.append(PagerDutyIntegration(pd, name, i, external_url))
    for i, sl in enumerate(receiver.slack_configs):
        out.append(SlackIntegration(sl, name, i, external_url))
    for i, mt in enumerate(receiver.msteams_configs):
        out.append(MSTeamsIntegration(mt, name, i, external_url))
    return out
