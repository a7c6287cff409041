"""Go text/template for rule files and notification templates.

`Template` is the engine (Go syntax, semantics and error messages); register function maps
with `Template(name, funcs)` or `Template.add_funcs`. `prometheus.py` holds Prometheus's
function map and `Expander`; the Alertmanager registers its own map on the same engine.
"""

from signalroom.templating.exec import FuncMap, Template, TemplateExecError
from signalroom.templating.parse import TemplateParseError
from signalroom.templating.prometheus import (
    ALERT_TEMPLATE_DEFS,
    Expander,
    ExpansionError,
    alert_template_data,
    check_alert_template,
    expand_alert_template,
    prometheus_funcs,
)
from signalroom.templating.values import MISSING, FuncError, GoStruct, SafeHTML, StringMap

__all__ = [
    "ALERT_TEMPLATE_DEFS",
    "MISSING",
    "Expander",
    "ExpansionError",
    "FuncError",
    "FuncMap",
    "GoStruct",
    "SafeHTML",
    "StringMap",
    "Template",
    "TemplateExecError",
    "TemplateParseError",
    "alert_template_data",
    "check_alert_template",
    "expand_alert_template",
    "prometheus_funcs",
]
