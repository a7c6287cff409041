"""API tokens with scopes, and which tenants a caller may act for.

Only SHA-256 hashes of tokens live in the configuration. ``admin`` implies ``read`` and
``write``. Without configured tokens every caller is allowed, which the server permits only
on a loopback address (see ``app.check_exposure``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from signalroom.config import AuthConfig, Scope

TOKEN_PREFIX = "sr_"


def new_token() -> str:
    """A fresh random API token (256 bits of entropy)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthError(Exception):
    """Authentication (401), authorisation (403) or a bad tenant (400) failed."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Principal:
    """Who made a request: a configured token, or ``anonymous`` when auth is off."""

    name: str
    scopes: frozenset[Scope]
    tenants: frozenset[str] | None  # None: any tenant

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal("anonymous", frozenset({"read", "write", "admin"}), None)


class Authenticator:
    """Checks credentials against the configured token hashes."""

    def __init__(
        self, config: AuthConfig, *, internal: Mapping[str, Principal] | None = None
    ) -> None:
        """``internal`` maps token hashes of signalroom's own callers (its self-scrape) to
        their principals; they count only when auth is on."""
        self._by_hash = {
            t.sha256: Principal(
                t.name, frozenset(t.scopes), frozenset(t.tenants) if t.tenants else None
            )
            for t in config.tokens
        }
        self._enabled = bool(self._by_hash)
        if self._enabled:
            self._by_hash.update(internal or {})

    @property
    def enabled(self) -> bool:
        return self._enabled

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization`` header value (Bearer, or Basic whose
        password is the token, which is what Grafana and promtool can send)."""
        if not self.enabled:
            return ANONYMOUS
        token = token_from_header(authorization)
        if token is None:
            raise AuthError(401, "authentication required: send 'Authorization: Bearer <token>'")
        digest = hash_token(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise AuthError(401, "invalid API token")

    @staticmethod
    def check(principal: Principal, scope: Scope, tenant: str, action: str) -> None:
        """Raise 403 unless ``principal`` may use ``scope`` for ``tenant``."""
        if not principal.allows(scope):
            raise AuthError(
                403, f"token {principal.name!r} lacks scope {scope!r} needed for {action}"
            )
        if principal.tenants is not None and tenant not in principal.tenants:
            raise AuthError(403, f"token {principal.name!r} may not act for tenant {tenant!r}")


def token_from_header(authorization: str | None) -> str | None:
    if not authorization:
        return None
    kind, _, credentials = authorization.partition(" ")
    kind = kind.lower()
    if kind == "bearer":
        return credentials.strip() or None
    if kind == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None
