"""Alertmanager's configuration (``alertmanager.yml``) as pydantic models.

The shape, defaults and validation messages follow Alertmanager's ``config/config.go`` so a
user's file loads here exactly when it loads there, and a bad one is rejected with the message
Alertmanager would print (``undefined receiver "x" used in route``, ...). Unknown keys are errors,
as with Alertmanager's strict YAML decoding.

Receivers keep the integrations signalroom delivers to (webhook, email, Slack, PagerDuty,
MS Teams) as typed models with their defaults and checks, and the rest as loose mappings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from signalroom.alerting.matchers import (
    Matcher,
    MatcherError,
    MatchType,
    ParseMode,
    is_valid_label_name,
    parse_matchers,
    sort_matchers,
)
from signalroom.alerting.timeinterval import NamedTimeInterval, TimeInterval

__all__ = [
    "AlertmanagerConfig",
    "AlertmanagerConfigError",
    "EmailConfig",
    "GlobalConfig",
    "HTTPClientConfig",
    "InhibitRule",
    "MSTeamsConfig",
    "PagerdutyConfig",
    "Receiver",
    "Route",
    "SlackConfig",
    "WebhookConfig",
    "config_error_message",
    "format_duration",
    "load_alertmanager_config",
    "parse_duration",
]

# The matcher syntax used for `matchers:` lists. Alertmanager 0.25 (the conformance reference)
# has only the classic parser; newer versions default to "fallback".
MATCHER_PARSE_MODE: ParseMode = "classic"


class AlertmanagerConfigError(ValueError):
    """An Alertmanager configuration is invalid; the message is Alertmanager's wording."""


# --- durations ---------------------------------------------------------------------------

_UNITS: dict[str, tuple[int, int]] = {  # unit -> (order, milliseconds)
    "y": (1, 365 * 24 * 3600 * 1000),
    "w": (2, 7 * 24 * 3600 * 1000),
    "d": (3, 24 * 3600 * 1000),
    "h": (4, 3600 * 1000),
    "m": (5, 60 * 1000),
    "s": (6, 1000),
    "ms": (7, 1),
}
_MAX_NS = (1 << 63) - 1


def parse_duration(text: str) -> timedelta:
    """Prometheus duration syntax: ``1d12h``, ``30s``, ``500ms``, ``0``; units largest first."""
    if text == "0":
        return timedelta(0)
    if text == "":
        raise ValueError("empty duration string")
    rest, total_ms, last_order = text, 0, 0
    while rest:
        m = re.match(r"([0-9]+)([^0-9]*)", rest)
        if m is None or not m.group(2):
            raise ValueError(f"not a valid duration string: {_go_q(text)}")
        value, unit = int(m.group(1)), m.group(2)
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {_go_q(unit)} in duration {_go_q(text)}")
        order, mult = _UNITS[unit]
        if order <= last_order:
            raise ValueError(f"not a valid duration string: {_go_q(text)}")
        last_order = order
        total_ms += value * mult
        if total_ms * 1_000_000 > _MAX_NS:
            raise ValueError("duration out of range")
        rest = rest[m.end() :]
    return timedelta(milliseconds=total_ms)


def format_duration(value: timedelta) -> str:
    """Prometheus' ``Duration.String()``: ``5m``, ``1h30m``, ``1w``, ``0s``."""
    ms = int(value / timedelta(milliseconds=1))
    if ms == 0:
        return "0s"
    out = []
    for unit, exact in (
        ("y", True),
        ("w", True),
        ("d", False),
        ("h", False),
        ("m", False),
        ("s", False),
        ("ms", False),
    ):
        mult = _UNITS[unit][1]
        if exact and ms % mult != 0:
            continue
        count = ms // mult
        if count > 0:
            out.append(f"{count}{unit}")
            ms -= count * mult
    return "".join(out)


def _go_q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _duration_before(raw: Any) -> Any:
    if raw is None or isinstance(raw, timedelta):
        return raw
    if isinstance(raw, bool):
        raise ValueError(f"not a valid duration string: {_go_q(str(raw).lower())}")
    return parse_duration(str(raw))


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_before),
    PlainSerializer(format_duration, return_type=str),
]


# --- scalars -----------------------------------------------------------------------------


def _scalar_to_str(raw: Any) -> Any:
    """YAML scalars become their text, as Go's YAML decoder does for string fields."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return str(raw)
    return raw


def _parse_url(raw: Any) -> Any:
    if raw is None:
        return None
    text = str(raw)
    if text == "<secret>":  # a redacted config read back from the API
        return text
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"parse {_go_q(text)}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {_go_q(parts.scheme)} for URL")
    if not parts.netloc:
        raise ValueError("missing host for URL")
    return text


URL = Annotated[str, BeforeValidator(_parse_url)]


def _parse_host_port(raw: Any) -> Any:
    if raw is None:
        return ""
    text = str(raw)
    if text == "":
        return ""
    m = re.fullmatch(r"\[([^\]]*)\]:(.*)|([^:]*):([^:]*)", text)
    if m is None:
        if ":" not in text:
            raise ValueError(f"address {text}: missing port in address")
        raise ValueError(f"address {text}: too many colons in address")
    port = m.group(2) if m.group(1) is not None else m.group(4)
    if port == "":
        raise ValueError(f"address {_go_q(text)}: port cannot be empty")
    return text


HostPort = Annotated[str, BeforeValidator(_parse_host_port)]
LooseStr = Annotated[str, BeforeValidator(_scalar_to_str)]


def _label_value_map(raw: Any) -> Any:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping of label names to values")
    out: dict[str, str] = {}
    for key, value in raw.items():
        name = str(_scalar_to_str(key))
        if not is_valid_label_name(name):
            raise ValueError(f"invalid label name {_go_q(name)}")
        out[name] = "" if value is None else str(_scalar_to_str(value))
    return out


def _label_regex_map(raw: Any) -> Any:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping of label names to regular expressions")
    out: dict[str, str] = {}
    for key, value in raw.items():
        name = str(_scalar_to_str(key))
        if not is_valid_label_name(name):
            raise ValueError(f"invalid label name {_go_q(name)}")
        if value is None:
            raise ValueError(f"invalid regexp value for {_go_q(name)}")
        pattern = str(_scalar_to_str(value))
        try:
            Matcher.create(MatchType.REGEXP, name, pattern)
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
        out[name] = pattern
    return out


LabelValueMap = Annotated[dict[str, str] | None, BeforeValidator(_label_value_map)]
LabelRegexMap = Annotated[dict[str, str] | None, BeforeValidator(_label_regex_map)]


def _matcher_lines(raw: Any) -> Any:
    if raw is None:
        return []
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        raise ValueError("matchers must be a list of strings")
    found: list[Matcher] = []
    for line in raw:
        if isinstance(line, Matcher):
            found.append(line)
            continue
        try:
            found.extend(parse_matchers(str(_scalar_to_str(line)), MATCHER_PARSE_MODE))
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
    return sort_matchers(found)


def _matchers_out(matchers: list[Matcher]) -> list[str]:
    return [str(m) for m in matchers]


MatcherList = Annotated[
    list[Matcher],
    BeforeValidator(_matcher_lines),
    PlainSerializer(_matchers_out, return_type=list[str]),
]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        arbitrary_types_allowed=True,
        coerce_numbers_to_str=True,
    )


class _Loose(BaseModel):
    """Validated where it matters, but keeps keys signalroom does not model yet."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        coerce_numbers_to_str=True,
    )


# --- HTTP client -------------------------------------------------------------------------


class HTTPClientConfig(_Loose):
    """Prometheus common ``http_config`` (auth, TLS, proxy)."""

    basic_auth: dict[str, Any] | None = None
    authorization: dict[str, Any] | None = None
    oauth2: dict[str, Any] | None = None
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    proxy_url: URL | None = None
    tls_config: dict[str, Any] | None = None
    follow_redirects: bool = True
    enable_http2: bool = True

    @model_validator(mode="after")
    def _exclusive_auth(self) -> HTTPClientConfig:
        if self.bearer_token and self.bearer_token_file:
            raise ValueError("at most one of bearer_token & bearer_token_file must be configured")
        bearer = bool(self.bearer_token or self.bearer_token_file)
        if (self.basic_auth is not None or self.oauth2 is not None) and bearer:
            raise ValueError(
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file "
                "must be configured"
            )
        if self.basic_auth is not None and self.oauth2 is not None:
            raise ValueError("at most one of basic_auth, oauth2 & authorization must be configured")
        if self.authorization is not None and (
            bearer or self.basic_auth is not None or self.oauth2 is not None
        ):
            raise ValueError("at most one of basic_auth, oauth2 & authorization must be configured")
        auth = self.basic_auth
        if auth is not None and auth.get("password") and auth.get("password_file"):
            raise ValueError(
                "at most one of basic_auth password & password_file must be configured"
            )
        return self


# --- global ------------------------------------------------------------------------------


class GlobalConfig(_Strict):
    """Defaults shared by all receivers, and the resolve timeout for alerts without endsAt."""

    resolve_timeout: Duration = timedelta(minutes=5)
    http_config: HTTPClientConfig = Field(default_factory=HTTPClientConfig)

    smtp_from: str = ""
    smtp_hello: str = "localhost"
    smtp_smarthost: HostPort = ""
    smtp_auth_username: str = ""
    smtp_auth_password: str = ""
    smtp_auth_password_file: str = ""
    smtp_auth_secret: str = ""
    smtp_auth_identity: str = ""
    smtp_require_tls: bool = True
    smtp_tls_config: dict[str, Any] | None = None

    slack_api_url: URL | None = None
    slack_api_url_file: str = ""
    pagerduty_url: URL = "https://events.pagerduty.com/v2/enqueue"
    opsgenie_api_url: URL = "https://api.opsgenie.com/"
    opsgenie_api_key: str = ""
    opsgenie_api_key_file: str = ""
    wechat_api_url: URL = "https://qyapi.weixin.qq.com/cgi-bin/"
    wechat_api_secret: str = ""
    wechat_api_corp_id: str = ""
    victorops_api_url: URL = "https://alert.victorops.com/integrations/generic/20131114/alert/"
    victorops_api_key: str = ""
    victorops_api_key_file: str = ""
    telegram_api_url: URL = "https://api.telegram.org"
    webex_api_url: URL = "https://webexapis.com/v1/messages"

    @model_validator(mode="after")
    def _exclusive(self) -> GlobalConfig:
        pairs = (
            ("slack_api_url", "slack_api_url_file"),
            ("opsgenie_api_key", "opsgenie_api_key_file"),
            ("victorops_api_key", "victorops_api_key_file"),
            ("smtp_auth_password", "smtp_auth_password_file"),
        )
        for inline, file in pairs:
            if getattr(self, inline) and getattr(self, file):
                raise ValueError(f"at most one of {inline} & {file} must be configured")
        return self


# --- receivers ---------------------------------------------------------------------------


class WebhookConfig(_Loose):
    """``webhook_configs``: POSTs the v4 JSON payload to ``url``."""

    send_resolved: bool = True
    url: URL | None = None
    url_file: str | None = None
    max_alerts: int = Field(default=0, ge=0)
    timeout: Duration | None = None
    http_config: HTTPClientConfig | None = None

    @model_validator(mode="after")
    def _url(self) -> WebhookConfig:
        if self.url is None and not self.url_file:
            raise ValueError("one of url or url_file must be configured")
        if self.url is not None and self.url_file:
            raise ValueError("at most one of url & url_file must be configured")
        return self


class EmailConfig(_Loose):
    """``email_configs``; unset SMTP settings are taken from ``global``."""

    send_resolved: bool = False
    to: str = ""
    from_: str = Field(default="", alias="from")
    hello: str = ""
    smarthost: HostPort = ""
    auth_username: str = ""
    auth_password: str = ""
    auth_password_file: str = ""
    auth_secret: str = ""
    auth_identity: str = ""
    headers: dict[str, LooseStr] = Field(default_factory=dict)
    html: str = '{{ template "email.default.html" . }}'
    text: str = ""
    require_tls: bool | None = None
    tls_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        if not self.to:
            raise ValueError("missing to address in email config")
        normalized: dict[str, str] = {}
        for key, value in self.headers.items():
            canonical = "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))
            if canonical in normalized:
                raise ValueError(f"duplicate header {_go_q(canonical)} in email config")
            normalized[canonical] = value
        self.headers = normalized
        if self.auth_password and self.auth_password_file:
            raise ValueError("at most one of auth_password & auth_password_file must be configured")
        return self


class SlackConfig(_Loose):
    """``slack_configs`` (incoming webhook); ``api_url`` defaults to ``global.slack_api_url``."""

    send_resolved: bool = False
    api_url: URL | None = None
    api_url_file: str = ""
    channel: str = ""
    username: str = '{{ template "slack.default.username" . }}'
    color: str = '{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}'
    title: str = '{{ template "slack.default.title" . }}'
    title_link: str = '{{ template "slack.default.titlelink" . }}'
    pretext: str = '{{ template "slack.default.pretext" . }}'
    text: str = '{{ template "slack.default.text" . }}'
    fallback: str = '{{ template "slack.default.fallback" . }}'
    footer: str = '{{ template "slack.default.footer" . }}'
    icon_emoji: str = '{{ template "slack.default.iconemoji" . }}'
    icon_url: str = '{{ template "slack.default.iconurl" . }}'
    callback_id: str = '{{ template "slack.default.callbackid" . }}'
    image_url: str = ""
    thumb_url: str = ""
    link_names: bool = False
    short_fields: bool = False
    mrkdwn_in: list[str] = Field(default_factory=lambda: ["fallback", "pretext", "text"])
    fields: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    http_config: HTTPClientConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> SlackConfig:
        if self.api_url is not None and self.api_url_file:
            raise ValueError("at most one of api_url/api_url_file must be configured")
        return self


class PagerdutyConfig(_Loose):
    """``pagerduty_configs``: Events API v2 with ``routing_key``, v1 with ``service_key``."""

    send_resolved: bool = True
    routing_key: str = ""
    routing_key_file: str = ""
    service_key: str = ""
    service_key_file: str = ""
    url: URL | None = None
    client: str = '{{ template "pagerduty.default.client" . }}'
    client_url: str = '{{ template "pagerduty.default.clientURL" . }}'
    description: str = '{{ template "pagerduty.default.description" .}}'
    details: dict[str, LooseStr] | None = None
    images: list[dict[str, Any]] = Field(default_factory=list)
    links: list[dict[str, Any]] = Field(default_factory=list)
    source: str = ""
    severity: str = "error"
    class_: str = Field(default="", alias="class")
    component: str = ""
    group: str = ""
    http_config: HTTPClientConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> PagerdutyConfig:
        if self.routing_key and self.routing_key_file:
            raise ValueError("at most one of routing_key & routing_key_file must be configured")
        if self.service_key and self.service_key_file:
            raise ValueError("at most one of service_key & service_key_file must be configured")
        if not (
            self.routing_key or self.routing_key_file or self.service_key or self.service_key_file
        ):
            raise ValueError("missing service or routing key in PagerDuty config")
        if self.details is None:
            self.details = {
                "firing": '{{ template "pagerduty.default.instances" .Alerts.Firing }}',
                "resolved": '{{ template "pagerduty.default.instances" .Alerts.Resolved }}',
                "num_firing": "{{ .Alerts.Firing | len }}",
                "num_resolved": "{{ .Alerts.Resolved | len }}",
            }
        if not self.source:
            self.source = self.client
        return self


class MSTeamsConfig(_Loose):
    """``msteams_configs`` (incoming webhook)."""

    send_resolved: bool = True
    webhook_url: URL | None = None
    webhook_url_file: str = ""
    title: str = '{{ template "msteams.default.title" . }}'
    summary: str = '{{ template "msteams.default.summary" . }}'
    text: str = '{{ template "msteams.default.text" . }}'
    http_config: HTTPClientConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> MSTeamsConfig:
        if self.webhook_url is None and not self.webhook_url_file:
            raise ValueError("one of webhook_url or webhook_url_file must be configured")
        if self.webhook_url is not None and self.webhook_url_file:
            raise ValueError("at most one of webhook_url & webhook_url_file must be configured")
        return self


LooseIntegration = dict[str, Any]


class Receiver(_Strict):
    """A named set of integrations an alert group is delivered to."""

    name: str = ""
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    pagerduty_configs: list[PagerdutyConfig] = Field(default_factory=list)
    msteams_configs: list[MSTeamsConfig] = Field(default_factory=list)
    # Integrations signalroom does not deliver to yet: accepted and kept as written.
    discord_configs: list[LooseIntegration] = Field(default_factory=list)
    opsgenie_configs: list[LooseIntegration] = Field(default_factory=list)
    wechat_configs: list[LooseIntegration] = Field(default_factory=list)
    pushover_configs: list[LooseIntegration] = Field(default_factory=list)
    victorops_configs: list[LooseIntegration] = Field(default_factory=list)
    sns_configs: list[LooseIntegration] = Field(default_factory=list)
    telegram_configs: list[LooseIntegration] = Field(default_factory=list)
    webex_configs: list[LooseIntegration] = Field(default_factory=list)
    msteamsv2_configs: list[LooseIntegration] = Field(default_factory=list)
    jira_configs: list[LooseIntegration] = Field(default_factory=list)
    rocketchat_configs: list[LooseIntegration] = Field(default_factory=list)
    mattermost_configs: list[LooseIntegration] = Field(default_factory=list)

    @field_validator(
        "webhook_configs",
        "email_configs",
        "slack_configs",
        "pagerduty_configs",
        "msteams_configs",
        mode="before",
    )
    @classmethod
    def _null_list(cls, raw: Any) -> Any:
        return [] if raw is None else raw

    @model_validator(mode="after")
    def _named(self) -> Receiver:
        if self.name == "":
            raise ValueError("missing name in receiver")
        return self

    def integration_count(self) -> int:
        return sum(
            len(getattr(self, name))
            for name in type(self).model_fields
            if name.endswith("_configs")
        )


# --- routes ------------------------------------------------------------------------------


class Route(_Strict):
    """One node of the routing tree as written in the configuration.

    ``group_by: ['...']`` sets ``group_by_all``; ``group_by_labels`` is ``None`` when the node
    does not set its own grouping (an empty list inherits too, as in Alertmanager).
    """

    receiver: str = ""
    group_by: list[LooseStr] | None = None
    match: LabelValueMap = None
    match_re: LabelRegexMap = None
    matchers: MatcherList = Field(default_factory=list)
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None

    @field_validator("receiver", mode="before")
    @classmethod
    def _receiver(cls, raw: Any) -> Any:
        return "" if raw is None else raw

    @field_validator("routes", "mute_time_intervals", "active_time_intervals", mode="before")
    @classmethod
    def _null_list(cls, raw: Any) -> Any:
        return [] if raw is None else raw

    @model_validator(mode="after")
    def _check(self) -> Route:
        labels: list[str] = []
        seen_all = False
        for name in self.group_by or []:
            if name == "...":
                seen_all = True
            elif not is_valid_label_name(name):
                raise ValueError(f"invalid label name {_go_q(name)} in group_by list")
            else:
                labels.append(name)
        if labels and seen_all:
            raise ValueError(
                "cannot have wildcard group_by (`...`) and other labels at the same time"
            )
        seen: set[str] = set()
        for name in labels:
            if name in seen:
                raise ValueError(f"duplicated label {_go_q(name)} in group_by")
            seen.add(name)
        if self.group_interval is not None and self.group_interval == timedelta(0):
            raise ValueError("group_interval cannot be zero")
        if self.repeat_interval is not None and self.repeat_interval == timedelta(0):
            raise ValueError("repeat_interval cannot be zero")
        return self

    @property
    def group_by_all(self) -> bool:
        return "..." in (self.group_by or [])

    @property
    def group_by_labels(self) -> list[str] | None:
        labels = [n for n in (self.group_by or []) if n != "..."]
        return labels or None

    def all_matchers(self) -> list[Matcher]:
        """Legacy ``match``/``match_re`` and ``matchers`` combined and sorted, as routing uses them.

        A ``match_re`` value is wrapped in ``^(?:...)$`` once more, which is how Alertmanager
        shows it in route keys (``{a=~"^(?:x|y)$"}``).
        """
        found: list[Matcher] = []
        for name, value in (self.match or {}).items():
            found.append(Matcher.create(MatchType.EQUAL, name, value))
        for name, pattern in (self.match_re or {}).items():
            found.append(Matcher.create(MatchType.REGEXP, name, "^(?:" + pattern + ")$"))
        found.extend(self.matchers)
        return sort_matchers(found)

    def has_matchers(self) -> bool:
        return bool(self.match or self.match_re or self.matchers)

    def walk(self) -> Iterator[Route]:
        yield self
        for child in self.routes:
            yield from child.walk()


# --- inhibition --------------------------------------------------------------------------


class InhibitRule(_Strict):
    """Mute target alerts while a source alert with equal ``equal`` labels is firing."""

    name: str = ""
    source_match: LabelValueMap = None
    source_match_re: LabelRegexMap = None
    source_matchers: MatcherList = Field(default_factory=list)
    target_match: LabelValueMap = None
    target_match_re: LabelRegexMap = None
    target_matchers: MatcherList = Field(default_factory=list)
    equal: list[LooseStr] = Field(default_factory=list)

    @field_validator("equal", mode="before")
    @classmethod
    def _equal(cls, raw: Any) -> Any:
        if raw is None:
            return []
        for name in raw:
            if not is_valid_label_name(str(name)):
                raise ValueError(f"invalid label name {_go_q(str(name))} in equal list")
        return raw

    def source_matcher_list(self) -> list[Matcher]:
        return _combine(self.source_match, self.source_match_re, self.source_matchers)

    def target_matcher_list(self) -> list[Matcher]:
        return _combine(self.target_match, self.target_match_re, self.target_matchers)


def _combine(
    match: dict[str, str] | None, match_re: dict[str, str] | None, matchers: list[Matcher]
) -> list[Matcher]:
    found = [Matcher.create(MatchType.EQUAL, n, v) for n, v in (match or {}).items()]
    found += [
        Matcher.create(MatchType.REGEXP, n, "^(?:" + v + ")$") for n, v in (match_re or {}).items()
    ]
    return found + list(matchers)


# --- the whole file ----------------------------------------------------------------------


class AlertmanagerConfig(_Strict):
    """An ``alertmanager.yml`` (or signalroom's ``alerting:`` section)."""

    global_: GlobalConfig | None = Field(default=None, alias="global")
    route: Route | None = None
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    mute_time_intervals: list[NamedTimeInterval] = Field(default_factory=list)
    time_intervals: list[NamedTimeInterval] = Field(default_factory=list)

    @field_validator(
        "inhibit_rules",
        "receivers",
        "templates",
        "mute_time_intervals",
        "time_intervals",
        mode="before",
    )
    @classmethod
    def _null_list(cls, raw: Any) -> Any:
        return [] if raw is None else raw

    @model_validator(mode="after")
    def _check(self) -> AlertmanagerConfig:
        if self.global_ is None:
            self.global_ = GlobalConfig()
        g = self.global_
        names: set[str] = set()
        for rcv in self.receivers:
            if rcv.name in names:
                raise ValueError(f"notification config name {_go_q(rcv.name)} is not unique")
            _apply_global_defaults(rcv, g)
            names.add(rcv.name)
        if self.route is None:
            raise ValueError("no route provided in config")
        root = self.route
        if not root.receiver:
            raise ValueError("root route must specify a default receiver")
        if root.has_matchers():
            raise ValueError("root route must not have any matchers")
        if root.mute_time_intervals:
            raise ValueError("root route must not have any mute time intervals")
        if root.active_time_intervals:
            raise ValueError("root route must not have any active time intervals")
        _check_receivers(root, names)
        interval_names: set[str] = set()
        for ti in self.mute_time_intervals:
            if not ti.name:
                raise ValueError("missing name in mute time interval")
            if ti.name in interval_names:
                raise ValueError(f"mute time interval {_go_q(ti.name)} is not unique")
            interval_names.add(ti.name)
        for ti in self.time_intervals:
            if not ti.name:
                raise ValueError("missing name in time interval")
            if ti.name in interval_names:
                raise ValueError(f"time interval {_go_q(ti.name)} is not unique")
            interval_names.add(ti.name)
        _check_time_intervals(root, interval_names)
        if root.continue_:
            raise ValueError("cannot have continue in root route")
        return self

    @property
    def global_config(self) -> GlobalConfig:
        assert self.global_ is not None  # set by validation
        return self.global_

    @property
    def root_route(self) -> Route:
        assert self.route is not None  # checked by validation
        return self.route

    def receiver(self, name: str) -> Receiver | None:
        for rcv in self.receivers:
            if rcv.name == name:
                return rcv
        return None

    def time_interval_map(self) -> dict[str, list[TimeInterval]]:
        """Named intervals from ``mute_time_intervals`` and ``time_intervals`` together."""
        out: dict[str, list[TimeInterval]] = {}
        for ti in [*self.mute_time_intervals, *self.time_intervals]:
            out[ti.name] = ti.time_intervals
        return out


def _apply_global_defaults(rcv: Receiver, g: GlobalConfig) -> None:
    for wh in rcv.webhook_configs:
        if wh.http_config is None:
            wh.http_config = g.http_config
    for ec in rcv.email_configs:
        if ec.tls_config is None:
            ec.tls_config = g.smtp_tls_config
        if not ec.smarthost:
            if not g.smtp_smarthost:
                raise ValueError("no global SMTP smarthost set")
            ec.smarthost = g.smtp_smarthost
        if not ec.from_:
            if not g.smtp_from:
                raise ValueError("no global SMTP from set")
            ec.from_ = g.smtp_from
        if not ec.hello:
            ec.hello = g.smtp_hello
        if not ec.auth_username:
            ec.auth_username = g.smtp_auth_username
        if not ec.auth_password and not ec.auth_password_file:
            ec.auth_password = g.smtp_auth_password
            ec.auth_password_file = g.smtp_auth_password_file
        if not ec.auth_secret:
            ec.auth_secret = g.smtp_auth_secret
        if not ec.auth_identity:
            ec.auth_identity = g.smtp_auth_identity
        if ec.require_tls is None:
            ec.require_tls = g.smtp_require_tls
    for sc in rcv.slack_configs:
        if sc.http_config is None:
            sc.http_config = g.http_config
        if sc.api_url is None and not sc.api_url_file:
            if g.slack_api_url is None and not g.slack_api_url_file:
                raise ValueError("no global Slack API URL set either inline or in a file")
            sc.api_url = g.slack_api_url
            sc.api_url_file = g.slack_api_url_file
    for pd in rcv.pagerduty_configs:
        if pd.http_config is None:
            pd.http_config = g.http_config
        if pd.url is None:
            pd.url = g.pagerduty_url
    for mt in rcv.msteams_configs:
        if mt.http_config is None:
            mt.http_config = g.http_config


def _check_receivers(route: Route, names: set[str]) -> None:
    for child in route.routes:  # children first, as Alertmanager reports the deepest one
        _check_receivers(child, names)
    if route.receiver and route.receiver not in names:
        raise ValueError(f"undefined receiver {_go_q(route.receiver)} used in route")


def _check_time_intervals(route: Route, names: set[str]) -> None:
    for child in route.routes:
        _check_time_intervals(child, names)
    for name in [*route.active_time_intervals, *route.mute_time_intervals]:
        if name not in names:
            raise ValueError(f"undefined time interval {_go_q(name)} used in route")


# --- loading -----------------------------------------------------------------------------


def config_error_message(exc: ValidationError) -> str:
    """One line per problem; Alertmanager's own wording where the check is Alertmanager's."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = _format_loc(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if err["type"] == "extra_forbidden":
            field_name = str(err["loc"][-1]) if err.get("loc") else "?"
            parent = _format_loc(err["loc"][:-1]) or "config"
            lines.append(f"field {field_name} not found in {parent}")
        elif isinstance(cause, ValueError):
            lines.append(f"{loc}: {cause}" if loc and not _is_model_level(err) else str(cause))
        else:
            lines.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "\n".join(lines)


def _is_model_level(err: Any) -> bool:
    # Cross-field checks are Alertmanager's top-level messages; print them bare.
    return len(err.get("loc", ())) == 0


def _format_loc(loc: Any) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_alertmanager_config(path: str | Path) -> AlertmanagerConfig:
    """Read a plain ``alertmanager.yml``; raises :class:`AlertmanagerConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        reason = str(exc.strerror or exc)
        # Go's syscall messages are lower-case ("no such file or directory")
        raise AlertmanagerConfigError(f"open {p}: {reason[:1].lower()}{reason[1:]}") from None
    return parse_alertmanager_config(text)


def parse_alertmanager_config(text: str) -> AlertmanagerConfig:
    """Parse YAML text into a validated config; raises :class:`AlertmanagerConfigError`."""
    try:
        # safe_load semantics; the libyaml loader when present is ~10x faster
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise AlertmanagerConfigError(f"yaml: {exc}") from None
    if data is None:
        # An empty file: Alertmanager's Load() reports the missing route.
        raise AlertmanagerConfigError("no route provided in config")
    if not isinstance(data, dict):
        raise AlertmanagerConfigError("yaml: the document must be a mapping")
    try:
        return AlertmanagerConfig.model_validate(data)
    except ValidationError as exc:
        raise AlertmanagerConfigError(config_error_message(exc)) from None
