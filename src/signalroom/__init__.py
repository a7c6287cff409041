"""signalroom: metrics, alerting, logs, traces, events and business KPIs in one program."""

__version__ = "0.1.0"
