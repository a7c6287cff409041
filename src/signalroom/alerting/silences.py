"""Silences (Alertmanager's ``silence/silence.go``): create, update, expire, match, retain.

A silence is *pending* before ``starts_at``, *active* until ``ends_at`` and *expired* after.
``set`` follows Alertmanager's update rules: a silence whose matchers are unchanged may be
updated in place (an active one keeping its start and not ending in the past, a pending one
not starting in the past); any other change expires the old silence and creates a new one with
a fresh id. Expired silences are kept for ``retention`` (120h) after their end, then dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from signalroom.alerting.matchers import Matcher, MatcherError, MatchType, is_valid_label_name

__all__ = [
    "Silence",
    "SilenceError",
    "SilenceNotFound",
    "SilenceState",
    "Silences",
    "matcher_from_api",
    "matcher_to_api",
]

SilenceState = Literal["pending", "active", "expired"]
DEFAULT_RETENTION = timedelta(hours=120)


class SilenceError(ValueError):
    """A silence is invalid or cannot be changed as asked."""


class SilenceNotFound(KeyError):
    """No silence with that id."""


@dataclass(slots=True)
class Silence:
    """One silence; ``matchers`` must all match an alert's labels for it to be muted."""

    matchers: list[Matcher]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""
    id: str = ""
    updated_at: datetime | None = None
    expires_at: datetime | None = field(default=None, repr=False)

    def state(self, now: datetime) -> SilenceState:
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)

    def copy(self) -> Silence:
        return replace(self, matchers=list(self.matchers))


def matcher_from_api(raw: Mapping[str, Any]) -> Matcher:
    """An API v2 matcher ``{name, value, isRegex, isEqual}``."""
    name, value = raw.get("name"), raw.get("value")
    if not isinstance(name, str) or not isinstance(value, str):
        raise SilenceError("matcher needs string name and value")
    is_regex = bool(raw.get("isRegex", False))
    is_equal = raw.get("isEqual", True)
    is_equal = True if is_equal is None else bool(is_equal)
    kind = {
        (False, True): MatchType.EQUAL,
        (False, False): MatchType.NOT_EQUAL,
        (True, True): MatchType.REGEXP,
        (True, False): MatchType.NOT_REGEXP,
    }[(is_regex, is_equal)]
    try:
        return Matcher.create(kind, name, value)
    except MatcherError as exc:
        raise SilenceError(str(exc)) from None


def matcher_to_api(m: Matcher) -> dict[str, Any]:
    return {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}


def _validate(sil: Silence) -> None:
    # silence.validateSilence
    if not sil.id:
        raise SilenceError("ID missing")
    if not sil.matchers:
        raise SilenceError("at least one matcher required")
    for i, m in enumerate(sil.matchers):
        if not is_valid_label_name(m.name):
            raise SilenceError(f'invalid label matcher {i}: invalid label name "{m.name}"')
    if sil.ends_at < sil.starts_at:
        raise SilenceError("end time must not be before start time")


def _matcher_key(matchers: Iterable[Matcher]) -> list[tuple[str, str, str]]:
    return [(m.name, m.type.value, m.value) for m in matchers]


class Silences:
    """The silences of one tenant, kept in memory and written through to the state store."""

    def __init__(
        self,
        tenant: str = "default",
        engine: sa.Engine | None = None,
        *,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.tenant = tenant
        self.retention = retention
        self._engine = engine
        self._by_id: dict[str, Silence] = {}
        self.version = 0  # bumped on every change, so callers can cache match results

    # -- reading ---------------------------------------------------------------------------

    def get(self, sid: str) -> Silence:
        sil = self._by_id.get(sid)
        if sil is None:
            raise SilenceNotFound(sid)
        return sil.copy()

    def all(self) -> list[Silence]:
        return [s.copy() for s in self._by_id.values()]

    def count_by_state(self, now: datetime) -> dict[SilenceState, int]:
        out: dict[SilenceState, int] = {"active": 0, "pending": 0, "expired": 0}
        for s in self._by_id.values():
            out[s.state(now)] += 1
        return out

    def empty(self) -> bool:
        """No silences at all (not even expired ones): nothing can mute."""
        return not self._by_id

    def mutes(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        """Ids of the active silences muting these labels (sorted, as the API lists them)."""
        if not self._by_id:
            return []
        return sorted(
            s.id
            for s in self._by_id.values()
            if s.starts_at <= now < s.ends_at and s.matches(labels)
        )

    # -- writing ---------------------------------------------------------------------------

    def set(self, sil: Silence, now: datetime) -> str:
        """Create or update a silence; returns its (possibly new) id."""
        sil = sil.copy()
        prev = self._by_id.get(sil.id) if sil.id else None
        if sil.id and prev is None:
            raise SilenceNotFound(sil.id)
        writes: list[Silence] = []
        if prev is not None:
            if _can_update(prev, sil, now):
                sil.updated_at = now
                sil.expires_at = sil.ends_at + self.retention
                _validate(sil)
                self._store([sil])
                return sil.id
            if prev.state(now) != "expired":
                writes.append(self._expired(prev, now))
        sil.id = str(uuid.uuid4())
        if sil.starts_at < now:
            sil.starts_at = now
        sil.updated_at = now
        sil.expires_at = sil.ends_at + self.retention
        _validate(sil)
        writes.append(sil)
        self._store(writes)
        return sil.id

    def expire(self, sid: str, now: datetime) -> None:
        prev = self._by_id.get(sid)
        if prev is None:
            raise SilenceNotFound(sid)
        if prev.state(now) == "expired":
            raise SilenceError(f"silence {sid} already expired")
        self._store([self._expired(prev, now)])

    def _expired(self, prev: Silence, now: datetime) -> Silence:
        sil = prev.copy()
        if sil.state(now) == "pending":
            sil.starts_at = now
        sil.ends_at = now
        sil.updated_at = now
        sil.expires_at = now + self.retention
        return sil

    def gc(self, now: datetime) -> int:
        """Drop silences whose retention is over; returns how many."""
        gone = [
            s.id for s in self._by_id.values() if s.expires_at is not None and s.expires_at <= now
        ]
        for sid in gone:
            del self._by_id[sid]
        if gone:
            self.version += 1
            if self._engine is not None:
                from signalroom.storage.schema import alerting_silences as t

                with self._engine.begin() as conn:
                    conn.execute(sa.delete(t).where(t.c.tenant == self.tenant, t.c.id.in_(gone)))
        return len(gone)

    def _store(self, silences: list[Silence]) -> None:
        if self._engine is not None:
            from signalroom.storage.schema import alerting_silences as t

            rows = [self._row(s) for s in silences]
            with self._engine.begin() as conn:
                conn.execute(
                    sa.delete(t).where(
                        t.c.tenant == self.tenant, t.c.id.in_([s.id for s in silences])
                    )
                )
                conn.execute(sa.insert(t), rows)
        for s in silences:
            self._by_id[s.id] = s
        self.version += 1

    def _row(self, s: Silence) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "id": s.id,
            "matchers": [matcher_to_api(m) for m in s.matchers],
            "starts_at": s.starts_at,
            "ends_at": s.ends_at,
            "updated_at": s.updated_at,
            "expires_at": s.expires_at,
            "created_by": s.created_by,
            "comment": s.comment,
        }

    def load(self) -> int:
        if self._engine is None:
            return 0
        from signalroom.storage.schema import alerting_silences as t

        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.tenant == self.tenant)).all()
        for row in rows:
            self._by_id[row.id] = Silence(
                matchers=[matcher_from_api(m) for m in row.matchers],
                starts_at=_aware(row.starts_at),
                ends_at=_aware(row.ends_at),
                created_by=row.created_by,
                comment=row.comment,
                id=row.id,
                updated_at=_aware(row.updated_at),
                expires_at=_aware(row.expires_at),
            )
        self.version += 1
        return len(rows)


def _can_update(a: Silence, b: Silence, now: datetime) -> bool:
    """silence.canUpdate: same matchers, and time changes allowed by the current state."""
    if _matcher_key(a.matchers) != _matcher_key(b.matchers):
        return False
    state = a.state(now)
    if state == "active":
        if b.starts_at != a.starts_at:
            return False
        if b.ends_at < now:
            return False
    elif state == "pending":
        if b.starts_at < now:
            return False
    else:
        return False
    return True


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sort_for_api(silences: list[Silence], now: datetime) -> list[Silence]:
    """API v2 ``SortSilences``: active (by end), then pending (by start), then expired (newest
    end first)."""
    order = {"active": 0, "pending": 1, "expired": 2}

    def key(s: Silence) -> tuple[int, float]:
        st = s.state(now)
        if st == "active":
            return (0, s.ends_at.timestamp())
        if st == "pending":
            return (1, s.starts_at.timestamp())
        return (order[st], -s.ends_at.timestamp())

    return sorted(silences, key=key)
