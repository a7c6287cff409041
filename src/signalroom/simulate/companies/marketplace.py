"""Driplo C2C marketplace (seed 002/004): search, listings, messages and payments, as
remote-write metrics and business events through ``/api/sr/events``."""

from __future__ import annotations

import numpy as np

from signalroom.simulate.companies import Counters, Signals, Tick, iso

_CATEGORIES = ("fashion", "shoes", "bags", "kids")


class Marketplace:
    """The marketplace: each buyer session searches, views, sometimes messages and buys."""

    name = "marketplace"

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.counters = Counters()
        self.sessions = 0

    def tick(self, tick: Tick) -> Signals:
        rng, c, out = self.rng, self.counters, Signals()
        payment_down = "payment_failures" in tick.active
        for _ in range(int(rng.poisson(2 * tick.load * tick.real_seconds))):
            self.sessions += 1
            user = f"driplo-{int(rng.integers(1, 5000))}"
            category = str(rng.choice(_CATEGORIES))
            listing = f"l-{int(rng.integers(1, 20000))}"
            seller = f"s-{int(rng.integers(1, 800))}"
            price = round(float(rng.lognormal(np.log(25), 0.7)), 2)
            duration_ms = float(rng.lognormal(np.log(60), 0.4))
            events = [
                ("search", {"query": category, "results_count": int(rng.integers(0, 300)),
                            "category": category, "duration_ms": round(duration_ms, 1)}),
                ("listing_viewed", {"listing_id": listing, "seller_id": seller,
                                    "category": category, "price": price}),
            ]  # fmt: skip
            c.add("marketplace_searches_total", 1, category=category)
            c.add("marketplace_search_duration_seconds_sum", duration_ms / 1000)
            c.add("marketplace_search_duration_seconds_count", 1)
            if rng.random() < 0.25:
                events.append(("seller_contacted", {"listing_id": listing, "seller_id": seller,
                                                    "channel": "chat"}))  # fmt: skip
                c.add("marketplace_messages_total", 1)
                if rng.random() < 0.4:
                    ok = rng.random() < (0.4 if payment_down else 0.96)
                    order = f"d-{self.sessions}"
                    status = "succeeded" if ok else "failed"
                    events.append(("payment_processed", {"payment_id": f"pay-{self.sessions}",
                                                         "order_id": order, "status": status,
                                                         "amount": price}))  # fmt: skip
                    c.add("marketplace_payments_total", 1, status=status)
                    if ok:
                        events.append(("listing_purchased", {"order_id": order,
                                                             "listing_id": listing,
                                                             "seller_id": seller,
                                                             "amount": price,
                                                             "currency": "EUR"}))  # fmt: skip
                        c.add("marketplace_gmv_eur_total", price)
            if rng.random() < 0.05:
                c.add("marketplace_listings_created_total", 1, category=category)
            for k, (name, props) in enumerate(events):
                out.sr_events.append(
                    {"event_name": name, "user_id": user, "session_id": f"ds-{self.sessions}",
                     "timestamp": iso(tick.now_ns - (len(events) - k) * 1_000_000_000),
                     "properties": props}
                )  # fmt: skip
        out.remote_write += c.samples()
        return out
