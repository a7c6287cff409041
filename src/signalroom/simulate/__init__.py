"""``signalroom simulate``: the demo workload that ``make run`` shows a new user.

The simulator plays four seed companies (FreshFoodz CRM, the SIMONE web shop, the Driplo
marketplace and the FreshPlan integration layer) and sends their signals to a running
signalroom through its public protocols only, never through internal calls:

- a **scrape target**: the simulator serves ``/metrics`` (prometheus_client) with the web shop's
  and the API gateway's HTTP golden signals, ``pg_up`` and container memory, and the shop's
  product page ``/product/<id>``, which the seasonal peak's load test (``signalroom loadtest``'s
  ramp, results pushed by remote write) drives to 5x its baseline;
- **real-user monitoring** (``/api/rum``): the shop pages' web vitals as the ``web-vitals``
  library beacons them;
- **remote write** (``/api/v1/write``): FreshFoodz CRM and Driplo business metrics;
- **OTLP** (``/v1/metrics``, ``/v1/traces``): integration-layer metrics and web-shop traces
  (frontend -> backend -> payment -> database);
- **Loki push** (``/loki/api/v1/push``): web-shop logs carrying their trace ids;
- the **capture API** (``/batch`` PostHog format, ``/api/sr/events``): business events,
  including the CRM's leads and holds from which signalroom's lead-protection job sends
  reminders.

Time is compressed (:mod:`.clock`): by default one simulated hour passes per real minute, so a
two-minute demo shows a day's traffic curve and the incident schedule (:mod:`.scenarios`).
Signals are always stamped with the real wall clock, because the server's rules evaluate in
real time; only the traffic shape and the schedule follow simulated time. Everything random
comes from one seed, so two runs with the same seed produce the same traffic.
"""

from signalroom.simulate.runner import RunSummary, run
from signalroom.simulate.scenarios import Incident, default_schedule

__all__ = ["Incident", "RunSummary", "default_schedule", "run"]
