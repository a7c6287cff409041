"""Prometheus's template functions and expander (template/template.go semantics)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from signalroom.model.labels import Labels
from signalroom.templating.builtins import query_escape
from signalroom.templating.exec import Template, TemplateExecError
from signalroom.templating.gofmt import format_value, sprintf
from signalroom.templating.gotime import GoDuration, GoTime
from signalroom.templating.parse import TemplateParseError, Tree
from signalroom.templating.regex import go_regexp
from signalroom.templating.values import MISSING, FuncError, GoStruct, SafeHTML, StringMap

#: query(text, time_ms) -> list of (labels, value) samples.
QueryFunc = Callable[[str, int], list[tuple[Labels, float]]]

ALERT_TEMPLATE_DEFS = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}"
    "{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)


class TemplateSample(GoStruct):
    """One query result sample as templates see it (`.Labels`, `.Value`)."""

    def __init__(self, labels: Mapping[str, str], value: float) -> None:
        super().__init__("*template.sample", Labels=StringMap(labels), Value=value)


class QueryResult(list[TemplateSample]):
    go_type = "template.queryResult"


def parse_go_float(text: str) -> float:
    """strconv.ParseFloat(text, 64) with Go's error text."""
    t = text.strip() if False else text
    low = t.lower().lstrip("+-")
    try:
        if low in ("inf", "infinity"):
            return float(t)
        if low == "nan":
            return math.nan
        if "_" in t or low.startswith("0x") or not low:
            raise ValueError
        if not all(c in "0123456789.eE+-" for c in t):
            raise ValueError
        return float(t)
    except ValueError:
        raise FuncError(
            f"strconv.ParseFloat: parsing {format_value(_q(text))}: invalid syntax"
        ) from None


def _q(text: str) -> str:
    from signalroom.templating.gofmt import go_quote

    return go_quote(text)


def convert_to_float(value: Any) -> float:
    """Prometheus's convertToFloat: float, string (ParseFloat) or integer."""
    if isinstance(value, bool):
        raise FuncError("can't convert bool to float")
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        return parse_go_float(value)
    if value is None or value is MISSING:
        raise FuncError("can't convert <nil> to float")
    raise FuncError(f"can't convert {type(value).__name__} to float")


def _g4(v: float) -> str:
    return sprintf("%.4g", v)


def humanize(i: Any) -> str:
    v = convert_to_float(i)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return _g4(v) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return _g4(v) + prefix


def humanize1024(i: Any) -> str:
    v = convert_to_float(i)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return _g4(v) + prefix


def humanize_duration(i: Any) -> str:
    v = convert_to_float(i)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign = "-"
            v = -v
        whole = int(v)
        seconds = whole % 60
        minutes = (whole // 60) % 60
        hours = (whole // 3600) % 24
        days = whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}s"


def humanize_percentage(i: Any) -> str:
    return sprintf("%.4g%%", convert_to_float(i) * 100)


def float_to_time(v: float) -> GoTime:
    if math.isnan(v) or math.isinf(v):
        raise FuncError("value is NaN or Inf")
    ts = v * 1e9
    if ts > 9.223372036854775807e18 or ts < -9.223372036854775808e18:
        raise FuncError(
            f"{format_value(v)} cannot be represented as a nanoseconds timestamp "
            "since it overflows int64"
        )
    ms = int(ts) // 1_000_000 if ts >= 0 else -((-int(ts)) // 1_000_000)
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
    return GoTime(when, (ms % 1000) * 1_000_000)


def humanize_timestamp(i: Any) -> str:
    v = convert_to_float(i)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    return float_to_time(v).go_string()


def to_time(i: Any) -> GoTime:
    return float_to_time(convert_to_float(i))


def to_duration(i: Any) -> GoDuration:
    v = convert_to_float(i)
    if math.isnan(v) or math.isinf(v):
        raise FuncError("value is NaN or Inf")
    nanos = v * 1e9
    if nanos > 9.223372036854775807e18 or nanos < -9.223372036854775808e18:
        raise FuncError(
            f"{format_value(v)} cannot be represented as a nanoseconds duration "
            "since it overflows int64"
        )
    return GoDuration(round(v * 1000) * 1_000_000)


def parse_duration(d: str) -> float:
    from signalroom.units import parse_duration_ms

    text = d
    neg = text.startswith("-")
    if neg:
        text = text[1:]
    try:
        ms = parse_duration_ms(text)
    except ValueError:
        raise FuncError(f"not a valid duration string: {_q(d)}") from None
    return (-ms if neg else ms) / 1000.0


def title(text: str) -> str:
    """strings.Title: upper-case the first letter of each word."""
    out: list[str] = []
    prev_sep = True
    for ch in text:
        if prev_sep and ch.isalpha():
            out.append(ch.upper())
        else:
            out.append(ch)
        prev_sep = not (ch.isalnum() or ch == "_")
    return "".join(out)


def split_host_port(host_port: str) -> tuple[str, str]:
    """net.SplitHostPort; raises ValueError when Go would return an error."""
    i = host_port.rfind(":")
    if i < 0:
        raise ValueError("missing port in address")
    if host_port.startswith("["):
        end = host_port.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        if end + 1 == len(host_port):
            raise ValueError("missing port in address")
        if end + 1 != i:
            raise ValueError(
                "too many colons in address"
                if host_port[end + 1] == ":"
                else "missing port in address"
            )
        host = host_port[1:end]
        if "[" in host_port[1:] or "]" in host_port[end + 1 :]:
            raise ValueError("unexpected bracket")
    else:
        host = host_port[:i]
        if ":" in host:
            raise ValueError("too many colons in address")
        if "[" in host or "]" in host:
            raise ValueError("unexpected bracket")
    return host, host_port[i + 1 :]


def strip_port(host_port: str) -> str:
    try:
        host, _ = split_host_port(host_port)
    except ValueError:
        return host_port
    return host


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def strip_domain(host_port: str) -> str:
    port = ""
    try:
        host, port = split_host_port(host_port)
    except ValueError:
        host = host_port
    if _is_ip(host):
        return host_port
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def graph_link(expr: str) -> str:
    return f"/graph?g0.expr={query_escape(expr)}&g0.tab=0"


def table_link(expr: str) -> str:
    return f"/graph?g0.expr={query_escape(expr)}&g0.tab=1"


def match(pattern: str, text: str) -> bool:
    return go_regexp(pattern).search(text) is not None


def re_replace_all(pattern: str, repl: str, text: str) -> str:
    return go_regexp(pattern).replace_all(text, repl)


def safe_html(text: str) -> SafeHTML:
    return SafeHTML(text)


def args(*values: Any) -> dict[str, Any]:
    return {f"arg{i}": v for i, v in enumerate(values)}


def first(v: QueryResult) -> TemplateSample:
    if not isinstance(v, list):
        raise FuncError(
            f"wrong type for value; expected template.queryResult; got {type(v).__name__}"
        )
    if v:
        return v[0]
    raise FuncError("first() called on vector with no elements")


def label(name: str, s: TemplateSample) -> str:
    found, labels = s.get_field("Labels")
    return str(labels.get(name, "")) if found else ""


def value(s: TemplateSample) -> float:
    found, v = s.get_field("Value")
    return float(v) if found else 0.0


def strvalue(s: TemplateSample) -> str:
    return label("__value__", s)


def sort_by_label(name: str, v: QueryResult) -> QueryResult:
    return QueryResult(sorted(v, key=lambda s: label(name, s)))


def to_upper(text: str) -> str:
    return text.upper()


def to_lower(text: str) -> str:
    return text.lower()


def url_query_escape(text: str) -> str:
    return query_escape(text)


#: Prometheus functions that need no query engine, external URL or time.
STATIC_FUNCS: dict[str, Callable[..., Any]] = {
    "first": first,
    "label": label,
    "value": value,
    "strvalue": strvalue,
    "args": args,
    "reReplaceAll": re_replace_all,
    "safeHtml": safe_html,
    "match": match,
    "title": title,
    "toUpper": to_upper,
    "toLower": to_lower,
    "graphLink": graph_link,
    "tableLink": table_link,
    "sortByLabel": sort_by_label,
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "humanizeTimestamp": humanize_timestamp,
    "toTime": to_time,
    "toDuration": to_duration,
    "parseDuration": parse_duration,
    "stripPort": strip_port,
    "stripDomain": strip_domain,
    "urlQueryEscape": url_query_escape,
}


def prometheus_funcs(
    query: QueryFunc | None = None, time_ms: int = 0, external_url: str = ""
) -> dict[str, Callable[..., Any]]:
    """The full Prometheus function map, bound to a query function, time and external URL."""

    def query_fn(q: str) -> QueryResult:
        if query is None:
            raise FuncError("no query engine available")
        return QueryResult(TemplateSample(lbls.to_dict(), v) for lbls, v in query(q, time_ms))

    def path_prefix() -> str:
        return urlsplit(external_url).path if external_url else ""

    def external_url_fn() -> str:
        return external_url

    funcs = dict(STATIC_FUNCS)
    funcs.update({"query": query_fn, "pathPrefix": path_prefix, "externalURL": external_url_fn})
    return funcs


_PARSED_MAX = 4096
#: Parse trees (or the parse error) by template name, text, options and function names.
_PARSED: dict[tuple[str, str, str, bool, frozenset[str]], dict[str, Tree] | str] = {}


@dataclass
class Expander:
    """Expands one template text the way Prometheus's template.Expander does.

    `expand()` raises `ExpansionError` with Prometheus's message ("error parsing template
    NAME: ..." / "error executing template NAME: ..."); `expand_or_error()` returns
    `<error expanding template: ...>` instead, as alerting rules do.
    """

    text: str
    name: str
    data: Any
    time_ms: int = 0
    query: QueryFunc | None = None
    external_url: str = ""
    options: tuple[str, ...] = ()
    extra_funcs: Mapping[str, Callable[..., Any]] | None = None

    def _template(self, html: bool) -> Template:
        missing = "zero"
        for opt in self.options:
            if opt.startswith("missingkey="):
                missing = opt.split("=", 1)[1]
                missing = {"default": "invalid", "invalid": "invalid"}.get(missing, missing)
        tmpl = Template(
            self.name, prometheus_funcs(self.query, self.time_ms, self.external_url), missing, html
        )
        if self.extra_funcs:
            tmpl.add_funcs(self.extra_funcs)
        if html:

            def tmpl_fn(name: str, data: Any) -> SafeHTML:
                return SafeHTML(tmpl.execute(data, name))

            tmpl.add_funcs({"tmpl": tmpl_fn})
        return tmpl

    def parse_test(self) -> None:
        """Raise TemplateParseError if the text does not parse."""
        self._template(False).parse(self.text)

    def expand(self, html: bool = False) -> str:
        tmpl = self._template(html)
        # Parse trees name functions without binding them, so one parse serves every
        # expansion of the same text (alert templates run once per alert per evaluation).
        key = (self.name, self.text, tmpl.missing_key, html, frozenset(tmpl.funcs))
        parsed = _PARSED.get(key)
        if parsed is None:
            try:
                tmpl.parse(self.text)
                parsed = dict(tmpl.trees)
            except TemplateParseError as exc:
                parsed = f"error parsing template {self.name}: {exc}"
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = parsed
        if isinstance(parsed, str):
            raise ExpansionError(parsed)
        tmpl.trees.update(parsed)
        try:
            return tmpl.execute(self.data)
        except TemplateExecError as exc:
            raise ExpansionError(f"error executing template {self.name}: {exc}") from None
        except RecursionError:
            raise ExpansionError(
                f"error executing template {self.name}: template: {self.name}: "
                "exceeded maximum template depth"
            ) from None

    def expand_html(self) -> str:
        return self.expand(html=True)

    def expand_or_error(self) -> str:
        try:
            return self.expand()
        except ExpansionError as exc:
            return f"<error expanding template: {exc}>"


class ExpansionError(Exception):
    """A template that failed to parse or execute; message as Prometheus words it."""


def alert_template_data(
    labels: Mapping[str, str],
    external_labels: Mapping[str, str],
    external_url: str,
    value: float | str,
) -> GoStruct:
    """The data alert label/annotation templates see.

    Fields: .Labels .ExternalLabels .ExternalURL .Value.
    """
    return GoStruct(
        "struct { Labels map[string]string; ExternalLabels map[string]string; "
        "ExternalURL string; Value interface {} }",
        Labels=StringMap(labels),
        ExternalLabels=StringMap(external_labels),
        ExternalURL=external_url,
        Value=value,
    )


def expand_alert_template(
    text: str,
    alert_name: str,
    labels: Mapping[str, str],
    value: float,
    time_ms: int,
    *,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
    query: QueryFunc | None = None,
) -> str:
    """Expand one alerting-rule label or annotation as Prometheus does (errors inline)."""
    data = alert_template_data(labels, external_labels or {}, external_url, value)
    return Expander(
        ALERT_TEMPLATE_DEFS + text, "__alert_" + alert_name, data, time_ms, query, external_url
    ).expand_or_error()


def check_alert_template(text: str, alert_name: str) -> str | None:
    """The parse error of an alert label/annotation template, or None (promtool's check)."""
    try:
        Expander(ALERT_TEMPLATE_DEFS + text, "__alert_" + alert_name, None).parse_test()
    except TemplateParseError as exc:
        return str(exc)
    return None


_ = format_value
