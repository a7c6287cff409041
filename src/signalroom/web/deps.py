"""FastAPI dependencies every router uses: who is calling, for which tenant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from signalroom.auth import AuthError, Principal
from signalroom.config import TENANT_PATTERN, Scope
from signalroom.log import tenant_var
from signalroom.web.sessions import session_authorization

if TYPE_CHECKING:
    from signalroom.app import Signalroom

TENANT_HEADER = "X-Scope-OrgID"
DEFAULT_TENANT = "default"


def runtime_of(request: Request) -> Signalroom:
    runtime: Signalroom = request.app.state.runtime
    return runtime


def tenant_of(request: Request) -> str:
    """The tenant named by ``X-Scope-OrgID``, or ``default``; an invalid id is a 400."""
    tenant = request.headers.get(TENANT_HEADER, DEFAULT_TENANT).strip() or DEFAULT_TENANT
    if not TENANT_PATTERN.match(tenant):
        raise AuthError(400, f"invalid {TENANT_HEADER} {tenant!r}: use 1-128 of A-Z a-z 0-9 _ . -")
    return tenant


@dataclass(frozen=True)
class Caller:
    """What a route handler learns about its caller."""

    principal: Principal
    tenant: str


def authorize(request: Request, scope: Scope) -> Caller:
    """Authenticate the request and check ``scope`` for its tenant; raises ``AuthError``.

    Hot ingest routes call this inline; everything else uses ``Depends(require(scope))``."""
    authenticator = runtime_of(request).authenticator
    authorization = request.headers.get("authorization")
    if authorization is None:
        # The UI's session cookie stands for the token it was opened with.
        authorization = session_authorization(request)
    principal = authenticator.authenticate(authorization)
    tenant = tenant_of(request)
    authenticator.check(principal, scope, tenant, f"{request.method} {request.url.path}")
    tenant_var.set(tenant)
    return Caller(principal, tenant)


def require(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency that authenticates and authorises: ``Depends(require("read"))``.

    It is a coroutine so FastAPI runs it on the event loop instead of handing every
    authenticated request to a worker thread (and the tenant reaches the endpoint's context).
    """

    async def dependency(request: Request) -> Caller:
        return authorize(request, scope)

    return dependency
