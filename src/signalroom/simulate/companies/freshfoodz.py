"""FreshFoodz B2B food CRM (seed 000): leads and stop-clock holds (as events, from which
signalroom's lead-protection job sends the reminders), sample requests, event catering, AI token
usage and sales time; sent by remote write, plus the CRM's business events through
``/api/sr/events``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from signalroom.packs.freshfoodz.lead_protection import BERLIN, add_months
from signalroom.simulate.companies import Counters, Signals, Tick, iso

_SOURCES = ("website", "trade_fair", "referral", "cold_call")
_PRODUCTS = ("cheese", "cured_meat", "olive_oil", "wine", "pastry")
#: Monthly fixed marketing and AI spend (EUR) spread over simulated time, for cost per lead.
_SPEND_PER_LEAD_EUR = 18.0


class FreshFoodz:
    """The CRM; counters are cumulative and re-sent each tick."""

    name = "freshfoodz"

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.counters = Counters()
        self.holds_active = 12.0
        self.leads = 0
        self.open_holds: list[tuple[str, str]] = []

    def _event(self, name: str, tick: Tick, lead_id: str, **props: Any) -> dict[str, Any]:
        return {
            "event_name": name,
            "user_id": f"sales-{self.leads % 7}",
            "timestamp": iso(tick.now_ns),
            "properties": {"lead_id": lead_id, **props},
        }

    def _lead(self, tick: Tick, out: Signals, source: str) -> None:
        """A lead for signalroom's lead-protection job (it reads these events). A third are
        imported from last spring's trade fair: their protection reaches the reminder phase
        within the next minute, so the demo shows reminders falling due and being sent."""
        rng, lead_id = self.rng, f"lead-{self.leads}"
        props: dict[str, Any] = {"source": source}
        if rng.random() < 0.35:
            now = datetime.fromtimestamp(tick.now_ns / 1e9, BERLIN)
            created = add_months(now, -6) + timedelta(seconds=float(rng.uniform(0, 60)))
            props = {"source": "trade_fair_import", "created_at": created.isoformat()}
        out.sr_events.append(self._event("lead_created", tick, lead_id, **props))
        if rng.random() < 0.1:
            hold_id = f"hold-{self.leads}"
            self.open_holds.append((lead_id, hold_id))
            out.sr_events.append(
                self._event("lead_hold_started", tick, lead_id, hold_id=hold_id, reason="tasting")
            )

    def tick(self, tick: Tick) -> Signals:
        rng, c, out = self.rng, self.counters, Signals()
        seconds = tick.real_seconds
        for source, weight in zip(_SOURCES, (1.0, 0.4, 0.3, 0.2), strict=True):
            n = int(rng.poisson(0.8 * weight * tick.load * seconds))
            c.add("leads_created_total", n, source=source)
            for _ in range(n):
                self.leads += 1
                self._lead(tick, out, source)
        # stop-clock holds end after a while
        for lead_id, hold_id in list(self.open_holds):
            if rng.random() < 0.05 * seconds:
                self.open_holds.remove((lead_id, hold_id))
                out.sr_events.append(self._event("lead_hold_ended", tick, lead_id, hold_id=hold_id))
        self.holds_active = max(0.0, self.holds_active + float(rng.normal(0, 0.5)))
        # sample requests: success rate ~97 %, ~50 % during the incident (a courier lost a day's
        # samples), deep enough that a one-minute rate crosses 85 % within seconds
        success_p = 0.5 if "sample_success_drop" in tick.active else 0.97
        for product in _PRODUCTS:
            n = int(rng.poisson(1.2 * seconds))
            ok = int(rng.binomial(n, success_p))
            c.add("sample_request_total", n, product_type=product)
            c.add("sample_request_success_total", ok, product_type=product)
        # event catering: requests and answer time against the 24 h SLA
        n = int(rng.poisson(0.2 * tick.load * seconds))
        c.add("catering_requests_total", n, event_type="corporate")
        c.add("catering_response_seconds_sum", float(rng.gamma(4, 3600, n).sum()))
        c.add("catering_response_seconds_count", n)
        # AI assistant token usage (and its cost) and sales time by activity
        tokens = float(rng.gamma(2, 1500) * tick.load * seconds)
        c.add("ai_tokens_used_total", tokens, model="gpt-4o-mini")
        c.add("ai_cost_eur_total", tokens * 0.6e-6)
        for activity, share in (("calls", 0.4), ("visits", 0.3), ("admin", 0.3)):
            c.add("sales_time_seconds_total", share * seconds * tick.load * 3, activity=activity)
        cost = _SPEND_PER_LEAD_EUR * float(rng.uniform(0.9, 1.1))
        if "cost_budget_exceeded" in tick.active:
            cost *= 1.8  # an AI batch job gone wild: above the 25 EUR budget
        out.remote_write += c.samples()
        # backups (seed 002: RPO per data class): lead data every 15 min, the archive every 6 h
        now_s = tick.now_ns / 1e9
        out.remote_write += [
            ({"__name__": "finops_cost_per_lead", "company": "freshfoodz"}, cost),
            ({"__name__": "lead_holds_active"}, round(self.holds_active)),
            ({"__name__": "backup_last_success_timestamp_seconds", "data_class": "lead_protection"},
             now_s - now_s % 900),
            ({"__name__": "backup_last_success_timestamp_seconds", "data_class": "archive"},
             now_s - now_s % 21_600),
        ]  # fmt: skip
        return out
