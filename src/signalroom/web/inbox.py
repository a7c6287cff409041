"""A notification inbox: a webhook receiver inside signalroom, so a demo or a first setup sees
its alert notifications without any outside service (``/api/sr/inbox``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from signalroom.web.deps import Caller, require, runtime_of

router = APIRouter(prefix="/api/sr/inbox", tags=["inbox"])
NAMESPACE = "inbox"
KEEP = 500  # newest notifications kept per tenant


@router.post("", status_code=200)
async def receive(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """Store one webhook payload (Alertmanager's version 4 format, or any JSON object)."""
    try:
        payload = await request.json()
    except ValueError as exc:
        return JSONResponse({"status": "error", "error": f"invalid JSON: {exc}"}, status_code=400)
    if not isinstance(payload, dict):
        return JSONResponse({"status": "error", "error": "expected a JSON object"}, status_code=400)
    state = runtime_of(request).state
    if state is None:
        return JSONResponse(
            {"status": "error", "error": "state store not running"}, status_code=503
        )
    key = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    inbox = state.kv(NAMESPACE)
    inbox.put(key, {"receivedAt": time.time(), "payload": payload}, tenant=caller.tenant)
    stale = inbox.list(tenant=caller.tenant)[:-KEEP]
    for document in stale:
        inbox.delete(document.key, tenant=caller.tenant)
    return Response(status_code=200)


@router.get("")
async def list_notifications(
    request: Request, limit: int = 100, caller: Caller = Depends(require("read"))
) -> dict[str, Any]:
    """The newest notifications first."""
    state = runtime_of(request).state
    documents = state.kv(NAMESPACE).list(tenant=caller.tenant) if state is not None else []
    newest = list(reversed(documents))[: max(0, limit)]
    return {"status": "success", "data": [{"id": d.key, **d.value} for d in newest]}
