"""UI sessions: a person logs in with an API token and gets a signed cookie that stands for it.

``web.deps.authorize`` falls back to :func:`session_authorization` when a request has no
``Authorization`` header; ``web.ui`` opens and closes sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request

__all__ = [
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "SessionStore",
    "session_authorization",
    "sessions_of",
]

SESSION_COOKIE = "sr_session"
SESSION_TTL_S = 12 * 3600
"""How long a session lasts; the browser is asked to drop the cookie at the same time."""


@dataclass(frozen=True)
class _Session:
    token: str
    expires: float


class SessionStore:
    """Sessions of one server process: a random id names the API token a person logged in
    with. The cookie carries ``id.expiry.signature`` (HMAC-SHA256 under a per-process key), so
    a forged or stretched cookie is refused before any lookup; the token never leaves the
    server. Sessions end on logout, on expiry and when the server restarts."""

    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def open(self, token: str) -> tuple[str, int]:
        """A new session for ``token``: the cookie value and its lifetime in seconds."""
        session_id = secrets.token_urlsafe(24)
        expires = int(time.time() + self.ttl_s)
        with self._lock:
            now = time.time()
            for stale in [k for k, v in self._sessions.items() if v.expires <= now]:
                del self._sessions[stale]
            self._sessions[session_id] = _Session(token, expires)
        reference = f"{session_id}.{expires}"
        return f"{reference}.{self._sign(reference)}", int(self.ttl_s)

    def token(self, cookie: str | None) -> str | None:
        """The API token of a valid, unexpired session cookie, else None."""
        if not cookie:
            return None
        reference, _, signature = cookie.rpartition(".")
        session_id, _, expires = reference.partition(".")
        if not hmac.compare_digest(self._sign(reference), signature) or not expires.isdigit():
            return None
        if int(expires) <= time.time():
            return None
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.expires <= time.time():
            return None
        return session.token

    def close(self, cookie: str | None) -> None:
        if not cookie:
            return
        reference, _, signature = cookie.rpartition(".")
        if hmac.compare_digest(self._sign(reference), signature):
            with self._lock:
                self._sessions.pop(reference.partition(".")[0], None)


def sessions_of(request: Request) -> SessionStore:
    state = request.app.state
    store: SessionStore | None = getattr(state, "ui_sessions", None)
    if store is None:
        store = state.ui_sessions = SessionStore()
    return store


def session_authorization(request: Request) -> str | None:
    """An ``Authorization`` header value for the request's session cookie, or None: what
    ``web.deps.require`` falls back to when a request has no ``Authorization`` header."""
    token = sessions_of(request).token(request.cookies.get(SESSION_COOKIE))
    return f"Bearer {token}" if token else None
