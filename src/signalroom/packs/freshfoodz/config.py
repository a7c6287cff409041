"""The pack's own configuration section (``freshfoodz:``), validated here.

Example::

    sql_sources:
      - {name: crm, url_file: /run/secrets/crm-db-url, interval: 1m, postgres_builtin: true}
    packs: [freshfoodz]
    freshfoodz:
      lead_protection:
        sql_source: crm          # read leads/lead_holds from this SQL source's database
        interval: 1m             # default: the SQL source's interval, else evaluation_interval
        reminder_webhook: https://crm.example/api/reminders   # default: reminders are logged

Without a ``freshfoodz:`` section (or with ``sql_source`` naming no configured source) lead
protection is computed from the ``lead_created`` / ``lead_hold_*`` events in the events store.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from signalroom.alerting.config import Duration

__all__ = ["FreshfoodzConfig", "LeadProtectionConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeadProtectionConfig(_Model):
    """Where lead protection reads its leads and holds, how often, where reminders go."""

    sql_source: str = "crm"
    interval: Duration | None = None
    tenant: str = "default"
    reminder_webhook: str | None = None
    reminder_timeout: Duration = timedelta(seconds=10)


class FreshfoodzConfig(_Model):
    lead_protection: LeadProtectionConfig = Field(default_factory=LeadProtectionConfig)
