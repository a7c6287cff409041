"""Automated recovery: run a configured action for an alert group, then check it worked.

The seed's SettingsSyncJobFailure flow: when a group whose alerts match a rule starts firing,
call a webhook (``POST`` JSON, 2xx = done) or run an allow-listed command (no shell, exit 0 =
done, stdout and stderr captured up to a limit, killed with its process group on timeout);
then evaluate the rule's PromQL condition every ``interval`` until it holds or ``within``
has passed. The escalation engine records every step in the group's timeline, resolves the
group on success and escalates to people on failure.

Verification goes through a small callable ``verify(expr) -> bool`` (true when the instant
query returns a non-empty, non-zero result), so the runner does not need the metric store;
:func:`promql_verifier` builds one from signalroom's PromQL engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from signalroom.alerting.alerts import Alert, Clock, SystemClock, format_api_time
from signalroom.alerting.escalation_config import (
    CommandAction,
    RecoveryRule,
    RecoverySettings,
    VerifySpec,
    WebhookAction,
)
from signalroom.alerting.matchers import matches_all

__all__ = [
    "ActionResult",
    "RecoveryRunner",
    "VerifyFunc",
    "VerifyResult",
    "promql_verifier",
]

log = logging.getLogger("signalroom.alerting.recovery")

VerifyFunc = Callable[[str], bool]
"""True when the PromQL expression holds now."""

SleepFunc = Callable[[float], Awaitable[None]]

# The environment a recovery command starts with (plus SIGNALROOM_* and the rule's env).
_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class ActionResult:
    """What a recovery action did: ``outcome`` is ok, failed, timeout, refused or error."""

    outcome: str
    output: str = ""
    exit_code: int | None = None
    status_code: int | None = None
    duration: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def detail(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "statusCode": self.status_code,
            "output": self.output,
            "truncated": self.truncated,
            "durationSeconds": round(self.duration, 3),
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    attempts: int
    errors: list[str] = field(default_factory=list)


def _truncate(data: bytes, limit: int) -> tuple[str, bool]:
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


class RecoveryRunner:
    """Runs recovery actions and verification for the rules of ``settings``."""

    def __init__(
        self,
        settings: RecoverySettings,
        verify: VerifyFunc | None = None,
        *,
        clock: Clock | None = None,
        sleep: SleepFunc = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.verify = verify
        self.clock = clock or SystemClock()
        self.sleep = sleep

    def match(self, alerts: Sequence[Alert]) -> RecoveryRule | None:
        """The first rule some alert matches (all of the rule's matchers)."""
        for rule in self.settings.rules:
            if any(matches_all(rule.matchers, a.labels) for a in alerts):
                return rule
        return None

    async def run_action(self, rule: RecoveryRule, context: Mapping[str, Any]) -> ActionResult:
        """Run the rule's webhook or command; ``context`` describes the group (see
        :func:`recovery_context`)."""
        if rule.command is not None:
            return await self.run_command(rule.command, rule.name, context)
        if rule.webhook is not None:
            return await self.call_webhook(rule.webhook, rule.name, context)
        return ActionResult("error", "rule has no action")

    # -- commands ----------------------------------------------------------------------------

    def allowed(self, program: str) -> bool:
        """Only exact allow-list entries run: no relative paths, no PATH lookup."""
        return os.path.isabs(program) and program in self.settings.command_allowlist

    async def run_command(
        self, action: CommandAction, rule: str, context: Mapping[str, Any]
    ) -> ActionResult:
        program = action.argv[0]
        if not self.allowed(program):
            return ActionResult("refused", f"{program!r} is not in the command allow-list")
        env = {
            **_BASE_ENV,
            "SIGNALROOM_RECOVERY_RULE": rule,
            "SIGNALROOM_TENANT": str(context.get("tenant", "")),
            "SIGNALROOM_GROUP_KEY": str(context.get("groupKey", "")),
            "SIGNALROOM_ALERTNAME": str(context.get("commonLabels", {}).get("alertname", "")),
            "SIGNALROOM_ALERTS": json.dumps(context.get("alerts", []), separators=(",", ":")),
            **action.env,
        }
        limit = self.settings.output_limit
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *action.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=action.cwd,
                env=env,
                start_new_session=True,  # its own process group, so a timeout kills children
            )
        except OSError as exc:
            return ActionResult("error", f"cannot start {program}: {exc}")
        assert proc.stdout is not None
        chunks = bytearray()

        async def drain() -> None:
            assert proc.stdout is not None
            while True:
                block = await proc.stdout.read(65536)
                if not block:
                    return
                if len(chunks) <= limit:
                    chunks.extend(block)

        try:
            async with asyncio.timeout(action.timeout.total_seconds()):
                await drain()
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            output, cut = _truncate(bytes(chunks), limit)
            return ActionResult(
                "timeout",
                output,
                exit_code=proc.returncode,
                duration=time.monotonic() - started,
                truncated=cut,
            )
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        output, cut = _truncate(bytes(chunks), limit)
        code = proc.returncode
        return ActionResult(
            "ok" if code == 0 else "failed",
            output,
            exit_code=code,
            duration=time.monotonic() - started,
            truncated=cut,
        )

    # -- webhooks ----------------------------------------------------------------------------

    async def call_webhook(
        self, action: WebhookAction, rule: str, context: Mapping[str, Any]
    ) -> ActionResult:
        body = {"version": "1", "rule": rule, **context}
        started = time.monotonic()
        limit = self.settings.output_limit
        try:
            async with httpx.AsyncClient(
                timeout=action.timeout.total_seconds(),
                headers={"User-Agent": "signalroom-recovery", **action.headers},
            ) as client:
                response = await client.post(action.url, json=body)
        except httpx.TimeoutException as exc:
            return ActionResult(
                "timeout", f"{type(exc).__name__}: {exc}", duration=time.monotonic() - started
            )
        except httpx.HTTPError as exc:
            return ActionResult(
                "error", f"{type(exc).__name__}: {exc}", duration=time.monotonic() - started
            )
        output, cut = _truncate(response.content, limit)
        return ActionResult(
            "ok" if 200 <= response.status_code < 300 else "failed",
            output,
            status_code=response.status_code,
            duration=time.monotonic() - started,
            truncated=cut,
        )

    # -- verification ------------------------------------------------------------------------

    async def verify_until(self, spec: VerifySpec) -> VerifyResult:
        """Check ``spec.expr`` now and every ``interval`` until it holds or ``within`` passed
        (by the runner's clock)."""
        if self.verify is None:
            return VerifyResult(False, 0, ["no PromQL verifier configured"])
        deadline = self.clock.now() + spec.within
        # Bounded by count too, so a clock that does not move cannot loop forever.
        max_attempts = int(spec.within / spec.interval) + 1 if spec.interval else 1
        errors: list[str] = []
        attempts = 0
        while attempts < max_attempts:
            attempts += 1
            try:
                holds = await asyncio.to_thread(self.verify, spec.expr)
            except Exception as exc:  # a query error counts as "not recovered yet"
                holds = False
                message = f"{type(exc).__name__}: {exc}"
                if message not in errors:
                    errors.append(message)
            if holds:
                return VerifyResult(True, attempts, errors)
            left = (deadline - self.clock.now()).total_seconds()
            if left <= 0 or attempts >= max_attempts:
                break
            await self.sleep(min(spec.interval.total_seconds(), left))
        return VerifyResult(False, attempts, errors)


def recovery_context(
    tenant: str, group_key: str, group_labels: Mapping[str, str], alerts: Sequence[Alert]
) -> dict[str, Any]:
    """What a recovery action learns about the group (the webhook body, SIGNALROOM_* env)."""
    common: dict[str, str] = {}
    if alerts:
        common = dict(alerts[0].labels)
        for a in alerts[1:]:
            common = {k: v for k, v in common.items() if a.labels.get(k) == v}
    return {
        "tenant": tenant,
        "groupKey": group_key,
        "groupLabels": dict(group_labels),
        "commonLabels": common,
        "alerts": [
            {
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": format_api_time(a.starts_at),
                "fingerprint": a.fingerprint_hex,
            }
            for a in alerts
        ],
    }


def promql_verifier(
    engine: Any, querier_for: Callable[[int], Any], clock: Clock | None = None
) -> VerifyFunc:
    """``verify(expr)`` over signalroom's PromQL engine: ``engine.instant_query(querier,
    expr, now_ms)``; ``querier_for(now_ms)`` gives the querier (for example
    ``lambda t: tsdb.querier("default", t - 3_600_000, t)``). Holds when the result is a
    non-empty vector (a comparison that filtered nothing out) or a non-zero scalar."""
    clock = clock or SystemClock()

    def verify(expr: str) -> bool:
        now_ms = int(clock.now().timestamp() * 1000)
        result = engine.instant_query(querier_for(now_ms), expr, now_ms)
        value = result.value
        samples = getattr(value, "samples", None)
        if samples is not None:
            return len(samples) > 0
        series = getattr(value, "series", None)
        if series is not None:
            return len(series) > 0
        number = getattr(value, "value", None)
        return isinstance(number, float | int) and number != 0

    return verify
