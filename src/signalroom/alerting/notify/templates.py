"""Notification texts: template data as Alertmanager builds it, and its default templates.

``template_data`` builds Alertmanager's ``template.Data`` (receiver, status, alerts, group /
common labels and annotations, external URL). ``render(name, data)`` renders one of
Alertmanager's named default templates (``__subject``, ``slack.default.title``, ...) with the
texts of Alertmanager 0.25's ``default.tmpl``, re-expressed in Python. ``expand(text, data)``
expands a configured field: the stock ``{{ template "x" . }}`` values go to ``render``; any other
text is handed to the Go-template engine in ``signalroom.templating`` when it is installed
(this is the seam for custom templates), and is otherwise used literally.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from signalroom.alerting.alerts import Alert, fingerprint_hex, format_time

__all__ = [
    "TemplateAlert",
    "TemplateData",
    "expand",
    "render",
    "template_data",
    "template_json",
]

_GO_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def quote_meta(text: str) -> str:
    """Go's ``regexp.QuoteMeta``, which Alertmanager applies to the receiver name."""
    return _GO_META.sub(r"\\\1", text)


@dataclass
class TemplateAlert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str
    fingerprint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass
class TemplateData:
    """Alertmanager's ``template.Data``."""

    receiver: str
    status: str
    alerts: list[TemplateAlert]
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> list[TemplateAlert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[TemplateAlert]:
        return [a for a in self.alerts if a.status == "resolved"]

    def to_json(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "status": self.status,
            "alerts": [a.to_json() for a in self.alerts],
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
        }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    out = dict(maps[0])
    for m in maps[1:]:
        for k in list(out):
            if m.get(k) != out[k]:
                del out[k]
    return out


def template_json(
    receiver: str,
    group_labels: Mapping[str, str],
    alerts: list[Alert],
    now: datetime,
    external_url: str,
) -> dict[str, Any]:
    """``template_data(...).to_json()`` without the intermediate objects: the webhook
    payload, built on every flush of every group."""
    items = [
        {
            "status": "resolved" if a.ends_at is not None and not a.ends_at > now else "firing",
            "labels": a.labels,  # the flush's snapshot: not changed by anyone
            "annotations": a.annotations,
            "startsAt": format_time(a.starts_at),
            "endsAt": format_time(a.ends_at),
            "generatorURL": a.generator_url,
            "fingerprint": fingerprint_hex(a.fingerprint),
        }
        for a in alerts
    ]
    return {
        "receiver": quote_meta(receiver),
        "status": "firing" if any(i["status"] == "firing" for i in items) else "resolved",
        "alerts": items,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": external_url,
    }


def template_data(
    receiver: str,
    group_labels: Mapping[str, str],
    alerts: list[Alert],
    now: datetime,
    external_url: str,
) -> TemplateData:
    """``template.Template.Data``: status is resolved only when every alert is resolved."""
    items = [
        TemplateAlert(
            status=a.status(now),
            labels=a.labels,  # the flush's snapshot: not changed by anyone
            annotations=a.annotations,
            starts_at=a.starts_at,
            ends_at=a.ends_at,
            generator_url=a.generator_url,
            fingerprint=a.fingerprint_hex,
        )
        for a in alerts
    ]
    status = "firing" if any(i.status == "firing" for i in items) else "resolved"
    return TemplateData(
        receiver=quote_meta(receiver),
        status=status,
        alerts=items,
        group_labels=dict(group_labels),
        common_labels=_common([i.labels for i in items]),
        common_annotations=_common([i.annotations for i in items]),
        external_url=external_url,
    )


# --- Alertmanager 0.25 default.tmpl, in Python ---------------------------------------------


def _sorted_values(m: Mapping[str, str]) -> list[str]:
    return [m[k] for k in sorted(m)]


def _subject(d: TemplateData) -> str:
    out = f"[{d.status.upper()}"
    if d.status == "firing":
        out += f":{len(d.firing)}"
    out += "] " + " ".join(_sorted_values(d.group_labels)) + " "
    if len(d.common_labels) > len(d.group_labels):
        rest = {k: v for k, v in d.common_labels.items() if k not in d.group_labels}
        out += "(" + " ".join(_sorted_values(rest)) + ")"
    return out


def _am_url(d: TemplateData) -> str:
    return f"{d.external_url}/#/alerts?receiver={quote_plus(d.receiver)}"


def text_alert_list(alerts: list[TemplateAlert]) -> str:
    out = []
    for a in alerts:
        out.append("Labels:\n")
        out.extend(f" - {k} = {a.labels[k]}\n" for k in sorted(a.labels))
        out.append("Annotations:\n")
        out.extend(f" - {k} = {a.annotations[k]}\n" for k in sorted(a.annotations))
        out.append(f"Source: {a.generator_url}\n")
    return "".join(out)


def _markdown_alert_list(alerts: list[TemplateAlert]) -> str:
    out = []
    for a in alerts:
        out.append("\nLabels:\n")
        out.extend(f"  - {k} = {a.labels[k]}\n" for k in sorted(a.labels))
        out.append("\nAnnotations:\n")
        out.extend(f"  - {k} = {a.annotations[k]}\n" for k in sorted(a.annotations))
        out.append(f"\nSource: {a.generator_url}\n")
    return "".join(out) + "\n"


def _msteams_text(d: TemplateData) -> str:
    out = "\n"
    if d.firing:
        out += "\n# Alerts Firing:\n" + _markdown_alert_list(d.firing) + "\n"
    out += "\n"
    if d.resolved:
        out += "\n# Alerts Resolved:\n" + _markdown_alert_list(d.resolved) + "\n"
    return out + "\n"


def _email_text(d: TemplateData) -> str:
    # Not in Alertmanager 0.25 (which sends HTML only unless `text` is set): a plain-text
    # alternative with the same content, for clients that do not render HTML.
    out = _subject(d) + "\n\n"
    if d.firing:
        out += f"[{len(d.firing)}] Firing\n" + text_alert_list(d.firing) + "\n"
    if d.resolved:
        out += f"[{len(d.resolved)}] Resolved\n" + text_alert_list(d.resolved) + "\n"
    return out + f"View in Alertmanager: {_am_url(d)}\n"


def _email_html(d: TemplateData) -> str:
    # The structure of Alertmanager's email.default.html (header, link, firing, resolved,
    # footer) with lighter inline styling.
    e = html.escape
    group = " ".join(f"{e(k)}={e(d.group_labels[k])}" for k in sorted(d.group_labels))
    n = len(d.alerts)

    def block(alerts: list[TemplateAlert]) -> str:
        parts = []
        for a in alerts:
            labels = "".join(f"{e(k)} = {e(a.labels[k])}<br />" for k in sorted(a.labels))
            ann = ""
            if a.annotations:
                ann = "<strong>Annotations</strong><br />" + "".join(
                    f"{e(k)} = {e(a.annotations[k])}<br />" for k in sorted(a.annotations)
                )
            parts.append(
                f'<tr><td style="padding:0 0 20px"><strong>Labels</strong><br />{labels}{ann}'
                f'<a href="{e(a.generator_url)}">Source</a><br /></td></tr>'
            )
        return "".join(parts)

    body = (
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Type" '
        f'content="text/html; charset=UTF-8" /><title>{e(_subject(d))}</title></head>'
        '<body style="font-family:Helvetica,Arial,sans-serif;font-size:14px;'
        'background-color:#f6f6f6">'
        '<table style="width:100%;max-width:600px;margin:0 auto;background:#fff">'
        '<tr><td style="color:#fff;background-color:#E6522C;text-align:center;padding:20px">'
        f"{n} alert{'s' if n > 1 else ''} for {group}</td></tr>"
        f'<tr><td style="padding:10px"><table width="100%">'
        f'<tr><td style="padding:0 0 20px"><a href="{e(_am_url(d))}">View in Alertmanager</a>'
        "</td></tr>"
    )
    if d.firing:
        body += f"<tr><td><strong>[{len(d.firing)}] Firing</strong></td></tr>" + block(d.firing)
    if d.resolved:
        if d.firing:
            body += "<tr><td><br /><hr /><br /></td></tr>"
        body += f"<tr><td><strong>[{len(d.resolved)}] Resolved</strong></td></tr>" + block(
            d.resolved
        )
    body += (
        "</table></td></tr></table>"
        f'<div style="color:#999;text-align:center;padding:20px">'
        f'<a href="{e(d.external_url)}">Sent by Alertmanager</a></div></body></html>'
    )
    return body


DEFAULT_TEMPLATES: dict[str, Callable[[TemplateData], str]] = {
    "__alertmanager": lambda d: "Alertmanager",
    "__alertmanagerURL": _am_url,
    "__subject": _subject,
    "__description": lambda d: "",
    "__text_alert_list": lambda d: text_alert_list(d.alerts),
    "slack.default.title": _subject,
    "slack.default.username": lambda d: "Alertmanager",
    "slack.default.fallback": lambda d: f"{_subject(d)} | {_am_url(d)}",
    "slack.default.callbackid": lambda d: "",
    "slack.default.pretext": lambda d: "",
    "slack.default.titlelink": _am_url,
    "slack.default.iconemoji": lambda d: "",
    "slack.default.iconurl": lambda d: "",
    "slack.default.text": lambda d: "",
    "slack.default.footer": lambda d: "",
    "slack.default.color": lambda d: "danger" if d.status == "firing" else "good",
    "pagerduty.default.description": _subject,
    "pagerduty.default.client": lambda d: "Alertmanager",
    "pagerduty.default.clientURL": _am_url,
    "pagerduty.default.instances": lambda d: text_alert_list(d.alerts),
    "email.default.subject": _subject,
    "email.default.html": _email_html,
    "email.default.text": _email_text,
    "msteams.default.summary": _subject,
    "msteams.default.title": _subject,
    "msteams.default.text": _msteams_text,
}


def render(template_name: str, data: TemplateData) -> str:
    """Render one of Alertmanager's named default templates."""
    fn = DEFAULT_TEMPLATES.get(template_name)
    if fn is None:
        raise KeyError(f'template: no template "{template_name}" associated with template')
    return fn(data)


_TEMPLATE_CALL = re.compile(r'^\s*\{\{-?\s*template\s+"([^"]+)"\s+\.\s*-?\}\}\s*$')
_INSTANCES = re.compile(
    r'^\s*\{\{\s*template\s+"pagerduty\.default\.instances"\s+\.Alerts\.(Firing|Resolved)\s*\}\}\s*$'
)
_LEN = re.compile(r"^\s*\{\{\s*\.Alerts\.(Firing|Resolved)\s*\|\s*len\s*\}\}\s*$")
_COLOR = '{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}'


def expand(text: str, data: TemplateData) -> str:
    """Expand a configured template field for ``data`` (see the module docstring)."""
    if "{{" not in text:
        return text
    m = _TEMPLATE_CALL.match(text)
    if m and m.group(1) in DEFAULT_TEMPLATES:
        return render(m.group(1), data)
    m = _INSTANCES.match(text)
    if m:
        return text_alert_list(data.firing if m.group(1) == "Firing" else data.resolved)
    m = _LEN.match(text)
    if m:
        return str(len(data.firing if m.group(1) == "Firing" else data.resolved))
    if text.strip() == _COLOR:
        return "danger" if data.status == "firing" else "good"
    return _expand_with_engine(text, data)


def _expand_with_engine(text: str, data: TemplateData) -> str:
    try:
        from signalroom import templating  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return text
    renderer = getattr(templating, "render_alertmanager", None)
    if renderer is None:
        return text
    result: str = renderer(text, data)
    return result
