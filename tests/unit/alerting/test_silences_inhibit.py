"""Silences (silence_test.go: set/update rules, expire, states, retention) and inhibition
(inhibit_test.go: equal labels, resolved sources, two-sided rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalroom.alerting.alerts import Alert, fingerprint
from signalroom.alerting.config import InhibitRule
from signalroom.alerting.inhibit import Inhibitor
from signalroom.alerting.matchers import parse_matchers
from signalroom.alerting.silences import Silence, SilenceError, SilenceNotFound, Silences
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def sil(
    matchers: str = 'a="1"', start: datetime = T0, end: datetime = T0 + H, sid: str = ""
) -> Silence:
    return Silence(parse_matchers(matchers), start, end, "me", "c", id=sid)


def test_states_and_matching() -> None:
    s = Silences()
    pending = s.set(sil(start=T0 + H, end=T0 + 2 * H), T0)
    active = s.set(sil('a=~"1|2", b!="x"'), T0)
    assert s.get(pending).state(T0) == "pending"
    assert s.get(active).state(T0) == "active"
    assert s.mutes({"a": "2"}, T0) == [active]
    assert s.mutes({"a": "2", "b": "x"}, T0) == []
    assert s.mutes({"a": "1"}, T0 + H + timedelta(minutes=1)) == [pending]
    assert s.count_by_state(T0 + 3 * H) == {"active": 0, "pending": 0, "expired": 2}


def test_start_in_the_past_is_moved_to_now() -> None:
    s = Silences()
    sid = s.set(sil(start=T0 - H), T0)
    assert s.get(sid).starts_at == T0


def test_update_in_place_when_matchers_equal() -> None:
    s = Silences()
    sid = s.set(sil(), T0)
    # extend an active silence: same id
    now = T0 + timedelta(minutes=10)
    same = s.set(sil(end=T0 + 3 * H, sid=sid), now)
    assert same == sid
    assert s.get(sid).ends_at == T0 + 3 * H
    assert len(s.all()) == 1


def test_changed_matchers_expire_and_create() -> None:
    s = Silences()
    sid = s.set(sil(), T0)
    now = T0 + timedelta(minutes=10)
    new = s.set(sil('a="2"', sid=sid), now)
    assert new != sid
    assert s.get(sid).state(now) == "expired"
    assert s.get(sid).ends_at == now
    assert s.get(new).state(now) == "active"


def test_changing_start_of_active_silence_creates_new() -> None:
    s = Silences()
    sid = s.set(sil(), T0)
    now = T0 + timedelta(minutes=10)
    new = s.set(sil(start=T0 + timedelta(minutes=5), sid=sid), now)
    assert new != sid
    assert s.get(new).starts_at == now


def test_ending_an_active_silence_in_the_past_creates_new() -> None:
    s = Silences()
    sid = s.set(sil(end=T0 + 2 * H), T0)
    now = T0 + H
    # cannot update in place, and the replacement would end before it starts: refused, and
    # (unlike Alertmanager, which expires the old one first) the old silence stays active
    with pytest.raises(SilenceError, match="end time must not be before start time"):
        s.set(sil(end=T0 + timedelta(minutes=30), sid=sid), now)
    assert s.get(sid).state(now) == "active"


def test_pending_silence_may_move_its_start_into_the_future() -> None:
    s = Silences()
    sid = s.set(sil(start=T0 + H, end=T0 + 2 * H), T0)
    assert s.set(sil(start=T0 + 2 * H, end=T0 + 3 * H, sid=sid), T0) == sid
    assert s.set(sil(start=T0 - H, end=T0 + 3 * H, sid=sid), T0) != sid


def test_expired_silence_cannot_be_updated_and_unknown_ids_fail() -> None:
    s = Silences()
    sid = s.set(sil(), T0)
    later = T0 + 2 * H
    assert s.set(sil(end=T0 + 5 * H, sid=sid), later) != sid
    with pytest.raises(SilenceNotFound):
        s.set(sil(sid="missing"), T0)


def test_expire() -> None:
    s = Silences()
    active = s.set(sil(), T0)
    pending = s.set(sil(start=T0 + H, end=T0 + 2 * H), T0)
    now = T0 + timedelta(minutes=1)
    s.expire(active, now)
    s.expire(pending, now)
    assert s.get(active).ends_at == now
    assert (s.get(pending).starts_at, s.get(pending).ends_at) == (now, now)
    with pytest.raises(SilenceError, match="already expired"):
        s.expire(active, now)
    with pytest.raises(SilenceNotFound):
        s.expire("nope", now)


def test_validation() -> None:
    s = Silences()
    with pytest.raises(SilenceError, match="at least one matcher"):
        s.set(Silence([], T0, T0 + H), T0)
    with pytest.raises(SilenceError, match="end time must not be before start time"):
        s.set(sil(start=T0 + 2 * H, end=T0 + H), T0)


def test_retention_and_persistence(tmp_path: Path) -> None:
    with StateStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.migrate()
        s = Silences("acme", store.engine, retention=timedelta(hours=120))
        sid = s.set(sil('a=~"x.*"'), T0)
        other = s.set(sil(end=T0 + 200 * H), T0)
        again = Silences("acme", store.engine)
        assert again.load() == 2
        assert again.get(sid).matchers == s.get(sid).matchers
        assert again.get(sid).ends_at == T0 + H
        assert Silences("other", store.engine).load() == 0
        assert s.gc(T0 + 120 * H) == 0
        assert s.gc(T0 + 121 * H + timedelta(seconds=1)) == 1
        third = Silences("acme", store.engine)
        third.load()
        assert [x.id for x in third.all()] == [other]


# --- inhibition -----------------------------------------------------------------------------

NOW = T0


def firing(**labels: str) -> Alert:
    return Alert(labels=labels, starts_at=NOW - H, ends_at=NOW + H)


def rule(**kw: object) -> InhibitRule:
    return InhibitRule.model_validate(kw)


def test_inhibits_with_equal_labels() -> None:
    ih = Inhibitor(
        [rule(source_matchers=["s=critical"], target_matchers=["s=warning"], equal=["cluster"])]
    )
    src = firing(alertname="Down", s="critical", cluster="eu")
    ih.observe(src)
    assert ih.inhibited_by({"alertname": "X", "s": "warning", "cluster": "eu"}, NOW) == [
        f"{fingerprint(src.labels):016x}"
    ]
    assert not ih.mutes({"alertname": "X", "s": "warning", "cluster": "us"}, NOW)
    assert not ih.mutes({"alertname": "X", "s": "info", "cluster": "eu"}, NOW)


def test_missing_equal_label_equals_empty() -> None:
    ih = Inhibitor(
        [rule(source_matchers=["s=critical"], target_matchers=["s=warning"], equal=["zone"])]
    )
    ih.observe(firing(s="critical"))
    assert ih.mutes({"s": "warning"}, NOW)
    assert not ih.mutes({"s": "warning", "zone": "a"}, NOW)


def test_resolved_source_does_not_inhibit() -> None:
    ih = Inhibitor([rule(source_matchers=["s=critical"], target_matchers=["s=warning"])])
    src = firing(s="critical")
    src.ends_at = NOW - timedelta(seconds=1)
    ih.observe(src)
    assert not ih.mutes({"s": "warning"}, NOW)
    # the same alert firing again inhibits again
    ih.observe(firing(s="critical"))
    assert ih.mutes({"s": "warning"}, NOW)


def test_source_that_stops_matching_is_dropped() -> None:
    ih = Inhibitor([rule(source_matchers=["s=critical"], target_matchers=["t=1"])])
    a = firing(s="critical", id="1")
    ih.observe(a)
    assert ih.mutes({"t": "1"}, NOW)
    ih.forget([a])
    assert not ih.mutes({"t": "1"}, NOW)


def test_two_sided_alerts_do_not_inhibit_each_other_or_themselves() -> None:
    ih = Inhibitor([rule(source_matchers=["a=x"], target_matchers=["b=y"], equal=["g"])])
    both1 = firing(a="x", b="y", g="1", n="1")
    both2 = firing(a="x", b="y", g="1", n="2")
    ih.observe(both1)
    ih.observe(both2)
    assert not ih.mutes(both1.labels, NOW)
    assert not ih.mutes(both2.labels, NOW)
    # a source-only alert does inhibit a two-sided one
    ih.observe(firing(a="x", g="1"))
    assert ih.mutes(both1.labels, NOW)
