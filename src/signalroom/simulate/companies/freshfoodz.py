"""FreshFoodz B2B food CRM (seed 000): leads, lead-protection holds and reminders, sample
requests, event catering, AI token usage and sales time; sent by remote write, plus the CRM's
business events through ``/api/sr/events``."""

from __future__ import annotations

import numpy as np

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

    def tick(self, tick: Tick) -> Signals:
        rng, c, out = self.rng, self.counters, Signals()
        seconds = tick.real_seconds
        for source, weight in zip(_SOURCES, (1.0, 0.4, 0.3, 0.2), strict=True):
            n = int(rng.poisson(0.8 * weight * tick.load * seconds))
            c.add("leads_created_total", n, source=source)
            for _ in range(n):
                self.leads += 1
                out.sr_events.append(
                    {"event_name": "lead_created", "user_id": f"sales-{self.leads % 7}",
                     "timestamp": iso(tick.now_ns),
                     "properties": {"lead_id": f"lead-{self.leads}", "source": source}}
                )  # fmt: skip
        # lead protection: every due reminder is sent in the same tick (the SLA holds)
        due = int(rng.poisson(0.5 * seconds))
        c.add("lead_reminder_due_total", due)
        c.add("lead_reminder_sent_total", due)
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
