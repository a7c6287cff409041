"""Event capture formats: PostHog's ``/capture``, ``/batch``, ``/e``, ``/i/v0/e`` bodies and
signalroom's own ``/api/sr/events`` (the seed-003 event structure).

Both decode into *capture records*, the plain dicts the event queue carries::

    {"event": name, "id": event id, "ts": epoch ns, "user": distinct id,
     "session": session id or None, "props": {...}, "v": schema version or None}

A record whose envelope is unusable (no event name, a timestamp that is not a date, ...) keeps
what could be read plus ``"error"`` (the reason) and ``"raw"`` (the event as sent): it goes to
the dead-letter queue instead of being dropped.

Clock skew (PostHog's rule): when an event has a ``timestamp`` and the request a ``sent_at``,
the event happened at ``server_now + (timestamp - sent_at)``; an ``offset`` (ms before
sending) gives ``server_now - offset``. ``historical_migration`` batches are taken as sent.

:func:`posthog_columns` is the consumer's path: the same records as columns (no dict per
event), the common event shape read inline and its ISO timestamps parsed by Arrow in one call;
anything unusual goes through the per-event parser, so both give the same records.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import urllib.parse
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

__all__ = [
    "CaptureBatch",
    "CaptureColumns",
    "CaptureError",
    "PostHogEnvelope",
    "capture_json",
    "decode_capture_body",
    "json_dumps",
    "json_loads",
    "parse_posthog",
    "parse_sr_events",
    "parse_timestamp_ns",
    "posthog_columns",
    "posthog_envelope",
]

_MAX_ID = 200
_INT64 = (-(2**63), 2**63 - 1)


def json_loads(data: bytes | str) -> Any:
    """Parse JSON with orjson; what it refuses and the standard library reads (NaN, lone
    surrogates) is read as before. Raises ValueError."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def json_dumps(value: Any) -> bytes:
    """Compact JSON (UTF-8) with orjson; integers beyond 64 bits as the standard library
    writes them, and anything else not JSON as ``str()``."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode()


class CaptureError(ValueError):
    """A request that cannot be read at all; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class CaptureBatch:
    """The events of one capture request and the API key it carried (PostHog's token)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    api_key: str | None = None

    @property
    def errors(self) -> int:
        return sum(1 for r in self.records if "error" in r)


def _inflate(data: bytes, limit: int, kind: str) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if kind == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CaptureError(f"body is not valid {kind} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise CaptureError(f"decompressed body exceeds max_body_bytes ({limit} bytes)", 413)
    return out


def decode_capture_body(
    body: bytes,
    *,
    content_type: str | None = None,
    content_encoding: str | None = None,
    compression: str | None = None,
    max_bytes: int = 20 * 2**20,
) -> Any:
    """The JSON value of a capture body (see :func:`capture_json`)."""
    text = capture_json(
        body,
        content_type=content_type,
        content_encoding=content_encoding,
        compression=compression,
        max_bytes=max_bytes,
    )
    try:
        return json_loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CaptureError(f"body is not valid JSON: {exc}") from None


def capture_json(
    body: bytes,
    *,
    content_type: str | None = None,
    content_encoding: str | None = None,
    compression: str | None = None,
    max_bytes: int = 20 * 2**20,
) -> bytes:
    """The JSON text of a capture body, whatever way the client packed it.

    Handles ``Content-Encoding: gzip``/``deflate``, PostHog's ``?compression=gzip-js`` (raw
    gzip body) and ``base64``, and form posts ``data=<base64 JSON>`` (older posthog-js)."""
    if len(body) > max_bytes:
        raise CaptureError(f"body exceeds max_body_bytes ({max_bytes} bytes)", 413)
    encoding = (content_encoding or "").strip().lower()
    mode = (compression or "").strip().lower()
    if encoding in ("gzip", "x-gzip") or mode in ("gzip", "gzip-js") or body[:2] == b"\x1f\x8b":
        body = _inflate(body, max_bytes, "gzip")
    elif encoding == "deflate":
        body = _inflate(body, max_bytes, "deflate")
    elif encoding not in ("", "identity"):
        raise CaptureError(f"unsupported Content-Encoding {content_encoding!r}", 415)
    elif mode == "lz64":
        raise CaptureError("compression=lz64 is not supported; use gzip-js or base64", 415)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded" or body[:5] == b"data=":
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        data = (form.get("data") or [""])[0]
        if not data:
            raise CaptureError("form body has no 'data' field")
        body = _b64(data)
    elif mode == "base64":
        body = _b64(body.decode("ascii", "replace"))
    if not body.strip():
        raise CaptureError("empty body")
    return body


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise CaptureError(f"data is not valid base64: {exc}") from None


_fromiso = datetime.fromisoformat


def parse_timestamp_ns(value: Any) -> int:
    """Epoch nanoseconds of an ISO-8601 string (no zone: UTC) or a number (epoch seconds
    below 1e11, else milliseconds). Raises ValueError."""
    if isinstance(value, str):
        parsed = _fromiso(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        delta = parsed - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected an ISO-8601 string, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("timestamp is not finite")
    return int(value * 10**9) if abs(value) < 1e11 else int(value * 10**6)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _record(
    raw: Any,
    *,
    name_key: str,
    user_keys: tuple[str, ...],
    id_key: str,
    now_ns: int,
    sent_ns: int | None,
    skew: bool,
    new_id: Callable[[], str],
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {
            "error": f"an event must be a JSON object, got {type(raw).__name__}",
            "raw": raw,
            "ts": now_ns,
        }
    props = raw.get("properties")
    if props is None:
        props = {}
    name = raw.get(name_key)
    record: dict[str, Any] = {"event": name if isinstance(name, str) else None, "ts": now_ns}
    problem: str | None = None
    if not isinstance(props, dict):
        problem, props = "properties must be a JSON object", {}
    user = None
    for key in user_keys:
        user = _text(raw.get(key)) if key in raw else _text(props.get(key))
        if user:
            break
    session = _text(raw.get("session_id")) or _text(props.get("$session_id"))
    event_id = raw.get(id_key)
    if event_id is None:
        event_id = new_id()
    elif not isinstance(event_id, str) or not 0 < len(event_id) <= _MAX_ID:
        problem = problem or f"{id_key} must be a string of 1-{_MAX_ID} characters"
        event_id = new_id()
    stamp = raw.get("timestamp")
    ts = now_ns
    try:
        if stamp is not None:
            ts = parse_timestamp_ns(stamp)
            if skew and sent_ns is not None:
                ts = now_ns + (ts - sent_ns)
        elif skew and isinstance(raw.get("offset"), int | float):
            ts = now_ns - int(raw["offset"] * 10**6)
    except (ValueError, OverflowError) as exc:
        problem = problem or f"timestamp {str(stamp)[:64]!r} is not a date: {exc}"
    if not _INT64[0] <= ts <= _INT64[1]:
        problem = problem or f"timestamp {str(stamp)[:64]!r} is out of range"
        ts = now_ns
    version = props.get("$schema_version", raw.get("schema_version"))
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        problem = problem or "schema_version must be an integer"
        version = None
    if not isinstance(name, str) or not name or len(name) > 200:
        problem = problem or f"{name_key} must be a non-empty string of at most 200 characters"
    elif not user:
        problem = problem or "the event names no user (distinct_id / user_id)"
    record.update(id=event_id, ts=ts, user=user or "", session=session, props=props, v=version)
    if problem is not None:
        record["error"] = problem
        record["raw"] = raw
    return record


def _posthog_record(
    raw: Any, *, now_ns: int, sent_ns: int | None, skew: bool, new_id: Callable[[], str]
) -> dict[str, Any]:
    """:func:`_record` with PostHog's field names (``event``, ``distinct_id``, ``uuid``)."""
    return _record(
        raw,
        name_key="event",
        user_keys=("distinct_id", "$distinct_id"),
        id_key="uuid",
        now_ns=now_ns,
        sent_ns=sent_ns,
        skew=skew,
        new_id=new_id,
    )


def _random_id() -> str:
    return str(uuid.uuid4())


def _seeded_ids(seed: int) -> Callable[[], str]:
    """UUIDs from ``seed`` and a counter: parsing the same body again gives the same ids."""
    counter = itertools.count()
    return lambda: str(uuid.UUID(int=(seed << 64 | next(counter)) & _UUID_MASK, version=4))


_UUID_MASK = (1 << 128) - 1


@dataclass
class PostHogEnvelope:
    """What capture needs of a PostHog body before queueing it: the events (unparsed), the
    API key, and the request's ``sent_at``."""

    events: list[Any]
    envelope: dict[str, Any]
    api_key: str | None
    sent_ns: int | None


def posthog_envelope(payload: Any) -> PostHogEnvelope:
    """Check the shape of a PostHog capture body: one event, ``{"batch": [...]}``, or a list.

    Raises :class:`CaptureError` when the body is not one of those shapes."""
    if isinstance(payload, list):
        events, envelope = payload, {}
    elif isinstance(payload, dict):
        envelope = payload
        if "batch" in payload:
            events = payload["batch"]
            if not isinstance(events, list):
                raise CaptureError("'batch' must be a list of events")
        elif "data" in payload and isinstance(payload["data"], list | dict):
            inner = payload["data"]
            events = inner if isinstance(inner, list) else [inner]
        else:
            events = [payload]
    else:
        raise CaptureError("body must be a JSON object or a list of events")
    key = envelope.get("api_key") or envelope.get("token")
    sent_ns: int | None = None
    if envelope.get("sent_at") is not None:
        try:
            sent_ns = parse_timestamp_ns(envelope["sent_at"])
        except (ValueError, OverflowError):
            raise CaptureError(f"sent_at {str(envelope['sent_at'])[:64]!r} is not a date") from None
    for raw in events:
        if key is not None:
            break
        if isinstance(raw, dict):
            props = raw.get("properties")
            key = raw.get("api_key") or (props.get("token") if isinstance(props, dict) else None)
    return PostHogEnvelope(events, envelope, key if isinstance(key, str) else None, sent_ns)


@dataclass
class CaptureColumns:
    """Capture records as columns: row ``i`` of ``event`` ... ``version`` is one usable event
    (``ts`` in epoch ns), in the order sent; ``errors`` holds the unusable ones as error
    records, each with the number of rows that came before it."""

    event: list[str] = field(default_factory=list)
    event_id: list[str] = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    user: list[str] = field(default_factory=list)
    session: list[str | None] = field(default_factory=list)
    props: list[dict[str, Any]] = field(default_factory=list)
    version: list[int | None] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    api_key: str | None = None

    def __len__(self) -> int:
        return len(self.event)

    def records(self) -> list[dict[str, Any]]:
        """The capture records, errors in their places."""
        out: list[dict[str, Any]] = []
        errors = iter(self.errors)
        pending = next(errors, None)
        for i, (name, event_id, ts, user, session, props, version) in enumerate(
            zip(
                self.event,
                self.event_id,
                self.ts.tolist(),
                self.user,
                self.session,
                self.props,
                self.version,
                strict=True,
            )
        ):
            while pending is not None and pending[0] <= i:
                out.append(pending[1])
                pending = next(errors, None)
            out.append(
                {
                    "event": name,
                    "ts": ts,
                    "id": event_id,
                    "user": user,
                    "session": session,
                    "props": props,
                    "v": version,
                }
            )
        while pending is not None:
            out.append(pending[1])
            pending = next(errors, None)
        return out


_ARROW_TS = pa.timestamp("ns", "UTC")


def _parse_stamps(stamps: list[str | None]) -> tuple[np.ndarray, list[int]]:
    """Epoch ns of ISO-8601 strings (None: 0) as :func:`parse_timestamp_ns` reads them, and
    the positions of those it cannot read. One Arrow cast when every string names its zone
    (what PostHog's libraries send), else one at a time."""
    try:
        parsed = pa.array(stamps, pa.string()).cast(_ARROW_TS).cast(pa.int64())
        values = parsed.fill_null(0).to_numpy()
        # datetime keeps microseconds: the same value whichever way it was parsed
        return values // 1000 * 1000, []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = np.zeros(len(stamps), np.int64)
    bad = []
    for i, stamp in enumerate(stamps):
        if stamp is None:
            continue
        try:
            ns = parse_timestamp_ns(stamp)
        except (ValueError, OverflowError):
            bad.append(i)
            continue
        if _INT64[0] <= ns <= _INT64[1]:
            values[i] = ns
        else:
            bad.append(i)
    return values, bad


def _shift(values: np.ndarray, offset: int) -> np.ndarray | None:
    """``values + offset`` when nothing leaves int64, else None."""
    if not len(values):
        return values
    low, high = int(values.min()) + offset, int(values.max()) + offset
    if _INT64[0] <= offset <= _INT64[1] and _INT64[0] <= low and high <= _INT64[1]:
        return values + np.int64(offset)
    return None


def posthog_columns(payload: Any, *, now_ns: int, id_seed: int | None = None) -> CaptureColumns:
    """The capture records of a PostHog capture body as columns (see :func:`parse_posthog`).

    Raises :class:`CaptureError` when the body is not one of the accepted shapes."""
    shape = posthog_envelope(payload)
    skew = not shape.envelope.get("historical_migration", False)
    new_id = _random_id if id_seed is None else _seeded_ids(id_seed)
    sent_ns = shape.sent_ns
    cols = CaptureColumns(api_key=shape.api_key)
    names, ids, users, sessions = cols.event, cols.event_id, cols.user, cols.session
    props_col, versions, errors = cols.props, cols.version, cols.errors
    stamps: list[str | None] = []  # ISO strings to parse, None where ``known`` has the ts
    known: list[tuple[int, int]] = []
    raws: list[Any] = []
    name: Any
    props: Any
    user: Any
    stamp: Any
    event_id: Any
    session: Any
    for raw in shape.events:
        fast = False
        if type(raw) is dict:
            name = raw.get("event")
            props = raw.get("properties")
            user = raw.get("distinct_id")
            stamp = raw.get("timestamp")
            event_id = raw.get("uuid")
            session = raw.get("session_id")
            # The shape PostHog's libraries send; the rest goes the long way (_record).
            fast = (
                type(name) is str
                and 0 < len(name) <= 200
                and type(props) is dict
                and type(user) is str
                and user != ""
                and type(stamp) is str
                and "$schema_version" not in props
                and "schema_version" not in raw
                and (sent_ns is not None or raw.get("sent_at") is None)
                and (event_id is None or (type(event_id) is str and 0 < len(event_id) <= _MAX_ID))
            )
            if fast and (session is None or session == ""):
                session = props.get("$session_id")
                fast = session is None or type(session) is str
            elif fast:
                fast = type(session) is str
        if fast:
            names.append(name)
            ids.append(new_id() if event_id is None else event_id)
            users.append(user)
            sessions.append(session)
            props_col.append(props)
            versions.append(None)
            stamps.append(stamp)
            raws.append(raw)
            continue
        event_sent = sent_ns
        if event_sent is None and isinstance(raw, dict) and raw.get("sent_at") is not None:
            try:
                event_sent = parse_timestamp_ns(raw["sent_at"])
            except (ValueError, OverflowError):
                event_sent = None
        record = _posthog_record(raw, now_ns=now_ns, sent_ns=event_sent, skew=skew, new_id=new_id)
        if "error" in record:
            errors.append((len(names), record))
            continue
        known.append((len(names), record["ts"]))
        names.append(record["event"])
        ids.append(record["id"])
        users.append(record["user"])
        sessions.append(record["session"])
        props_col.append(record["props"])
        versions.append(record["v"])
        stamps.append(None)
        raws.append(None)
    values, bad = _parse_stamps(stamps)
    if skew and sent_ns is not None:
        shifted = _shift(values, now_ns - sent_ns)
        if shifted is None:  # absurd dates: row by row, the ones out of range are errors
            shifted = values.copy()
            for i, value in enumerate(values.tolist()):
                ts = now_ns + (value - sent_ns)
                if _INT64[0] <= ts <= _INT64[1]:
                    shifted[i] = ts
                elif stamps[i] is not None:
                    bad.append(i)
        values = shifted
    for i, ts in known:
        values[i] = ts
    cols.ts = values
    if bad:
        _drop_rows(cols, sorted(set(bad)), raws, now_ns)
    return cols


def _drop_rows(cols: CaptureColumns, rows: list[int], raws: list[Any], now_ns: int) -> None:
    """Turn ``rows`` (fast-path events whose timestamp is unusable) into error records."""
    keep = np.ones(len(cols), bool)
    keep[rows] = False
    for i in rows:
        event_id = cols.event_id[i]
        record = _posthog_record(
            raws[i],
            now_ns=now_ns,
            sent_ns=None,
            skew=False,
            new_id=functools.partial(str, event_id),  # the id it was given
        )
        if "error" not in record:  # in range alone, out of range once corrected
            record["error"] = f"timestamp {str(raws[i].get('timestamp'))[:64]!r} is out of range"
            record["raw"] = raws[i]
        cols.errors.append((i, record))
    cols.errors.sort(key=lambda entry: entry[0])
    # an error's position counts the rows before it that are kept
    before = np.concatenate([[0], np.cumsum(keep)])
    cols.errors = [(int(before[pos]), record) for pos, record in cols.errors]
    index = np.flatnonzero(keep).tolist()
    for name in ("event", "event_id", "user", "session", "props", "version"):
        column = getattr(cols, name)
        setattr(cols, name, [column[i] for i in index])
    cols.ts = cols.ts[keep]


def parse_posthog(payload: Any, *, now_ns: int, id_seed: int | None = None) -> CaptureBatch:
    """Capture records of a PostHog capture body (see :func:`posthog_envelope`). Events
    without a ``uuid`` get a random one, or with ``id_seed`` one derived from it and their
    position, so that parsing a queued body again gives the same ids.

    Raises :class:`CaptureError` when the body is not one of the accepted shapes."""
    cols = posthog_columns(payload, now_ns=now_ns, id_seed=id_seed)
    return CaptureBatch(cols.records(), cols.api_key)


def parse_sr_events(payload: Any, *, now_ns: int) -> CaptureBatch:
    """Capture records of an ``/api/sr/events`` body: one event or a list, in the seed-003
    structure (``event_name``, ``event_id``, ``timestamp``, ``user_id``, ``session_id``,
    ``properties``), or ``{"events": [...], "sent_at": ...}``."""
    sent_ns: int | None = None
    if isinstance(payload, dict) and isinstance(payload.get("events"), list):
        events = payload["events"]
        if payload.get("sent_at") is not None:
            try:
                sent_ns = parse_timestamp_ns(payload["sent_at"])
            except (ValueError, OverflowError):
                raise CaptureError("sent_at is not a date") from None
    elif isinstance(payload, list):
        events = payload
    elif isinstance(payload, dict):
        events = [payload]
    else:
        raise CaptureError("body must be an event object, a list of events or {events: [...]}")
    batch = CaptureBatch()
    batch.records = [
        _record(
            raw,
            name_key="event_name",
            user_keys=("user_id",),
            id_key="event_id",
            now_ns=now_ns,
            sent_ns=sent_ns,
            skew=True,
            new_id=_random_id,
        )
        for raw in events
    ]
    return batch
