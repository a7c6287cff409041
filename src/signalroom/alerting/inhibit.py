"""Inhibition (Alertmanager's ``inhibit/inhibit.go``).

A rule mutes an alert matching its *target* matchers while an unresolved alert matching its
*source* matchers has the same values for every ``equal`` label (a missing label equals the
empty string). An alert that matches both sides is not inhibited by another alert that also
matches both sides, so an alert never inhibits itself.

Source alerts are kept per rule in buckets keyed by their ``equal`` values, so checking one
alert costs a dictionary lookup rather than a scan of every source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from signalroom.alerting.alerts import Alert, fingerprint_hex
from signalroom.alerting.config import InhibitRule
from signalroom.alerting.matchers import Matcher, matches_all

__all__ = ["Inhibitor", "Rule"]


class Rule:
    """One inhibit rule and the source alerts seen for it."""

    def __init__(self, config: InhibitRule) -> None:
        self.source: list[Matcher] = config.source_matcher_list()
        self.target: list[Matcher] = config.target_matcher_list()
        self.equal: tuple[str, ...] = tuple(config.equal)
        self._buckets: dict[tuple[str, ...], dict[int, Alert]] = {}
        self._bucket_of: dict[int, tuple[str, ...]] = {}

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(n, "") for n in self.equal)

    def observe(self, alert: Alert) -> None:
        fp = alert.fingerprint
        old = self._bucket_of.pop(fp, None)
        if old is not None:
            self._buckets.get(old, {}).pop(fp, None)
        if not matches_all(self.source, alert.labels):
            return
        key = self._key(alert.labels)
        self._buckets.setdefault(key, {})[fp] = alert
        self._bucket_of[fp] = key

    def forget(self, fp: int) -> None:
        key = self._bucket_of.pop(fp, None)
        if key is not None:
            bucket = self._buckets.get(key, {})
            bucket.pop(fp, None)
            if not bucket:
                self._buckets.pop(key, None)

    def inhibiting(self, labels: Mapping[str, str], now: datetime) -> int | None:
        """The fingerprint of a source alert inhibiting these (target-matching) labels."""
        bucket = self._buckets.get(self._key(labels))
        if not bucket:
            return None
        two_sided = matches_all(self.source, labels)
        for fp, src in bucket.items():
            if src.resolved_at(now):
                continue
            if two_sided and matches_all(self.target, src.labels):
                continue
            return fp
        return None


class Inhibitor:
    """All inhibit rules of a configuration; fed every alert the store accepts."""

    def __init__(self, rules: Iterable[InhibitRule]) -> None:
        self.rules = [Rule(r) for r in rules]

    def observe(self, alert: Alert) -> None:
        for rule in self.rules:
            rule.observe(alert)

    def forget(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            for rule in self.rules:
                rule.forget(a.fingerprint)

    def inhibited_by(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        """Fingerprints (hex) of the alerts inhibiting an alert with these labels, or []."""
        for rule in self.rules:
            if not matches_all(rule.target, labels):
                continue
            fp = rule.inhibiting(labels, now)
            if fp is not None:
                return [fingerprint_hex(fp)]
        return []

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return bool(self.inhibited_by(labels, now))
