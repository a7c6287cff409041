"""Funnels and active users in NumPy over an :class:`~signalroom.events.index.EventIndex`.

They compute what the SQL versions in :mod:`signalroom.events.analytics` compute (the tests
hold them to it) for the common case: steps without property filters and no breakdown. Users
are dense integer codes, so per-user state is a plain array indexed by user and every step is
one pass over that step's rows (``np.minimum.at`` finds each user's first qualifying event).
Only the strict funnel sorts, by (user, time), since it needs each user's next event.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from signalroom.events.index import EventIndex

__all__ = ["active_users", "ordered_funnel", "strict_funnel", "unordered_funnel"]

_NEVER = np.iinfo(np.int64).max
_DAY_NS = 86_400 * 10**9
# (users, average and median seconds from the previous step) per step
StepStats = tuple[int, float | None, float | None]
_I64 = np.ndarray[Any, np.dtype[np.int64]]


def _stats(delta_ns: _I64) -> tuple[float | None, float | None]:
    if not len(delta_ns):
        return None, None
    seconds = delta_ns / 1e9
    return float(seconds.mean()), float(np.median(seconds))


def _first(users: int, who: np.ndarray[Any, Any], t: _I64) -> _I64:
    """Each user's smallest ``t`` (``_NEVER`` for users without rows)."""
    out = np.full(users, _NEVER, np.int64)
    np.minimum.at(out, who, t)
    return out


def ordered_funnel(
    index: EventIndex,
    tenant: str,
    steps: Sequence[str],
    window_ns: int,
    start_ns: int,
    end_ns: int,
) -> list[StepStats]:
    """A user enters at their first step-1 event in ``[start, end)``; step k is their first
    step-k event at or after step k-1 (strictly after when both steps are the same event),
    within ``window_ns`` of entering."""
    parts = index.parts(tenant, start_ns, end_ns + window_ns)
    rows = {name: index.rows(tenant, [name], start_ns, end_ns + window_ns, parts) for name in steps}
    users = index.user_count(tenant)
    first = rows[steps[0]]
    entering = first.t < end_ns
    t0 = _first(users, first.user[entering], first.t[entering])
    reached = t0 != _NEVER
    deadline = np.where(reached, t0 + window_ns, -1)
    out: list[StepStats] = [(int(reached.sum()), None, None)]
    prev = t0
    for k in range(1, len(steps)):
        step = rows[steps[k]]
        # users who never reached step k-1 have prev = _NEVER: no time is at or after it
        before = prev[step.user]
        ok = step.t > before if steps[k] == steps[k - 1] else step.t >= before
        who, t = step.user[ok], step.t[ok]
        inside = t <= deadline[who]
        nxt = _first(users, who[inside], t[inside])
        reached = nxt != _NEVER
        out.append((int(reached.sum()), *_stats(nxt[reached] - prev[reached])))
        prev = nxt
    return out


def unordered_funnel(
    index: EventIndex,
    tenant: str,
    steps: Sequence[str],
    window_ns: int,
    start_ns: int,
    end_ns: int,
) -> list[StepStats]:
    """A user enters at their first event of any step (which must fall in ``[start, end)``);
    their level is the number of steps done within the window after it."""
    names = sorted(set(steps))
    rows = index.rows(tenant, names, start_ns, end_ns + window_ns)
    users = index.user_count(tenant)
    t0 = _first(users, rows.user, rows.t)
    entered = (t0 >= start_ns) & (t0 < end_ns)
    begin = t0[rows.user]
    inside = entered[rows.user] & (rows.t >= begin) & (rows.t <= begin + window_ns)
    last = np.full(users, -1, np.int64)
    np.maximum.at(last, rows.user[inside], rows.t[inside])
    level = np.zeros(users, np.int64)
    for name in steps:
        done = np.zeros(users, bool)
        code = index.event_code(tenant, name)
        done[rows.user[inside & (rows.event == code)]] = True
        level += done
    complete = entered & (level == len(steps))
    timing = _stats(last[complete] - t0[complete])
    out: list[StepStats] = []
    for k in range(len(steps)):
        count = int((entered & (level > k)).sum())
        out.append((count, *timing) if k == len(steps) - 1 else (count, None, None))
    return out


def strict_funnel(
    index: EventIndex,
    tenant: str,
    steps: Sequence[str],
    window_ns: int,
    start_ns: int,
    end_ns: int,
) -> list[StepStats]:
    """Every step-1 event in ``[start, end)`` is a possible start; step k must be the user's
    very next event (of any kind) after step k-1, within the window. A user counts with their
    best start (the earliest among equally good ones). Events at the same nanosecond are
    ordered as stored (by event name), not by event id."""
    codes = [index.event_code(tenant, name) for name in steps]
    user, at, event, times = _by_user_and_time(index, tenant, start_ns, end_ns + window_ns)
    # times are looked up (times[at[i]]) only for the rows still in the running
    start = np.flatnonzero(event == codes[0])
    begin = times[at[start]]
    entering = (begin >= start_ns) & (begin < end_ns)
    start, begin = start[entering], begin[entering]
    who = user[start]
    level = np.ones(len(start), np.int64)
    alive = np.arange(len(start))  # starts that made every step so far
    last = len(user) - 1
    for k in range(1, len(steps)):
        nxt = start[alive] + k
        ok = nxt <= last
        alive, nxt = alive[ok], nxt[ok]
        ok = (user[nxt] == who[alive]) & (event[nxt] == codes[k])
        alive, nxt = alive[ok], nxt[ok]
        alive = alive[times[at[nxt]] <= begin[alive] + window_ns]
        level[alive] += 1
    users = index.user_count(tenant)
    best = np.zeros(users, np.int64)
    np.maximum.at(best, who, level)
    # the earliest start reaching each user's best level (starts are sorted by user, time)
    top = level == best[who]
    _, first = np.unique(who[top], return_index=True)
    chosen = start[top][first]
    complete = chosen[best[who[top][first]] == len(steps)]
    timing = _stats(times[at[complete + len(steps) - 1]] - times[at[complete]])
    out: list[StepStats] = []
    for k in range(len(steps)):
        count = int((best > k).sum())
        out.append((count, *timing) if k == len(steps) - 1 else (count, None, None))
    return out


def _by_user_and_time(
    index: EventIndex, tenant: str, start_ns: int, end_ns: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], _I64]:
    """Every row in ``[start, end)`` ordered by user, then time: (user, at, event, times),
    where the time of row i is ``times[at[i]]``.

    When the parts do not overlap in time (day files after compaction, a buffer of newer
    rows), a row's global time rank is its part's offset plus its rank in the part, and one
    packed integer per row (user | time rank | event) sorts with a plain ``np.sort``, much
    faster than a two-key ``lexsort``, which is the fallback."""
    parts = sorted(index.parts(tenant, start_ns, end_ns), key=lambda p: p.min_t)
    users = index.user_count(tenant)
    total = sum(p.rows for p in parts)
    events = max((max(p.slices, default=0) for p in parts), default=0) + 1
    rank_bits, event_bits = max(total, 1).bit_length(), events.bit_length()
    disjoint = all(a.max_t < b.min_t for a, b in itertools.pairwise(parts))
    if not disjoint or users.bit_length() + rank_bits + event_bits > 63:
        rows = index.rows(tenant, None, start_ns, end_ns, parts)
        order = np.lexsort((rows.t, rows.user))
        t = rows.t[order]
        return rows.user[order], np.arange(len(t)), rows.event[order], t
    keys: list[_I64] = []
    times: list[_I64] = []
    offset = 0
    for part in parts:
        rank, sorted_t = part.time_rank()
        inside = (part.t >= start_ns) & (part.t < end_ns)
        key = part.user[inside].astype(np.int64) << (rank_bits + event_bits)
        key |= (rank[inside].astype(np.int64) + offset) << event_bits
        key |= part.events()[inside]
        keys.append(key)
        times.append(sorted_t)
        offset += part.rows
    if not keys:
        empty = np.empty(0, np.int64)
        return empty, empty, empty, empty
    packed = np.sort(np.concatenate(keys))
    at = (packed >> event_bits) & ((1 << rank_bits) - 1)
    event = packed & ((1 << event_bits) - 1)
    return packed >> (rank_bits + event_bits), at, event, np.concatenate(times)


def active_users(
    index: EventIndex,
    tenant: str,
    event: str | None,
    windows: dict[str, int],
    start_ns: int,
    end_ns: int,
    first_day: int,
    days: int,
) -> dict[str, list[float]]:
    """For each of ``days`` days from ``first_day`` (days since the epoch) and each window
    (name -> days), the distinct users active in the window ending that day, counting events
    in ``[start_ns, end_ns)``. Whole files inside the range use their cached user sets."""
    parts = index.parts(tenant, start_ns, end_ns)
    code = None if event is None else index.event_code(tenant, event)
    per_day: dict[int, list[np.ndarray[Any, Any]]] = {}
    for part in parts:
        day = part.min_t // _DAY_NS
        whole = part.min_t >= start_ns and part.max_t < end_ns
        if whole and part.max_t // _DAY_NS == day:
            found = part.users(code)
            if len(found):
                per_day.setdefault(day, []).append(found)
            continue
        codes = list(part.slices) if code is None else [code]
        picked = [part.select(c, start_ns, end_ns) for c in codes]
        if not picked:
            continue
        t = np.concatenate([p[0] for p in picked])
        who = np.concatenate([p[1] for p in picked]).astype(np.int64)
        pairs = np.unique((t // _DAY_NS) << 32 | who)
        row_days = pairs >> 32
        bounds = np.flatnonzero(np.diff(row_days)) + 1
        for chunk in np.split(pairs, bounds):
            if len(chunk):
                per_day.setdefault(int(chunk[0] >> 32), []).append(chunk & 0xFFFFFFFF)
    active = {
        day: arrays[0] if len(arrays) == 1 else np.unique(np.concatenate(arrays))
        for day, arrays in per_day.items()
    }
    out = {name: [0.0] * days for name in windows}
    if not active:
        return out
    if all(size == 1 for size in windows.values()):  # DAU alone: the day's distinct users
        counts = [float(len(active.get(first_day + i, ()))) for i in range(days)]
        return {name: list(counts) for name in windows}
    # Each user's last active day so far, and how many users were last active on each day:
    # the users active in the window ending on day D are those last seen in it.
    base = min(min(active), first_day)
    span = max(max(active), first_day + days - 1) - base + 1
    last_seen = np.full(index.user_count(tenant), -1, np.int64)
    latest = np.zeros(span, np.int64)
    for offset in range(span):
        day = base + offset
        users = active.get(day)
        if users is not None:
            before = last_seen[users]
            seen = before[before >= 0]
            if len(seen):
                latest -= np.bincount(seen, minlength=span)
            latest[offset] += len(users)
            last_seen[users] = offset
        i = day - first_day
        if 0 <= i < days:
            for name, size in windows.items():
                out[name][i] = float(latest[max(0, offset - size + 1) : offset + 1].sum())
    return out
