"""Configuration of what signalroom adds to Alertmanager: severities, escalation policies,
on-call schedules, automated recovery and runbooks.

These are the extension keys of the ``alerting:`` section (Alertmanager's own keys are
validated by :mod:`signalroom.alerting.config`, untouched)::

    alerting:
      route: {receiver: slack-ops}
      receivers: [...]
      escalation:              # severity matrix, which policy a group gets, runbooks, recovery
        severity_label: severity
        severity_matrix:
          critical: {priority: P0, response_time: 15m, policy: seed-matrix}
          warning:  {priority: P2, response_time: 1h,  policy: team-lead}
          info:     {priority: P3, response_time: 4h}
        policy_routes:         # explicit matches first, then the matrix, then default_policy
          - {matchers: ['team="payments"'], policy: payments}
        runbooks: {dirs: [/etc/signalroom/runbooks]}
        recovery:
          command_allowlist: [/usr/local/bin/settings-sync-recover]
          rules:
            - name: settings-sync
              matchers: ['alertname="SettingsSyncJobFailure"']
              command: {argv: [/usr/local/bin/settings-sync-recover, --mode=recovery],
                        timeout: 2m}
              verify: {expr: 'rate(settings_sync_errors_total[5m]) == 0', within: 5m,
                       interval: 30s}
      escalation_policies:
        - name: seed-matrix
          levels:                             # ``after``: time since escalation started
            - {after: 0s,  targets: [{receiver: dev-team}]}
            - {after: 5m,  targets: [{receiver: senior-engineers}]}
            - {after: 15m, targets: [{schedule: eng-managers}]}
            - {after: 30m, targets: [{receiver: leadership}]}
      schedules:
        - name: eng-managers
          time_zone: Europe/Berlin
          receiver: managers-pager            # pages whoever is on call (unless oncall.users)
          layers:
            - {name: weekly, rotation: weekly, start: 2024-01-01, handoff_time: "09:00",
               users: [anna, ben, carla]}
      oncall:
        users: {anna: {receiver: anna-phone}}

:func:`parse_extensions` validates them against the receivers of the Alertmanager part and
raises :class:`EscalationConfigError` with one problem per fault, each with its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from signalroom.alerting.config import Duration, MatcherList

__all__ = [
    "EXTENSION_KEYS",
    "CommandAction",
    "EscalationConfigError",
    "EscalationExtensions",
    "EscalationLevel",
    "EscalationPolicy",
    "EscalationSettings",
    "EscalationTarget",
    "Layer",
    "OncallSettings",
    "OncallUser",
    "Override",
    "PolicyRoute",
    "RecoveryRule",
    "RecoverySettings",
    "Restriction",
    "RunbookSettings",
    "Schedule",
    "SeverityLevel",
    "VerifySpec",
    "WebhookAction",
    "extension_problems",
    "parse_extensions",
]

EXTENSION_KEYS = ("escalation", "escalation_policies", "schedules", "oncall")

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HHMM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")

Problem = tuple[tuple[str | int, ...], str]


class EscalationConfigError(ValueError):
    """The extension keys are invalid; ``problems`` holds (path, message) pairs."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(
            "\n".join(f"{_format_path(path)}: {message}" for path, message in self.problems)
        )


def _format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out or "alerting"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


def _clock_time(raw: Any) -> time:
    if isinstance(raw, time):
        return raw
    # YAML 1.1 reads an unquoted 09:00 as the sexagesimal integer 540 (minutes).
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 24 * 60:
        return time(raw // 60, raw % 60)
    m = _HHMM.match(str(raw))
    if m is None:
        raise ValueError(f"{raw!r} is not a time of day HH:MM")
    return time(int(m.group(1)), int(m.group(2)))


# --- severity matrix and policy selection -----------------------------------------------------


class SeverityLevel(_Model):
    """One row of the severity matrix (seed 000: critical <15min immediate, ...)."""

    priority: str | None = None
    response_time: Duration | None = None
    policy: str | None = None
    description: str = ""


class PolicyRoute(_Model):
    """Groups whose alerts match all ``matchers`` get ``policy`` (first match wins)."""

    matchers: MatcherList
    policy: str


class RunbookSettings(_Model):
    """Extra directories of ``<name>.md`` runbooks (searched before the shipped ones) and
    the base URL runbook names link to (default: the server's external URL)."""

    dirs: list[str] = Field(default_factory=list)
    base_url: str | None = None


class WebhookAction(_Model):
    url: str
    timeout: Duration = timedelta(seconds=30)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must be http:// or https://")
        return value


class CommandAction(_Model):
    """An allow-listed program run without a shell; exit code 0 means the action worked."""

    argv: list[str] = Field(min_length=1)
    timeout: Duration = timedelta(seconds=60)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class VerifySpec(_Model):
    """Recovery counts when ``expr`` returns a non-empty, non-zero result within ``within``."""

    expr: str
    within: Duration = timedelta(minutes=5)
    interval: Duration = timedelta(seconds=30)


class RecoveryRule(_Model):
    name: str
    matchers: MatcherList
    webhook: WebhookAction | None = None
    command: CommandAction | None = None
    verify: VerifySpec | None = None
    # Hold the people escalation while the action runs and verifies (the seed's flow).
    hold_escalation: bool = True


class RecoverySettings(_Model):
    command_allowlist: list[str] = Field(default_factory=list)
    output_limit: int = Field(default=16384, ge=256, le=1 << 20)
    rules: list[RecoveryRule] = Field(default_factory=list)


class EscalationSettings(_Model):
    """The ``escalation:`` key."""

    severity_label: str = "severity"
    severity_matrix: dict[str, SeverityLevel] = Field(default_factory=dict)
    policy_routes: list[PolicyRoute] = Field(default_factory=list)
    default_policy: str | None = None
    # While a group is acknowledged, repeat notifications of an unchanged group are not sent.
    ack_suppresses_repeats: bool = True
    tick: Duration = timedelta(seconds=5)
    runbooks: RunbookSettings = Field(default_factory=RunbookSettings)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)


# --- escalation policies ------------------------------------------------------------------------


class EscalationTarget(_Model):
    """A receiver of the Alertmanager config, or whoever an on-call schedule names."""

    receiver: str | None = None
    schedule: str | None = None

    def describe(self) -> str:
        return f"receiver:{self.receiver}" if self.receiver else f"schedule:{self.schedule}"


class EscalationLevel(_Model):
    after: Duration = timedelta(0)
    targets: list[EscalationTarget] = Field(min_length=1)


class EscalationPolicy(_Model):
    name: str
    levels: list[EscalationLevel] = Field(min_length=1)
    # Run the levels this many more times; loop k starts k * repeat_interval after the start.
    repeat: int = Field(default=0, ge=0, le=100)
    repeat_interval: Duration | None = None
    description: str = ""


# --- on-call schedules -------------------------------------------------------------------------


class Restriction(_Model):
    """When a layer is on duty: ``daily`` every day from ``start`` to ``end`` (may wrap past
    midnight), or ``weekly`` from ``start_day start`` to ``end_day end`` (may wrap the week)."""

    type: Literal["daily", "weekly"]
    start: time
    end: time
    start_day: str | None = None
    end_day: str | None = None

    _clock = field_validator("start", "end", mode="before")(_clock_time)

    @field_validator("start_day", "end_day")
    @classmethod
    def _weekday(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in WEEKDAYS:
            raise ValueError(f"{value!r} is not a weekday (monday ... sunday)")
        return value.lower() if value else value


class Layer(_Model):
    """A rotation: ``users`` take turns, each for ``shift_length`` days or weeks, handing off
    at ``handoff_time`` (local wall time of the schedule); the first shift starts ``start``."""

    name: str
    rotation: Literal["daily", "weekly"]
    shift_length: int = Field(default=1, ge=1, le=366)
    start: date
    handoff_time: time = time(9, 0)
    users: list[str] = Field(min_length=1)
    restrictions: list[Restriction] = Field(default_factory=list)

    _clock = field_validator("handoff_time", mode="before")(_clock_time)

    @field_validator("start", mode="before")
    @classmethod
    def _date(cls, raw: Any) -> Any:
        if isinstance(raw, datetime):
            return raw.date()
        return raw


class Override(_Model):
    """``user`` is on call from ``start`` to ``end`` (end exclusive), whoever the layers say."""

    user: str
    start: datetime
    end: datetime


class Schedule(_Model):
    name: str
    time_zone: str = "UTC"
    receiver: str | None = None
    layers: list[Layer] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    description: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class OncallUser(_Model):
    receiver: str
    email: str | None = None
    phone: str | None = None


class OncallSettings(_Model):
    """The ``oncall:`` key: how to reach people named in schedules."""

    users: dict[str, OncallUser] = Field(default_factory=dict)


class EscalationExtensions(_Model):
    """All four extension keys, validated and cross-checked."""

    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    oncall: OncallSettings = Field(default_factory=OncallSettings)

    def policy(self, name: str | None) -> EscalationPolicy | None:
        for p in self.escalation_policies:
            if p.name == name:
                return p
        return None

    def schedule(self, name: str) -> Schedule | None:
        for s in self.schedules:
            if s.name == name:
                return s
        return None

    def severity_rank(self, value: str) -> int:
        """0 for the first (most severe) row of the matrix; unknown values rank last."""
        for i, key in enumerate(self.escalation.severity_matrix):
            if key == value:
                return i
        return len(self.escalation.severity_matrix)


def parse_extensions(
    section: Mapping[str, Any] | None,
    receivers: Sequence[str] | None = None,
    *,
    base_dir: Path | None = None,
) -> EscalationExtensions:
    """The extension keys of an ``alerting:`` section, validated; ``receivers`` (the names
    in the Alertmanager part) are checked when given. Relative runbook directories are taken
    relative to ``base_dir`` (the configuration file's directory)."""
    data = {k: v for k, v in (section or {}).items() if k in EXTENSION_KEYS and v is not None}
    try:
        ext = EscalationExtensions.model_validate(data)
    except ValidationError as exc:
        raise EscalationConfigError(
            [
                (
                    tuple(p for p in err["loc"] if isinstance(p, int) or "[" not in str(p)),
                    err["msg"].removeprefix("Value error, "),
                )
                for err in exc.errors(include_url=False)
            ]
        ) from None
    problems = _cross_check(ext, set(receivers) if receivers is not None else None)
    if problems:
        raise EscalationConfigError(problems)
    if base_dir is not None and ext.escalation.runbooks.dirs:
        dirs = [
            str(Path(d) if Path(d).is_absolute() else base_dir / d)
            for d in ext.escalation.runbooks.dirs
        ]
        runbooks = ext.escalation.runbooks.model_copy(update={"dirs": dirs})
        escalation = ext.escalation.model_copy(update={"runbooks": runbooks})
        ext = ext.model_copy(update={"escalation": escalation})
    return ext


def extension_problems(
    section: Mapping[str, Any] | None, receivers: Sequence[str] | None = None
) -> list[Problem]:
    """The problems :func:`parse_extensions` would raise, for ``check-config``."""
    try:
        parse_extensions(section, receivers)
    except EscalationConfigError as exc:
        return exc.problems
    return []


def _cross_check(ext: EscalationExtensions, receivers: set[str] | None) -> list[Problem]:
    problems: list[Problem] = []
    esc = ext.escalation

    def receiver_exists(path: tuple[str | int, ...], name: str) -> None:
        if receivers is not None and name not in receivers:
            problems.append((path, f"undefined receiver {name!r}"))

    policies: set[str] = set()
    for i, p in enumerate(ext.escalation_policies):
        path: tuple[str | int, ...] = ("escalation_policies", i)
        if not _NAME.match(p.name):
            problems.append(((*path, "name"), f"invalid name {p.name!r}"))
        if p.name in policies:
            problems.append(((*path, "name"), f"duplicate policy name {p.name!r}"))
        policies.add(p.name)
        last = timedelta(0)
        for j, level in enumerate(p.levels):
            if level.after < last:
                problems.append(
                    ((*path, "levels", j, "after"), "levels must be in order of 'after'")
                )
            last = max(last, level.after)
            for k, target in enumerate(level.targets):
                tpath = (*path, "levels", j, "targets", k)
                if (target.receiver is None) == (target.schedule is None):
                    problems.append((tpath, "a target names exactly one receiver or schedule"))
                elif target.receiver is not None:
                    receiver_exists((*tpath, "receiver"), target.receiver)
                elif target.schedule is not None and ext.schedule(target.schedule) is None:
                    problems.append(
                        ((*tpath, "schedule"), f"undefined schedule {target.schedule!r}")
                    )
        if p.repeat > 0:
            if p.repeat_interval is None:
                problems.append(((*path, "repeat_interval"), "required when repeat > 0"))
            elif p.repeat_interval <= last:
                problems.append(
                    ((*path, "repeat_interval"), "must be longer than the last level's 'after'")
                )

    def policy_exists(path: tuple[str | int, ...], name: str | None) -> None:
        if name is not None and name not in policies:
            problems.append((path, f"undefined escalation policy {name!r}"))

    for key, row in esc.severity_matrix.items():
        policy_exists(("escalation", "severity_matrix", key, "policy"), row.policy)
    for i, route in enumerate(esc.policy_routes):
        policy_exists(("escalation", "policy_routes", i, "policy"), route.policy)
    policy_exists(("escalation", "default_policy"), esc.default_policy)

    users = ext.oncall.users
    for name, user in users.items():
        receiver_exists(("oncall", "users", name, "receiver"), user.receiver)
    names: set[str] = set()
    for i, s in enumerate(ext.schedules):
        path = ("schedules", i)
        if not _NAME.match(s.name):
            problems.append(((*path, "name"), f"invalid name {s.name!r}"))
        if s.name in names:
            problems.append(((*path, "name"), f"duplicate schedule name {s.name!r}"))
        names.add(s.name)
        try:
            ZoneInfo(s.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(((*path, "time_zone"), f"unknown time zone {s.time_zone!r}"))
        if s.receiver is not None:
            receiver_exists((*path, "receiver"), s.receiver)
        people = {u for layer in s.layers for u in layer.users} | {o.user for o in s.overrides}
        unreachable = sorted(u for u in people if u not in users)
        if s.receiver is None and unreachable:
            problems.append(
                (
                    (*path, "receiver"),
                    f"no receiver for {', '.join(unreachable)}: set the "
                    "schedule's receiver or oncall.users.<name>.receiver",
                )
            )
        for j, layer in enumerate(s.layers):
            for k, r in enumerate(layer.restrictions):
                rpath = (*path, "layers", j, "restrictions", k)
                if r.type == "weekly" and (r.start_day is None or r.end_day is None):
                    problems.append((rpath, "a weekly restriction needs start_day and end_day"))
                if r.type == "daily" and (r.start_day or r.end_day):
                    problems.append((rpath, "a daily restriction has no days"))
        for j, o in enumerate(s.overrides):
            if o.start.tzinfo is None or o.end.tzinfo is None:
                problems.append(((*path, "overrides", j), "start and end need a UTC offset or Z"))
            elif o.end <= o.start:
                problems.append(((*path, "overrides", j), "end must be after start"))

    allow = esc.recovery.command_allowlist
    for i, entry in enumerate(allow):
        if not Path(entry).is_absolute():
            problems.append(
                (("escalation", "recovery", "command_allowlist", i), "must be an absolute path")
            )
    rule_names: set[str] = set()
    for i, rule in enumerate(esc.recovery.rules):
        path = ("escalation", "recovery", "rules", i)
        if rule.name in rule_names:
            problems.append(((*path, "name"), f"duplicate recovery rule {rule.name!r}"))
        rule_names.add(rule.name)
        if (rule.webhook is None) == (rule.command is None):
            problems.append((path, "a recovery rule has exactly one of webhook or command"))
        if rule.command is not None and rule.command.argv[0] not in allow:
            problems.append(
                (
                    (*path, "command", "argv", 0),
                    f"{rule.command.argv[0]!r} is not in escalation.recovery.command_allowlist",
                )
            )
        if rule.verify is not None:
            error = _promql_error(rule.verify.expr)
            if error:
                problems.append(((*path, "verify", "expr"), error))
    return problems


def _promql_error(expr: str) -> str | None:
    try:
        from signalroom.promql import ast
    except ImportError:  # pragma: no cover - the engine ships with signalroom
        return None
    try:
        ast.parse(expr)
    except Exception as exc:
        return f"invalid PromQL: {exc}"
    return None
