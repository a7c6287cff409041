"""Alertmanager API v2 (``/api/v2``): alerts, groups, silences, receivers, status.

JSON shapes, defaults and status codes follow Alertmanager's ``api/v2/openapi.yaml`` so
``amtool``, Grafana and Prometheus talk to it unchanged. Errors are JSON strings, as
go-swagger writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
import re2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from signalroom.alerting.alerts import Alert, format_api_time, parse_time, postable_alert
from signalroom.alerting.manager import AlertManager, AlertStatus, TenantAlerting
from signalroom.alerting.matchers import Matcher, MatcherError, matches_all, parse_matchers
from signalroom.alerting.silences import (
    Silence,
    SilenceError,
    SilenceNotFound,
    matcher_from_api,
    matcher_to_api,
    sort_for_api,
)
from signalroom.web.deps import Caller, authorize, require, runtime_of

__all__ = ["router"]

router = APIRouter(prefix="/api/v2", tags=["alertmanager"])


def _manager(request: Request) -> AlertManager:
    am: AlertManager | None = getattr(runtime_of(request), "alertmanager", None)
    if am is None:
        raise _Abort(503, "the Alertmanager is not running")
    return am


class _Abort(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(message, status_code=status)


def _parse_filter(filters: list[str]) -> list[Matcher]:
    out: list[Matcher] = []
    for text in filters:
        try:
            out.extend(parse_matchers(text))
        except MatcherError as exc:
            raise _Abort(400, str(exc)) from None
    return out


def _receiver_regex(receiver: str | None) -> Any:
    if not receiver:
        return None
    try:
        return re2.compile("^(?:" + receiver + ")$")
    except re2.error as exc:
        raise _Abort(400, f"failed to parse receiver param: {exc}") from None


def _alert_json(alert: Alert, status: AlertStatus, receivers: list[str]) -> dict[str, Any]:
    return {
        "annotations": alert.annotations,
        "endsAt": format_api_time(alert.ends_at),
        "fingerprint": alert.fingerprint_hex,
        "receivers": [{"name": r} for r in receivers],
        "startsAt": format_api_time(alert.starts_at),
        "status": {
            "inhibitedBy": status.inhibited_by,
            "silencedBy": status.silenced_by,
            "state": status.state,
        },
        "updatedAt": format_api_time(alert.updated_at),
        "generatorURL": alert.generator_url,
        "labels": alert.labels,
    }


class _AlertFilter:
    def __init__(
        self,
        am: AlertManager,
        t: TenantAlerting,
        now: datetime,
        *,
        active: bool,
        silenced: bool,
        inhibited: bool,
        unprocessed: bool,
        matchers: list[Matcher],
        receiver: Any,
    ) -> None:
        self.am, self.t, self.now = am, t, now
        self.active, self.silenced, self.inhibited = active, silenced, inhibited
        self.unprocessed = unprocessed
        self.matchers, self.receiver = matchers, receiver

    def view(self, alert: Alert) -> dict[str, Any] | None:
        if alert.resolved_at(self.now):
            return None
        receivers = self.am.receivers_for(alert.labels)
        if self.receiver is not None:
            receivers = [r for r in receivers if self.receiver.search(r) is not None]
            if not receivers:
                return None
        if not matches_all(self.matchers, alert.labels):
            return None
        status = self.am.status_of(self.t, alert, self.now)
        if not self.active and status.state == "active":
            return None
        if not self.unprocessed and status.state == "unprocessed":
            return None
        if not self.silenced and status.silenced_by:
            return None
        if not self.inhibited and status.inhibited_by:
            return None
        return _alert_json(alert, status, receivers)


@router.get("/status")
async def get_status(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    return _manager(request).status()


@router.get("/receivers")
async def get_receivers(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    return [{"name": n} for n in _manager(request).receiver_names()]


@router.get("/alerts")
async def get_alerts(
    request: Request,
    active: bool = True,
    silenced: bool = True,
    inhibited: bool = True,
    unprocessed: bool = True,
    filter: list[str] = Query(default_factory=list),
    receiver: str | None = None,
    caller: Caller = Depends(require("read")),
) -> Any:
    try:
        am = _manager(request)
        f = _AlertFilter(
            am,
            await am.tenant(caller.tenant),
            am.clock.now(),
            active=active,
            silenced=silenced,
            inhibited=inhibited,
            unprocessed=unprocessed,
            matchers=_parse_filter(filter),
            receiver=_receiver_regex(receiver),
        )
    except _Abort as exc:
        return _error(exc.status, exc.message)
    out = [v for a in f.t.store.all() if (v := f.view(a)) is not None]
    out.sort(key=lambda a: a["fingerprint"])
    return out


@router.post("/alerts")
async def post_alerts(request: Request) -> Any:
    # The hot path of every Prometheus: authorised in line rather than with Depends, which
    # runs a plain-function dependency on a worker thread (a thread hop per POST).
    caller = authorize(request, "write")
    try:
        am = _manager(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    received_at = am.clock.now()
    raw_body = await request.body()
    try:
        body = orjson.loads(raw_body)
    except orjson.JSONDecodeError:
        # What orjson refuses and the json module takes (NaN, huge integers) is still
        # accepted, and the error text stays the json module's.
        try:
            body = json.loads(raw_body)
        except ValueError as exc:
            return _error(400, f'parsing alerts body from "" failed, because {exc}')
    if not isinstance(body, list):
        return _error(400, "alerts must be a JSON array")
    alerts: list[Alert] = []
    for i, raw in enumerate(body):
        try:
            alerts.append(postable_alert(raw))
        except (ValueError, TypeError) as exc:
            return _error(422, f"{i}: {exc}")
    errors = await am.receive(alerts, tenant=caller.tenant, now=received_at)
    if errors:
        return _error(400, "; ".join(errors))
    return Response(status_code=200)


@router.get("/alerts/groups")
async def get_alert_groups(
    request: Request,
    active: bool = True,
    silenced: bool = True,
    inhibited: bool = True,
    filter: list[str] = Query(default_factory=list),
    receiver: str | None = None,
    caller: Caller = Depends(require("read")),
) -> Any:
    try:
        am = _manager(request)
        t = await am.tenant(caller.tenant)
        f = _AlertFilter(
            am,
            t,
            am.clock.now(),
            active=active,
            silenced=silenced,
            inhibited=inhibited,
            unprocessed=True,
            matchers=_parse_filter(filter),
            receiver=None,
        )
        rx = _receiver_regex(receiver)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    out: list[dict[str, Any]] = []
    for g in await am.groups(caller.tenant):
        if rx is not None and rx.search(g.receiver) is None:
            continue
        alerts = [v for a in g.alerts if (v := f.view(a)) is not None]
        if not alerts:
            continue
        out.append({"labels": g.labels, "receiver": {"name": g.receiver}, "alerts": alerts})
    out.sort(key=lambda g: (sorted(g["labels"].items()), g["receiver"]["name"]))
    return out


def _silence_json(s: Silence, now: datetime) -> dict[str, Any]:
    return {
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": format_api_time(s.updated_at),
        "comment": s.comment,
        "createdBy": s.created_by,
        "endsAt": format_api_time(s.ends_at),
        "matchers": [matcher_to_api(m) for m in s.matchers],
        "startsAt": format_api_time(s.starts_at),
    }


@router.get("/silences")
async def get_silences(
    request: Request,
    filter: list[str] = Query(default_factory=list),
    caller: Caller = Depends(require("read")),
) -> Any:
    try:
        am = _manager(request)
        matchers = _parse_filter(filter)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    silences = await am.silences(caller.tenant)
    now = am.clock.now()
    chosen = [s for s in silences.all() if _silence_matches_filter(s, matchers)]
    return [_silence_json(s, now) for s in sort_for_api(chosen, now)]


def _silence_matches_filter(s: Silence, matchers: list[Matcher]) -> bool:
    # api/v2 CheckSilenceMatchesFilterLabels: each filter must equal one of the silence's
    # matchers' name and value, compared as labels.
    labels = {m.name: m.value for m in s.matchers}
    return all(m.name in labels and m.matches(labels[m.name]) for m in matchers)


@router.post("/silences")
async def post_silences(request: Request, caller: Caller = Depends(require("write"))) -> Any:
    try:
        am = _manager(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    try:
        raw = await request.json()
    except ValueError as exc:
        return _error(400, str(exc))
    if not isinstance(raw, Mapping):
        return _error(400, "silence must be an object")
    for key in ("matchers", "startsAt", "endsAt", "createdBy", "comment"):
        if key not in raw:
            return _error(422, f"{key} in body is required")
    try:
        starts = parse_time(raw["startsAt"])
        ends = parse_time(raw["endsAt"])
        if not isinstance(raw["matchers"], list):
            raise SilenceError("matchers must be an array")
        matchers = [matcher_from_api(m) for m in raw["matchers"]]
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    if starts is None or ends is None:
        return _error(400, "failed to create silence: invalid zero start or end timestamp")
    if starts >= ends:
        return _error(400, "failed to create silence: start time must be before end time")
    now = am.clock.now()
    if ends < now:
        return _error(400, "failed to create silence: end time can't be in the past")
    silence = Silence(
        matchers=matchers,
        starts_at=starts,
        ends_at=ends,
        created_by=str(raw["createdBy"]),
        comment=str(raw["comment"]),
        id=str(raw.get("id") or ""),
    )
    silences = await am.silences(caller.tenant)
    try:
        sid = silences.set(silence, now)
    except SilenceNotFound:
        return _error(404, f"silence {silence.id} not found")
    except SilenceError as exc:
        return _error(400, str(exc))
    return {"silenceID": sid}


@router.get("/silence/{silence_id}")
async def get_silence(
    silence_id: str, request: Request, caller: Caller = Depends(require("read"))
) -> Any:
    try:
        am = _manager(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    silences = await am.silences(caller.tenant)
    try:
        s = silences.get(silence_id)
    except SilenceNotFound:
        return Response(status_code=404)
    return _silence_json(s, am.clock.now())


@router.delete("/silence/{silence_id}")
async def delete_silence(
    silence_id: str, request: Request, caller: Caller = Depends(require("write"))
) -> Any:
    try:
        am = _manager(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    silences = await am.silences(caller.tenant)
    try:
        silences.expire(silence_id, am.clock.now())
    except SilenceNotFound:
        return Response(status_code=404)
    except SilenceError as exc:
        return _error(500, str(exc))
    return Response(status_code=200)
