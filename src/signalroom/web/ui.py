"""The web UI: the built single-page application under ``/`` and the dashboards API it uses.

The UI is built from ``ui/`` with npm into ``web/static/`` (``make ui``). Its pages are
client-side routes, so every page path answers ``index.html``; hashed files under ``/assets/``
never change and are cached for a year. Dashboards are Grafana dashboard JSON documents kept in
the state store (namespace ``dashboards``, one document per uid and tenant).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from signalroom.auth import AuthError
from signalroom.packs import UnknownPackError, load_pack
from signalroom.storage.state import ConflictError, KeyValueStore
from signalroom.web.deps import Caller, require, runtime_of, tenant_of
from signalroom.web.sessions import SESSION_COOKIE, session_authorization, sessions_of

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).parent / "static"
"""Where ``npm run build`` in ``ui/`` writes the application."""

PAGES = ("dashboards", "d", "explore", "alerting", "analytics", "inbox", "login")
"""First path segments that are client-side routes of the UI."""

DASHBOARD_NAMESPACE = "dashboards"
# Grafana's own rule for uids: at most 40 of letters, digits, '-' and '_'.
UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
ASSET_CACHE = "public, max-age=31536000, immutable"

MISSING_BUILD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>signalroom</title></head>
<body style="font-family: sans-serif; margin: 3rem">
<h1>signalroom</h1>
<p>The web UI has not been built. Run <code>make ui</code> (or <code>npm ci &amp;&amp;
npm run build</code> in <code>ui/</code>) and reload this page.</p>
<p>The APIs are served already: <a href="/docs">/docs</a> lists them.</p>
</body></html>
"""

router = APIRouter(tags=["ui"])


def _index() -> Response:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return HTMLResponse(MISSING_BUILD, status_code=503, headers={"Cache-Control": "no-store"})
    # Always revalidated: a new build changes the asset names it points to.
    return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def index() -> Response:
    return _index()


@router.get("/assets/{name:path}", include_in_schema=False)
async def asset(name: str) -> Response:
    assets = (STATIC_DIR / "assets").resolve()
    path = (assets / name).resolve()
    if not path.is_relative_to(assets) or not path.is_file():
        return JSONResponse({"status": "error", "error": "not found"}, status_code=404)
    return FileResponse(path, headers={"Cache-Control": ASSET_CACHE})


@router.get("/favicon.svg", include_in_schema=False)
async def favicon() -> Response:
    path = STATIC_DIR / "favicon.svg"
    if not path.is_file():
        return Response(status_code=404)
    return FileResponse(path, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})


async def client_route() -> Response:
    """A page of the single-page application: the browser-side router draws it."""
    return _index()


# One route per page rather than a catch-all, so unknown paths (and API paths) stay 404.
for _page in PAGES:
    router.add_api_route(f"/{_page}", client_route, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        f"/{_page}/{{rest:path}}", client_route, methods=["GET"], include_in_schema=False
    )


# --- dashboards API -------------------------------------------------------------------------


def _store(request: Request) -> KeyValueStore:
    state = runtime_of(request).state
    if state is None:
        raise _DashboardError(503, "the state store is not open")
    return state.kv(DASHBOARD_NAMESPACE)


class _DashboardError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _failure(exc: _DashboardError) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "errorType": "bad_data", "error": exc.message},
        status_code=exc.status,
    )


def _check_uid(uid: str) -> None:
    if not UID_PATTERN.match(uid):
        raise _DashboardError(400, f"invalid dashboard uid {uid!r}: use 1-40 of A-Z a-z 0-9 _ -")


def _dashboard_from_body(body: Any) -> dict[str, Any]:
    """The dashboard in a request body: Grafana's bare dashboard JSON or its import form
    ``{"dashboard": {...}, "overwrite": true}``."""
    if isinstance(body, dict) and isinstance(body.get("dashboard"), dict):
        body = body["dashboard"]
    if not isinstance(body, dict):
        raise _DashboardError(400, "the body must be a Grafana dashboard JSON object")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _DashboardError(400, 'dashboard "title" must be a non-empty string')
    for field in ("panels", "tags"):
        if field in body and not isinstance(body[field], list):
            raise _DashboardError(400, f'dashboard "{field}" must be an array')
    templating = body.get("templating")
    if templating is not None and not (
        isinstance(templating, dict) and isinstance(templating.get("list", []), list)
    ):
        raise _DashboardError(400, 'dashboard "templating.list" must be an array')
    return dict(body)


def _summary(uid: str, value: dict[str, Any], version: int, updated: str) -> dict[str, Any]:
    tags = value.get("tags")
    return {
        "uid": uid,
        "title": value.get("title", uid),
        "tags": tags if isinstance(tags, list) else [],
        "version": version,
        "updatedAt": updated,
    }


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise _DashboardError(400, "the body is not valid JSON") from None


def _pack_dashboards(request: Request) -> dict[str, tuple[str, dict[str, Any]]]:
    """The dashboards bundled with the enabled packs by uid: (pack name, dashboard JSON)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in runtime_of(request).config.packs:
        try:
            dashboards = load_pack(name).dashboards()
        except (UnknownPackError, OSError, ValueError):
            continue  # the config loader reports unknown packs; a broken file is skipped
        for stem, dashboard in dashboards.items():
            if not isinstance(dashboard, dict):
                continue
            uid = dashboard.get("uid")
            if not isinstance(uid, str) or not UID_PATTERN.match(uid):
                uid = f"{name}-{stem}"[:40]
            out.setdefault(uid, (name, {**dashboard, "uid": uid}))
    return out


def _provisioned_summary(uid: str, pack: str, dashboard: dict[str, Any]) -> dict[str, Any]:
    return {**_summary(uid, dashboard, 0, ""), "provisioned": True, "pack": pack}


@router.get("/api/sr/dashboards", tags=["dashboards"])
async def list_dashboards(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Every dashboard of the tenant (uid, title, tags, version, last update), then the
    read-only dashboards of the enabled packs (``provisioned: true``)."""
    try:
        store = _store(request)
    except _DashboardError as exc:
        return _failure(exc)
    documents = await asyncio.to_thread(store.list, tenant=caller.tenant)
    items = [
        {**_summary(d.key, d.value, d.version, d.updated_at.isoformat()), "provisioned": False}
        for d in documents
        if isinstance(d.value, dict)
    ]
    stored = {item["uid"] for item in items}
    packs = await asyncio.to_thread(_pack_dashboards, request)
    items += [
        _provisioned_summary(uid, pack, dashboard)
        for uid, (pack, dashboard) in packs.items()
        if uid not in stored
    ]
    items.sort(key=lambda item: (str(item["title"]).lower(), item["uid"]))
    return JSONResponse({"status": "success", "data": items})


@router.get("/api/sr/dashboards/{uid}", tags=["dashboards"])
async def get_dashboard(
    uid: str, request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    """One dashboard as Grafana dashboard JSON, with the version to send back on update; a
    pack's dashboard has ``meta.provisioned: true`` and cannot be changed (import a copy)."""
    try:
        _check_uid(uid)
        document = await asyncio.to_thread(_store(request).get, uid, tenant=caller.tenant)
    except _DashboardError as exc:
        return _failure(exc)
    if document is None:
        bundled = (await asyncio.to_thread(_pack_dashboards, request)).get(uid)
        if bundled is None:
            return _failure(_DashboardError(404, f"dashboard {uid!r} not found"))
        pack, dashboard = bundled
        meta = {"version": 0, "updatedAt": None, "provisioned": True, "pack": pack}
        return JSONResponse({"status": "success", "data": {"dashboard": dashboard, "meta": meta}})
    return JSONResponse(
        {
            "status": "success",
            "data": {
                "dashboard": document.value,
                "meta": {
                    "version": document.version,
                    "updatedAt": document.updated_at.isoformat(),
                    "provisioned": False,
                },
            },
        }
    )


async def _check_not_provisioned(request: Request, caller: Caller, uid: str) -> None:
    store = _store(request)
    if await asyncio.to_thread(store.get, uid, tenant=caller.tenant) is not None:
        return
    bundled = (await asyncio.to_thread(_pack_dashboards, request)).get(uid)
    if bundled is not None:
        raise _DashboardError(
            403, f"dashboard {uid!r} belongs to the pack {bundled[0]!r}: import a copy to edit it"
        )


@router.post("/api/sr/dashboards", tags=["dashboards"])
async def import_dashboard(
    request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    """Import a Grafana dashboard; a dashboard without a uid is given one. An existing uid is
    replaced only with ``"overwrite": true`` in the import form, as Grafana does."""
    try:
        body = await _body(request)
        dashboard = _dashboard_from_body(body)
        overwrite = isinstance(body, dict) and body.get("overwrite") is True
        uid = dashboard.get("uid")
        if not isinstance(uid, str) or not uid:
            uid = secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")
        _check_uid(uid)
        return await _save(request, caller, uid, dashboard, None if overwrite else 0)
    except _DashboardError as exc:
        return _failure(exc)


@router.put("/api/sr/dashboards/{uid}", tags=["dashboards"])
async def put_dashboard(
    uid: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    """Create or replace a dashboard. ``?version=N`` makes the write conditional: it happens
    only if the stored version is N (0: only if none exists), else 409."""
    try:
        _check_uid(uid)
        await _check_not_provisioned(request, caller, uid)
        dashboard = _dashboard_from_body(await _body(request))
        expected: int | None = None
        if "version" in request.query_params:
            try:
                expected = int(request.query_params["version"])
            except ValueError:
                raise _DashboardError(400, "version must be an integer") from None
            if expected < 0:
                raise _DashboardError(400, "version must be >= 0")
        return await _save(request, caller, uid, dashboard, expected)
    except _DashboardError as exc:
        return _failure(exc)


async def _save(
    request: Request,
    caller: Caller,
    uid: str,
    dashboard: dict[str, Any],
    expected: int | None,
) -> Response:
    dashboard["uid"] = uid
    dashboard.pop("id", None)  # Grafana's numeric id belongs to the Grafana it came from
    store = _store(request)
    try:
        document = await asyncio.to_thread(
            store.put, uid, dashboard, tenant=caller.tenant, expected_version=expected
        )
    except ConflictError as exc:
        raise _DashboardError(409, str(exc)) from None
    except ValueError as exc:
        raise _DashboardError(400, f"dashboard cannot be stored: {exc}") from None
    summary = _summary(uid, dashboard, document.version, document.updated_at.isoformat())
    return JSONResponse({"status": "success", "data": summary})


@router.delete("/api/sr/dashboards/{uid}", tags=["dashboards"])
async def delete_dashboard(
    uid: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    """Remove a dashboard: 204, or 404 when there is none."""
    try:
        _check_uid(uid)
        await _check_not_provisioned(request, caller, uid)
        removed = await asyncio.to_thread(_store(request).delete, uid, tenant=caller.tenant)
    except _DashboardError as exc:
        return _failure(exc)
    if not removed:
        return _failure(_DashboardError(404, f"dashboard {uid!r} not found"))
    return Response(status_code=204)


def _auth_failure(exc: AuthError) -> JSONResponse:
    kind = "unauthorized" if exc.status == 401 else "forbidden"
    return JSONResponse(
        {"status": "error", "errorType": kind, "error": exc.message}, status_code=exc.status
    )


def _principal_body(request: Request, authorization: str | None) -> dict[str, Any]:
    runtime = runtime_of(request)
    principal = runtime.authenticator.authenticate(authorization)
    tenant = tenant_of(request)
    if principal.tenants is not None and tenant not in principal.tenants:
        raise AuthError(403, f"token {principal.name!r} may not act for tenant {tenant!r}")
    scopes = set(principal.scopes)
    if "admin" in scopes:
        scopes |= {"read", "write"}
    return {
        "name": principal.name,
        "scopes": sorted(scopes),
        "tenants": sorted(principal.tenants) if principal.tenants is not None else None,
        "authEnabled": runtime.authenticator.enabled,
    }


@router.get("/api/sr/session", tags=["ui"])
async def get_session(request: Request) -> Response:
    """Who the caller is (from the ``Authorization`` header or the session cookie): name,
    scopes, tenants; 401 when not logged in."""
    authorization = request.headers.get("authorization") or session_authorization(request)
    try:
        return JSONResponse({"status": "success", "data": _principal_body(request, authorization)})
    except AuthError as exc:
        return _auth_failure(exc)


@router.post("/api/sr/session", tags=["ui"])
async def create_session(request: Request) -> Response:
    """Log in: ``{"token": "sr_..."}`` sets an HttpOnly, SameSite=Strict session cookie."""
    try:
        body = await _body(request)
    except _DashboardError as exc:
        return _failure(exc)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.strip():
        return _failure(_DashboardError(400, 'send {"token": "<API token>"}'))
    token = token.strip()
    try:
        data = _principal_body(request, f"Bearer {token}")
    except AuthError as exc:
        return _auth_failure(exc)
    response = JSONResponse({"status": "success", "data": data})
    if runtime_of(request).authenticator.enabled:
        value, max_age = sessions_of(request).open(token)
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@router.delete("/api/sr/session", tags=["ui"])
async def delete_session(request: Request) -> Response:
    """Log out: the session ends on the server and the cookie is removed."""
    sessions_of(request).close(request.cookies.get(SESSION_COOKIE))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
