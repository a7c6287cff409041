"""Target discovery: static_configs and file_sd_configs, and target relabeling.

Target groups become targets the way Prometheus's ``PopulateLabels`` does it: the group's and
the target's labels, then ``job``, ``__scrape_interval__``, ``__scrape_timeout__``,
``__metrics_path__``, ``__scheme__`` and ``__param_*`` defaults, then ``relabel_configs``; the
``__meta_*`` labels go away and ``instance`` defaults to ``__address__``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from signalroom.model.labels import Labels
from signalroom.scrape.config import FileSDConfig, ScrapeConfig
from signalroom.scrape.relabel import process_dict
from signalroom.units import format_duration_ms, parse_duration_ms

log = logging.getLogger("signalroom.scrape.discovery")

ADDRESS = "__address__"
SCHEME = "__scheme__"
METRICS_PATH = "__metrics_path__"
SCRAPE_INTERVAL = "__scrape_interval__"
SCRAPE_TIMEOUT = "__scrape_timeout__"
PARAM_PREFIX = "__param_"
META_PREFIX = "__meta_"
FILEPATH_LABEL = "__meta_filepath"


@dataclass(frozen=True)
class TargetGroup:
    """A set of targets sharing labels, from one source (a static config, a file)."""

    source: str
    targets: tuple[Mapping[str, str], ...]
    labels: Mapping[str, str] = field(default_factory=dict)


def static_groups(cfg: ScrapeConfig) -> list[TargetGroup]:
    """The target groups of a job's ``static_configs``."""
    return [
        TargetGroup(
            source=f"{cfg.job_name}/static/{i}",
            targets=tuple({ADDRESS: t} for t in sc.targets),
            labels=dict(sc.labels),
        )
        for i, sc in enumerate(cfg.static_configs)
    ]


class FileSDError(ValueError):
    """A file_sd file could not be read or is not a list of target groups."""


def read_target_file(path: str) -> list[TargetGroup]:
    """Read one JSON or YAML file of target groups, as Prometheus's file SD does."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FileSDError(f"error reading file {path!r}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.lower().endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise FileSDError(f"error parsing file {path!r}: {exc}") from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise FileSDError(f"{path}: expected a list of target groups")
    groups = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise FileSDError(f"{path}: target group {i} is not a mapping")
        targets = item.get("targets") or []
        labels = item.get("labels") or {}
        unknown = set(item) - {"targets", "labels"}
        if unknown:
            raise FileSDError(f"{path}: target group {i}: unknown keys {sorted(unknown)}")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise FileSDError(f"{path}: target group {i}: targets must be a list of strings")
        if not isinstance(labels, Mapping):
            raise FileSDError(f"{path}: target group {i}: labels must be a mapping")
        for t in targets:
            if "/" in t:
                raise FileSDError(f'{path}: "{t}" is not a valid hostname')
        group_labels = {str(k): str(v) for k, v in labels.items()}
        group_labels[FILEPATH_LABEL] = path
        groups.append(
            TargetGroup(f"{path}:{i}", tuple({ADDRESS: t} for t in targets), group_labels)
        )
    return groups


class FileDiscovery:
    """Target groups of one ``file_sd_configs`` entry, re-read when the files change.

    Changes are found by polling the matched paths' modification times and sizes (no inotify
    needed); every ``refresh_interval`` the files are re-read regardless. A file that turns
    unreadable or invalid keeps its last good groups, as Prometheus does.
    """

    def __init__(self, config: FileSDConfig) -> None:
        self.config = config
        self._stamps: dict[str, tuple[int, int]] = {}
        self._groups: dict[str, list[TargetGroup]] = {}
        self._last_full_read = 0.0
        self.errors: dict[str, str] = {}

    def _paths(self) -> list[str]:
        out: list[str] = []
        for pattern in self.config.files:
            out.extend(sorted(glob.glob(pattern)))
        return list(dict.fromkeys(out))

    def _stamp_all(self) -> dict[str, tuple[int, int]]:
        stamps = {}
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamps[path] = (st.st_mtime_ns, st.st_size)
        return stamps

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read what changed; True when the groups may differ from before."""
        now = time.monotonic()
        stamps = self._stamp_all()
        due = force or now - self._last_full_read >= self.config.refresh_interval / 1000
        if not due and stamps == self._stamps:
            return False
        if due:
            self._last_full_read = now
        before = dict(self._groups)
        for path in list(self._groups):
            if path not in stamps:
                del self._groups[path]
                self.errors.pop(path, None)
        for path, stamp in stamps.items():
            if not due and self._stamps.get(path) == stamp and path in self._groups:
                continue
            try:
                self._groups[path] = read_target_file(path)
                self.errors.pop(path, None)
            except FileSDError as exc:
                self.errors[path] = str(exc)
                log.warning("file_sd: %s", exc)
        self._stamps = stamps
        return before != self._groups

    def groups(self) -> list[TargetGroup]:
        return [g for path in sorted(self._groups) for g in self._groups[path]]


# --- targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A target to scrape: its final labels (with ``__`` internal ones) and its URL."""

    job: str
    labels: Labels
    discovered_labels: Labels
    url: str
    interval_ms: int
    timeout_ms: int

    @property
    def public_labels(self) -> Labels:
        """The labels every scraped series gets (those not starting with ``__``)."""
        return Labels._from_sorted(tuple(p for p in self.labels if not p[0].startswith("__")))

    def identity(self) -> int:
        """Prometheus's target hash: FNV-1a of the label hash and the URL."""
        return fnv64a(f"{self.labels.hash64():016d}".encode() + self.url.encode())

    def offset_s(self, interval_s: float, seed: int, now: float | None = None) -> float:
        """Seconds until this target's first scrape, spreading targets over the interval.

        As Prometheus: (hash XOR seed) modulo the interval, measured from the next interval
        boundary of wall-clock time.
        """
        interval_ns = max(int(interval_s * 1e9), 1)
        now_ns = time.time_ns() if now is None else int(now * 1e9)
        base = interval_ns - now_ns % interval_ns
        offset = (self.identity() ^ seed) % interval_ns
        nxt = base + offset
        if nxt > interval_ns:
            nxt -= interval_ns
        return nxt / 1e9


def fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def offset_seed(external_labels: Mapping[str, str], hostname: str | None = None) -> int:
    """The per-server seed Prometheus mixes into target offsets (host and external labels)."""
    host = hostname if hostname is not None else os.uname().nodename
    return fnv64a((host + str(Labels(dict(external_labels)))).encode())


class TargetError(ValueError):
    """A discovered target cannot be scraped; the message is Prometheus's."""


def populate_target(
    group_labels: Mapping[str, str], target_labels: Mapping[str, str], cfg: ScrapeConfig
) -> tuple[Target | None, Labels]:
    """Build a target, or ``None`` when relabeling drops it; also return its discovered labels.

    Raises ``TargetError`` for targets that cannot be scraped (no address, bad interval).
    """
    work: dict[str, str] = {k: v for k, v in group_labels.items() if v != ""}
    work.update((k, v) for k, v in target_labels.items() if v != "")
    defaults = {
        "job": cfg.job_name,
        SCRAPE_INTERVAL: format_duration_ms(cfg.scrape_interval),
        SCRAPE_TIMEOUT: format_duration_ms(cfg.scrape_timeout),
        METRICS_PATH: cfg.metrics_path,
        SCHEME: cfg.scheme,
    }
    for name, value in defaults.items():
        if not work.get(name):
            work[name] = value
    for name, values in cfg.params.items():
        key = PARAM_PREFIX + name
        if values and not work.get(key):
            work[key] = values[0]
    discovered = Labels(work)
    if not process_dict(work, cfg.relabel_configs):
        return None, discovered
    address = work.get(ADDRESS, "")
    if not address:
        raise TargetError("no address")
    if "/" in address:
        raise TargetError(f'"{address}" is not a valid hostname')
    interval_text = work.get(SCRAPE_INTERVAL, "")
    timeout_text = work.get(SCRAPE_TIMEOUT, "")
    try:
        interval_ms = parse_duration_ms(interval_text)
    except ValueError as exc:
        raise TargetError(f"error parsing scrape interval: {exc}") from None
    if interval_ms == 0:
        raise TargetError("scrape interval cannot be 0")
    try:
        timeout_ms = parse_duration_ms(timeout_text)
    except ValueError as exc:
        raise TargetError(f"error parsing scrape timeout: {exc}") from None
    if timeout_ms == 0:
        raise TargetError("scrape timeout cannot be 0")
    if timeout_ms > interval_ms:
        raise TargetError(
            f'scrape timeout cannot be greater than scrape interval ("{timeout_text}" > '
            f'"{interval_text}")'
        )
    for name in [n for n in work if n.startswith(META_PREFIX)]:
        del work[name]
    if not work.get("instance"):
        work["instance"] = address
    labels = Labels(work)
    return Target(
        cfg.job_name, labels, discovered, target_url(labels, cfg), interval_ms, timeout_ms
    ), discovered


def target_url(labels: Labels, cfg: ScrapeConfig) -> str:
    """``scheme://address/path?params``, with ``__param_*`` labels overriding ``params``."""
    params: dict[str, list[str]] = {k: list(v) for k, v in cfg.params.items()}
    for name, value in labels:
        if name.startswith(PARAM_PREFIX):
            key = name[len(PARAM_PREFIX) :]
            params[key] = [value, *params.get(key, [])[1:]]
    query = urllib.parse.urlencode([(k, v) for k, vs in params.items() for v in vs])
    url = f"{labels.get(SCHEME)}://{labels.get(ADDRESS)}{labels.get(METRICS_PATH)}"
    return f"{url}?{query}" if query else url


@dataclass
class TargetSet:
    """The outcome of turning a job's target groups into targets."""

    active: list[Target] = field(default_factory=list)
    dropped: list[Labels] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def build_targets(groups: list[TargetGroup], cfg: ScrapeConfig) -> TargetSet:
    """Targets of ``groups`` after relabeling; duplicates (same labels and URL) collapse."""
    out = TargetSet()
    seen: set[int] = set()
    for group in groups:
        for target_labels in group.targets:
            try:
                target, discovered = populate_target(group.labels, target_labels, cfg)
            except TargetError as exc:
                out.errors.append(f"{group.source}: {exc}")
                continue
            if target is None:
                out.dropped.append(discovered)
                continue
            ident = target.identity()
            if ident in seen:
                continue
            seen.add(ident)
            out.active.append(target)
    return out
