"""signalroom's alerting extensions over HTTP: acknowledgement, resolution, timelines,
escalation policies, on-call schedules and overrides, and runbooks.

::

    POST   /api/sr/alert-groups/{group_key}/ack       {"by"?, "comment"?}  acknowledge
    DELETE /api/sr/alert-groups/{group_key}/ack                             un-acknowledge
    POST   /api/sr/alert-groups/{group_key}/resolve   {"by"?, "comment"?}  resolve by hand
    GET    /api/sr/alert-groups[?status=]                                  escalation states
    GET    /api/sr/alert-groups/{group_key}/timeline                       state + timeline
    GET    /api/sr/escalation/policies                                     policies, severities
    GET    /api/sr/oncall?schedule=&at=                                    who is on call
    GET    /api/sr/oncall/schedules/{name}/shifts?start=&end=              final schedule
    GET    /api/sr/oncall/overrides    POST (…)    DELETE /api/sr/oncall/overrides/{id}
    GET    /runbooks    GET /runbooks/{name}    (Markdown, or HTML for browsers)

Group keys are Alertmanager's (``{}/{severity="critical"}:{alertname="X"}``): send them
URL-encoded. Times are RFC 3339 or Unix seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from signalroom.alerting.alerts import parse_time
from signalroom.alerting.escalation import EscalationEngine, EscalationError
from signalroom.alerting.manager import AlertManager
from signalroom.alerting.oncall import final_schedule
from signalroom.alerting.runbooks import render_markdown
from signalroom.web.deps import Caller, require, runtime_of

__all__ = ["router"]

router = APIRouter(tags=["escalation"])


class _Abort(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "error": message}, status_code=status)


def _manager(request: Request) -> AlertManager:
    am: AlertManager | None = getattr(runtime_of(request), "alertmanager", None)
    if am is None:
        raise _Abort(503, "the alert manager is not running")
    return am


def _engine(request: Request) -> EscalationEngine:
    return _manager(request).escalation


def _parse_instant(text: str | None, what: str) -> datetime:
    if text is None or text == "":
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        parsed = parse_time(text)
    except ValueError:
        parsed = None
    if parsed is None:
        raise _Abort(400, f"invalid {what} {text!r}: use RFC 3339 or Unix seconds")
    return parsed


class GroupAction(BaseModel):
    by: str | None = Field(default=None, max_length=256)
    comment: str = Field(default="", max_length=4096)


class OverrideIn(BaseModel):
    schedule: str
    user: str = Field(min_length=1, max_length=256)
    start: str
    end: str


def _actor(caller: Caller, by: str | None) -> str:
    name = caller.principal.name
    if not by:
        return name
    return by if name == "anonymous" or name == by else f"{by} (via {name})"


async def _group_action(
    request: Request, caller: Caller, action: str, group_key: str, body: GroupAction | None
) -> Response:
    body = body or GroupAction()
    try:
        engine = _engine(request)
        actor = _actor(caller, body.by)
        if action == "ack":
            state = await engine.acknowledge(caller.tenant, group_key, actor, body.comment)
        elif action == "unack":
            state = await engine.unacknowledge(caller.tenant, group_key, actor)
        else:
            state = await engine.resolve(caller.tenant, group_key, actor, body.comment)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    except EscalationError as exc:
        return _error(exc.status, exc.message)
    return JSONResponse({"status": "success", "data": state.to_json()})


@router.post("/api/sr/alert-groups/{group_key:path}/ack")
async def acknowledge(
    request: Request,
    group_key: str,
    body: GroupAction | None = None,
    caller: Caller = Depends(require("write")),
) -> Response:
    return await _group_action(request, caller, "ack", group_key, body)


@router.delete("/api/sr/alert-groups/{group_key:path}/ack")
async def unacknowledge(
    request: Request, group_key: str, caller: Caller = Depends(require("write"))
) -> Response:
    return await _group_action(request, caller, "unack", group_key, None)


@router.post("/api/sr/alert-groups/{group_key:path}/resolve")
async def resolve(
    request: Request,
    group_key: str,
    body: GroupAction | None = None,
    caller: Caller = Depends(require("write")),
) -> Response:
    return await _group_action(request, caller, "resolve", group_key, body)


@router.get("/api/sr/alert-groups/{group_key:path}/timeline")
async def timeline(
    request: Request,
    group_key: str,
    limit: int = Query(1000, ge=1, le=10000),
    caller: Caller = Depends(require("read")),
) -> Response:
    try:
        engine = _engine(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    state = engine.state(caller.tenant, group_key)
    entries = await engine.timeline(caller.tenant, group_key, limit)
    if state is None and not entries:
        return _error(404, f"no alert group {group_key!r} has fired")
    return JSONResponse(
        {
            "status": "success",
            "data": {
                "group": state.to_json() if state else None,
                "timeline": [e.to_json() for e in entries],
            },
        }
    )


@router.get("/api/sr/alert-groups")
async def alert_groups(
    request: Request,
    status: str | None = Query(None, pattern="^(firing|acknowledged|resolved)$"),
    caller: Caller = Depends(require("read")),
) -> Response:
    try:
        engine = _engine(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    states = [s for s in engine.states(caller.tenant) if status is None or s.status == status]
    states.sort(key=lambda s: s.started_at, reverse=True)
    return JSONResponse({"status": "success", "data": [s.to_json() for s in states]})


@router.get("/api/sr/escalation/policies")
async def policies(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    try:
        ext = _manager(request).extensions
    except _Abort as exc:
        return _error(exc.status, exc.message)
    data = {
        "severityLabel": ext.escalation.severity_label,
        "severityMatrix": {
            k: v.model_dump(mode="json") for k, v in ext.escalation.severity_matrix.items()
        },
        "defaultPolicy": ext.escalation.default_policy,
        "policyRoutes": [r.model_dump(mode="json") for r in ext.escalation.policy_routes],
        "policies": [p.model_dump(mode="json") for p in ext.escalation_policies],
        "schedules": [s.name for s in ext.schedules],
    }
    return JSONResponse({"status": "success", "data": data})


@router.get("/api/sr/oncall")
async def oncall(
    request: Request,
    schedule: str | None = None,
    at: str | None = None,
    caller: Caller = Depends(require("read")),
) -> Response:
    try:
        engine = _engine(request)
        when = _parse_instant(at, "at")
    except _Abort as exc:
        return _error(exc.status, exc.message)
    names = [schedule] if schedule else [s.name for s in engine.config.schedules]
    out: list[dict[str, Any]] = []
    for name in names:
        who = engine.oncall(name, when, caller.tenant)
        if who is None:
            return _error(404, f"no schedule {name!r}")
        out.append(who.to_json())
    return JSONResponse({"status": "success", "data": out[0] if schedule else out})


@router.get("/api/sr/oncall/schedules/{name}/shifts")
async def shifts(
    request: Request,
    name: str,
    start: str | None = None,
    end: str | None = None,
    caller: Caller = Depends(require("read")),
) -> Response:
    try:
        engine = _engine(request)
        begin = _parse_instant(start, "start")
        finish = _parse_instant(end, "end") if end else begin + timedelta(days=14)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    sched = engine.config.schedule(name)
    if sched is None:
        return _error(404, f"no schedule {name!r}")
    try:
        found = final_schedule(sched, begin, finish, engine.overrides(caller.tenant))
    except ValueError as exc:
        return _error(400, str(exc))
    return JSONResponse({"status": "success", "data": [s.to_json() for s in found]})


@router.get("/api/sr/oncall/overrides")
async def list_overrides(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    try:
        engine = _engine(request)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    data = [o.to_json() for o in engine.overrides(caller.tenant)]
    return JSONResponse({"status": "success", "data": data})


@router.post("/api/sr/oncall/overrides")
async def add_override(
    request: Request, body: OverrideIn, caller: Caller = Depends(require("write"))
) -> Response:
    try:
        engine = _engine(request)
        start = _parse_instant(body.start, "start")
        end = _parse_instant(body.end, "end")
        record = await engine.add_override(
            caller.tenant, body.schedule, body.user, start, end, caller.principal.name
        )
    except _Abort as exc:
        return _error(exc.status, exc.message)
    except EscalationError as exc:
        return _error(exc.status, exc.message)
    return JSONResponse({"status": "success", "data": record.to_json()}, status_code=201)


@router.delete("/api/sr/oncall/overrides/{override_id}")
async def delete_override(
    request: Request, override_id: str, caller: Caller = Depends(require("write"))
) -> Response:
    try:
        await _engine(request).delete_override(caller.tenant, override_id)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    except EscalationError as exc:
        return _error(exc.status, exc.message)
    return JSONResponse({"status": "success"})


# --- runbooks -----------------------------------------------------------------------------------


@router.get("/runbooks")
async def runbook_index(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    try:
        names = _manager(request).runbooks.names()
    except _Abort as exc:
        return _error(exc.status, exc.message)
    return JSONResponse({"status": "success", "data": names})


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "text/markdown" not in accept.split(",")[0]


@router.get("/runbooks/{name}")
async def runbook(
    request: Request,
    name: str,
    format: str | None = Query(None, pattern="^(html|markdown)$"),
    caller: Caller = Depends(require("read")),
) -> Response:
    try:
        book = _manager(request).runbooks.get(name)
    except _Abort as exc:
        return _error(exc.status, exc.message)
    if book is None:
        return Response(f"no runbook {name!r}\n", status_code=404, media_type="text/plain")
    if format == "html" or (format is None and _wants_html(request)):
        return HTMLResponse(
            render_markdown(book.markdown, book.title),
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )
    return Response(book.markdown, media_type="text/markdown; charset=utf-8")
