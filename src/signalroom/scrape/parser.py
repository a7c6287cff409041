"""Exposition parsing: Prometheus text format 0.0.4 (and 1.0.0) and OpenMetrics 1.0.

The output is columnar: per sample its series key (the metric name and label block exactly as
exposed, which a scrape loop uses as a cache key), value and optional timestamp; per family its
TYPE, HELP and UNIT; OpenMetrics exemplars. Label sets are parsed only for keys the caller does
not already know.

Three tiers keep the common case fast and the rare case exact: a split-based pass over the
whole body when every line has the canonical shape (``key value [timestamp]``, single
spaces); else a per-line loop with a strict regex; lines that still do not match go through a
small lexer that follows Prometheus's lexers and reports errors with Prometheus's messages,
naming line and column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.scrape.appender import NORMAL_NAN_BITS, MetricMetadata

NO_TIMESTAMP = np.iinfo(np.int64).min
"""Marks a sample exposed without a timestamp in ``ParsedScrape.timestamps_ms``."""

Format = Literal["prometheus", "openmetrics"]

TEXT_TYPES = {
    "counter": "counter",
    "gauge": "gauge",
    "histogram": "histogram",
    "summary": "summary",
    "untyped": "unknown",
}
OM_TYPES = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"}
)
_CREATED_TYPES = frozenset({"counter", "histogram", "summary", "gaugehistogram"})

# --- fast path regexes -------------------------------------------------------------------
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LBLOCK = r'\{(?:[^"{}\n\\]++|"(?:[^"\\\n]++|\\.)*+")*+\}'
_FVALUE = r"[0-9a-oq-zA-OQ-Z.+\-]+"  # no 'p'/'_': Prometheus rejects hex floats and '_'
_TEXT_LINE = re.compile(rf"^({_NAME}(?:{_LBLOCK})?) ({_FVALUE})(?: (-?[0-9]+))?$", re.M)
_OM_LINE = re.compile(
    rf"^({_NAME}(?:{_LBLOCK})?) ({_FVALUE})(?: ({_FVALUE}))?"
    rf"(?: # ({_LBLOCK}) ({_FVALUE})(?: ({_FVALUE}))?)?$",
    re.M,
)
_NAME_RE = re.compile(_NAME)
_PAIR = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(,?)')
_LVALUE_ESCAPE = re.compile(r'\\(["\\n])')
_HELP_ESCAPE = re.compile(r"\\([\\n])")
_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n"}


def _unescape_value(text: str) -> str:
    return _LVALUE_ESCAPE.sub(lambda m: _UNESCAPE[m.group(1)], text) if "\\" in text else text


class ParseError(ValueError):
    """The exposition is malformed; says where (1-based line and column) and what."""

    def __init__(self, message: str, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line} column {column}: {message}")


class UnsupportedContentType(ValueError):
    """The target answered with a Content-Type signalroom cannot parse."""


@dataclass(frozen=True)
class Exemplar:
    """An OpenMetrics exemplar of sample ``sample_index``."""

    sample_index: int
    labels: Labels
    value: float
    timestamp_ms: int | None


@dataclass
class ParsedScrape:
    """The columnar result of parsing one exposition."""

    format: Format
    series: list[str]
    """Per sample: the series key, i.e. the metric name and label block as exposed."""
    values: np.ndarray
    timestamps_ms: np.ndarray
    """Per sample: int64 milliseconds, ``NO_TIMESTAMP`` where none was exposed."""
    metadata: dict[str, MetricMetadata] = field(default_factory=dict)
    labels: dict[str, Labels] = field(default_factory=dict)
    """Label sets of the series keys that were not in ``known``."""
    exemplars: list[Exemplar] = field(default_factory=list)
    created_ms: dict[str, int] = field(default_factory=dict)
    """OpenMetrics ``_created`` values (ms) by the key of the series they were exposed as."""

    def __len__(self) -> int:
        return len(self.series)

    def labels_of(self, key: str) -> Labels:
        """The label set of ``key`` (parsed now when it was not kept)."""
        found = self.labels.get(key)
        return found if found is not None else parse_series_key(key)


def parse_series_key(key: str) -> Labels:
    """Parse a series key (``name{a="b"}``) of a canonical line into its label set."""
    result = _fast_labels(key)
    if result is None:
        result = _LineLexer(key + " 0", 1, om=False).sample().labels
    return result


def _fast_labels(key: str) -> Labels | None:
    """Labels of a canonical series key; None when the key needs the exact lexer."""
    brace = key.find("{")
    if brace < 0:
        return Labels._from_sorted(((METRIC_NAME, key),)) if _NAME_RE.fullmatch(key) else None
    if brace == 0 or not key.endswith("}") or not _NAME_RE.fullmatch(key, 0, brace):
        return None
    pairs = _fast_pairs(key, brace)
    if pairs is None:
        return None
    pairs.append((METRIC_NAME, key[:brace]))
    return Labels(pairs)


def _fast_pairs(key: str, brace: int) -> list[tuple[str, str]] | None:
    """The label pairs of the block that opens at ``key[brace]`` and ends the string."""
    pairs: list[tuple[str, str]] = []
    pos = brace + 1
    end = len(key) - 1
    seen = set()
    match = _PAIR.match
    while pos < end:
        m = match(key, pos)
        if m is None:
            return None
        name, value, comma = m.groups()
        if name in seen or name == METRIC_NAME:
            return None
        seen.add(name)
        pairs.append((name, _unescape_value(value)))
        pos = m.end()
        if not comma and pos < end:
            return None
    return pairs


# --- entry points --------------------------------------------------------------------------


def parse(
    data: bytes | str,
    content_type: str,
    *,
    known: Container[str] = frozenset(),
    fallback: Format | None = None,
    skip_created_series: bool = False,
) -> ParsedScrape:
    """Parse an exposition by its Content-Type, as Prometheus chooses its parser.

    ``text/plain`` is the Prometheus text format, ``application/openmetrics-text`` OpenMetrics;
    a blank or unknown type is an error unless ``fallback`` names the format to use.
    """
    fmt = format_of(content_type, fallback)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Keep the bad bytes visible (as lone surrogates) so the lexer can name them.
            text = data.decode("utf-8", "surrogateescape")
    else:
        text = data
    if fmt == "openmetrics":
        return parse_openmetrics(text, known=known, skip_created_series=skip_created_series)
    return parse_text(text, known=known)


def format_of(content_type: str, fallback: Format | None = None) -> Format:
    """The exposition format of a Content-Type header value."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/openmetrics-text":
        return "openmetrics"
    if media == "text/plain":
        return "prometheus"
    if fallback is not None:
        return fallback
    if not media:
        raise UnsupportedContentType(
            "non-compliant scrape target sending blank Content-Type and no "
            "fallback_scrape_protocol specified for target"
        )
    raise UnsupportedContentType(
        f'received unsupported Content-Type "{content_type}" and no fallback_scrape_protocol '
        "specified for target"
    )


def parse_text(text: str, *, known: Container[str] = frozenset()) -> ParsedScrape:
    """Parse the Prometheus text format (0.0.4; quoted UTF-8 names as in 1.0.0)."""
    return _Parser(text, om=False, known=known).run()


def parse_openmetrics(
    text: str, *, known: Container[str] = frozenset(), skip_created_series: bool = False
) -> ParsedScrape:
    """Parse OpenMetrics 1.0; ``# EOF`` is required.

    ``_created`` samples of counters, histograms and summaries are kept as ordinary samples,
    as Prometheus does by default, and their values also land in ``created_ms``; with
    ``skip_created_series`` they are left out of the samples.
    """
    return _Parser(text, om=True, known=known, skip_created=skip_created_series).run()


# --- the parser -----------------------------------------------------------------------------


class _Parser:
    def __init__(
        self, text: str, *, om: bool, known: Container[str], skip_created: bool = False
    ) -> None:
        self.text = text
        self.om = om
        self.known = known
        self.skip_created = skip_created
        self.metadata: dict[str, MetricMetadata] = {}
        self.labels: dict[str, Labels] = {}
        self.exemplars: list[Exemplar] = []
        # Undecodable bytes (see parse()) send their lines to the lexer, which reports them.
        self.has_bad_bytes = (
            any(0xDC80 <= ord(c) <= 0xDCFF for c in text) if (not text.isascii()) else False
        )

    def run(self) -> ParsedScrape:
        eof_error: ParseError | None = None
        body = self.text
        if self.om:
            body, eof_error = self._split_eof()
        if body.endswith("\n"):
            body = body[:-1]
        whole = body and eof_error is None and not self.has_bad_bytes
        result = self._whole_body(body) if whole else None
        if result is None:
            self.exemplars = []
            result = self._by_line(body)
        if eof_error is not None:
            raise eof_error
        keys, values, stamps = result
        parsed = ParsedScrape(
            format="openmetrics" if self.om else "prometheus",
            series=keys,
            values=values,
            timestamps_ms=stamps,
            metadata=self.metadata,
            labels=self.labels,
            exemplars=self.exemplars,
        )
        if self.om:
            self._created(parsed)
        return parsed

    def _split_eof(self) -> tuple[str, ParseError | None]:
        """OpenMetrics: the body before "# EOF", and the error when it is missing or followed."""
        text = self.text
        idx = text.find("# EOF")
        while idx > 0 and text[idx - 1] != "\n":
            idx = text.find("# EOF", idx + 1)
        if idx < 0:
            # Lines are checked first: a malformed line is the better message.
            return text, ParseError("data does not end with # EOF", text.count("\n") + 1, 1)
        if text[idx + 5 :] not in ("", "\n"):
            line = text.count("\n", 0, idx) + 1
            return text[:idx], ParseError("unexpected data after # EOF", line, 6)
        return text[:idx], None

    def _whole_body(self, body: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """Split-based pass for canonical bodies; None sends the body to the line loop.

        A canonical sample line is ``key value`` or ``key value timestamp`` with single
        spaces. Values and timestamps never contain a space or ``}``, so splitting at the last
        spaces is exact; keys not seen before are validated when their labels are parsed.
        """
        lines = body.split("\n")
        samples = [line for line in lines if line[:1] != "#"]
        if self.om:
            if "" in samples or " # " in body:
                return None  # blank lines are errors and exemplars need the line loop
        elif "" in samples:
            samples = [line for line in samples if line]
        if len(samples) != len(lines):
            for comment in (line for line in lines if line[:1] == "#"):
                if not self._comment(comment, 0):
                    return None
        if not samples:
            return [], np.empty(0, np.float64), np.empty(0, np.int64)
        parts = [line.rpartition(" ") for line in samples]
        keys = [p[0] for p in parts]
        values = [p[2] for p in parts]
        stamps_text: list[str] | None = None
        stamped = [i for i, k in enumerate(keys) if k[-1:] != "}" and " " in k]
        if stamped:
            stamps_text = [""] * len(keys)
            for i in stamped:
                key, _, value = keys[i].rpartition(" ")
                stamps_text[i] = values[i]
                keys[i], values[i] = key, value
        joined = " ".join(values)
        if not joined.isascii() or "_" in joined or "p" in joined or "P" in joined:
            return None
        try:
            floats = _floats(values)
            stamps = self._stamps(stamps_text, len(keys))
        except ValueError:
            return None
        if not self._labels_for(keys, None):
            return None
        return keys, floats, stamps

    def _stamps(self, texts: list[str] | None, count: int) -> np.ndarray:
        if texts is None:
            return np.full(count, NO_TIMESTAMP, np.int64)
        if self.om:
            present = np.array([t != "" for t in texts])
            joined = " ".join(texts)
            if "_" in joined or "p" in joined or "P" in joined or not joined.isascii():
                raise ValueError("timestamp")
            secs = np.array([t or "0" for t in texts], dtype=np.float64)
            if not np.isfinite(secs).all():
                raise ValueError("invalid timestamp")
            out = np.full(count, NO_TIMESTAMP, np.int64)
            out[present] = (secs[present] * 1000.0).astype(np.int64)
            return out
        out_list = []
        for t in texts:
            if not t:
                out_list.append(NO_TIMESTAMP)
            elif t.isascii() and (t.isdigit() or (t[:1] == "-" and t[1:].isdigit())):
                out_list.append(int(t))
            else:
                raise ValueError("timestamp")
        return np.array(out_list, dtype=np.int64)

    def _labels_for(self, keys: list[str], lines: list[int] | None) -> bool:
        known = self.known
        fresh = [k for k in dict.fromkeys(keys) if k not in known and k not in self.labels]
        for key in fresh:
            labels = _fast_labels(key)
            if labels is None:
                if lines is None:
                    return False
                line = lines[keys.index(key)]
                labels = _LineLexer(key + " 0", line, om=False).sample().labels
            self.labels[key] = labels
        return True

    def _by_line(self, body: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Line by line: the canonical regex per line, the lexer for the others."""
        regex = _OM_LINE if self.om else _TEXT_LINE
        keys: list[str] = []
        values: list[float] = []
        stamps: list[int] = []
        lines: list[int] = []
        for lineno, line in enumerate(body.split("\n") if body else [], 1):
            if line.startswith("#"):
                if self._comment(line, lineno):
                    continue
            elif not self.om and (not line or line.isspace()):
                continue
            m = regex.match(line) if line and not line.startswith("#") else None
            if m is not None and self.has_bad_bytes and not line.isascii():
                m = None
            if m is not None:
                key = m.group(1)
                try:
                    value = _float(m.group(2))
                    ts_text = m.group(3)
                    if ts_text and self.om:
                        secs = _float(ts_text)
                        if math.isnan(secs) or math.isinf(secs):
                            raise ValueError
                        ts = int(secs * 1000)
                    else:
                        ts = int(ts_text) if ts_text else NO_TIMESTAMP
                except ValueError:
                    m = None
                else:
                    if self.om and m.group(4):
                        exemplar = _LineLexer(line, lineno, om=True).sample().exemplar
                        if exemplar is not None:
                            self.exemplars.append(Exemplar(len(keys), *exemplar))
                    keys.append(key)
                    values.append(value)
                    stamps.append(ts)
                    lines.append(lineno)
                    continue
            sample = _LineLexer(line, lineno, om=self.om).entry()
            if sample is None:
                continue
            keys.append(sample.key)
            values.append(sample.value)
            stamps.append(sample.timestamp_ms)
            lines.append(lineno)
            self.labels.setdefault(sample.key, sample.labels)
            if sample.exemplar is not None:
                self.exemplars.append(Exemplar(len(keys) - 1, *sample.exemplar))
        self._labels_for(keys, lines)
        return keys, _normal_nan(np.array(values, dtype=np.float64)), np.array(stamps, np.int64)

    # --- comments: HELP, TYPE, UNIT ---------------------------------------------------
    def _comment(self, line: str, lineno: int) -> bool:
        """Record a metadata line; False when it is malformed (lineno 0: only say so)."""
        parts = line.split(" ", 3)
        kind = parts[1] if len(parts) > 1 and parts[0] == "#" else ""
        if kind not in ("HELP", "TYPE", "UNIT") or (not self.om and kind == "UNIT"):
            if self.om:
                if lineno == 0:
                    return False
                _LineLexer(line, lineno, om=True).entry()  # raises with the exact message
            return True  # a plain comment in the text format
        if len(parts) < 3 or parts[2] == "" or (len(parts) < 4 and self.om):
            if lineno == 0:
                return False
            _LineLexer(line, lineno, om=self.om).entry()
            if not self.om:  # text format: "# HELP name" is an empty help, "# TYPE name" bad
                if kind == "TYPE":
                    raise ParseError('invalid metric type ""', lineno, len(line) + 1)
                parts = [*parts, ""] if len(parts) == 3 else parts
            else:
                raise ParseError(f"expected text in {kind}", lineno, len(line) + 1)
        name, text = parts[2], (parts[3] if len(parts) > 3 else "")
        if name.startswith('"'):
            if lineno == 0:
                return False
            name, text = _LineLexer(line, lineno, om=self.om).quoted_meta_name(kind)
        elif not re.fullmatch(_NAME, name):
            if lineno == 0:
                return False
            _LineLexer(line, lineno, om=self.om).entry()
        column = len(line) - len(text) + 1
        old = self.metadata.get(name) or MetricMetadata(name)
        if kind == "HELP":
            help_text = (
                _HELP_ESCAPE.sub(lambda m: _UNESCAPE[m.group(1)], text) if ("\\" in text) else text
            )
            if self.om and '\\"' in text:
                help_text = help_text.replace('\\"', '"')
            self.metadata[name] = MetricMetadata(name, old.type, help_text, old.unit)
        elif kind == "TYPE":
            if not self.om:
                text = text.strip(" \t")
            mtype = (text if text in OM_TYPES else None) if self.om else TEXT_TYPES.get(text)
            if mtype is None:
                if lineno == 0:
                    return False
                raise ParseError(f'invalid metric type "{text}"', lineno, column)
            self.metadata[name] = MetricMetadata(name, mtype, old.help, old.unit)
        else:
            if not (name.endswith("_" + text)):
                if lineno == 0:
                    return False
                raise ParseError(f'unit "{text}" not a suffix of metric "{name}"', lineno, column)
            self.metadata[name] = MetricMetadata(name, old.type, old.help, text)
        return True

    def _created(self, parsed: ParsedScrape) -> None:
        created_types = {n for n, m in self.metadata.items() if m.type in _CREATED_TYPES}
        if not created_types:
            return
        drop: list[int] = []
        for i, key in enumerate(parsed.series):
            if "_created" not in key:
                continue
            name = key.split("{", 1)[0]
            if name.endswith("_created") and name[: -len("_created")] in created_types:
                parsed.created_ms[key] = int(parsed.values[i] * 1000)
                drop.append(i)
        if self.skip_created and drop:
            keep = np.ones(len(parsed.series), dtype=bool)
            keep[drop] = False
            parsed.series = [k for i, k in enumerate(parsed.series) if keep[i]]
            parsed.values = parsed.values[keep]
            parsed.timestamps_ms = parsed.timestamps_ms[keep]
            remap = np.cumsum(keep) - 1
            parsed.exemplars = [
                Exemplar(int(remap[e.sample_index]), e.labels, e.value, e.timestamp_ms)
                for e in parsed.exemplars
                if keep[e.sample_index]
            ]


def _floats(texts: Sequence[str]) -> np.ndarray:
    return _normal_nan(np.array(texts, dtype=np.float64))


def _normal_nan(values: np.ndarray) -> np.ndarray:
    nan = np.isnan(values)
    if nan.any():
        values.view(np.uint64)[nan] = np.uint64(NORMAL_NAN_BITS)
    return values


_GO_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity)|(?i:nan))"
)


def _float(text: str) -> float:
    """Go's strconv.ParseFloat for the decimal forms Prometheus accepts."""
    if not _GO_FLOAT.fullmatch(text):
        raise ValueError(text)
    return float(text)


# --- the exact lexer, for lines off the fast path ----------------------------------------


@dataclass
class _Sample:
    key: str
    labels: Labels
    value: float
    timestamp_ms: int
    exemplar: tuple[Labels, float, int | None] | None = None


def _go_quote(text: str) -> str:
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\x00":
            out.append("\\x00")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MNAME = re.compile(_NAME)
_QSTRING = re.compile(r'"(?:\\.|[^\\"\n])*"')


class _LineLexer:
    """Parses one line the way Prometheus's lexers do, to report errors exactly."""

    def __init__(self, line: str, lineno: int, *, om: bool) -> None:
        # Prometheus parses with a trailing newline; "got" texts show it.
        self.src = line + "\n"
        self.lineno = lineno
        self.om = om
        self.pos = 0
        self.tok_start = 0

    # errors
    def fail(self, expected: str, kind: str, end: int | None = None) -> ParseError:
        end = self.pos if end is None else end
        got = self.src[self.tok_start : end]
        context = self.src[:end]
        return ParseError(
            f"{expected}, got {_go_quote(got)} ({_go_quote(kind)}) while parsing: "
            f"{_go_quote(context)}",
            self.lineno,
            self.tok_start + 1,
        )

    def skip_ws(self) -> None:
        if self.om:
            return
        while self.pos < len(self.src) and self.src[self.pos] in " \t":
            self.pos += 1

    def invalid(self, expected: str) -> ParseError:
        self.tok_start = self.pos
        end = min(self.pos + 1, len(self.src))
        return self.fail(expected, "INVALID", end)

    def entry(self) -> _Sample | None:
        src = self.src
        if self.om and src.startswith("#"):
            self._om_comment()
            return None
        if not self.om:
            self.skip_ws()
            if src[self.pos] == "\n":
                return None
        if src.startswith("#", self.pos):
            self._text_comment()
            return None
        return self.sample()

    def _text_comment(self) -> None:
        m = re.match(r"#[ \t]+(HELP|TYPE)[ \t]+", self.src[self.pos :])
        if m is None:
            return None
        self.pos += m.end()
        self.tok_start = self.pos
        kind = m.group(1)
        if self.src[self.pos] == '"':
            q = _QSTRING.match(self.src, self.pos)
            if q is None:
                raise self.invalid(f"expected metric name after {kind}")
            return None
        n = _MNAME.match(self.src, self.pos)
        if n is None:
            raise self.invalid(f"expected metric name after {kind}")
        return None

    def _om_comment(self) -> None:
        src = self.src
        m = re.match(r"# (HELP|TYPE|UNIT) ", src)
        if m is None:
            if src.startswith("# EOF"):
                return None
            # flex's token: the longest prefix of a keyword line, plus the char that broke it
            common = max(_common_prefix(src, k) for k in ("# HELP ", "# TYPE ", "# UNIT ", "# EOF"))
            end = min(common + 1, len(src))
            self.tok_start = 0
            raise self.fail("expected a valid start token", "INVALID", end)
        self.pos = m.end()
        self.tok_start = self.pos
        kind = m.group(1)
        if src[self.pos] == '"':
            if _QSTRING.match(src, self.pos) is None:
                raise self.invalid(f"expected metric name after {kind}")
            return None
        if _MNAME.match(src, self.pos) is None:
            raise self.invalid(f"expected metric name after {kind}")
        return None

    def quoted_meta_name(self, kind: str) -> tuple[str, str]:
        m = re.match(r"#[ \t]+(?:HELP|TYPE|UNIT)[ \t]+", self.src)
        assert m is not None
        self.pos = self.tok_start = m.end()
        q = _QSTRING.match(self.src, self.pos)
        if q is None:
            raise self.invalid(f"expected metric name after {kind}")
        name = _unescape_value(q.group(0)[1:-1])
        rest = self.src[q.end() : -1]
        return name, rest[1:] if rest.startswith((" ", "\t")) else rest

    def sample(self) -> _Sample:
        src = self.src
        entry_start = self.pos
        name: str | None = None
        pairs: list[tuple[str, str]] = []
        self.tok_start = self.pos
        if src[self.pos] == "{":
            self.pos += 1
            name = self._labels(pairs, None)
        else:
            m = _MNAME.match(src, self.pos)
            if m is None:
                raise self.invalid("expected a valid start token")
            name = m.group(0)
            self.pos = m.end()
            self.skip_ws()
            if src[self.pos] == "{":
                self.pos += 1
                self._labels(pairs, name)
        if name is None:
            raise ParseError(
                "metric name not set while parsing: " + _go_quote(src[entry_start:].rstrip("\n")),
                self.lineno,
                entry_start + 1,
            )
        key = src[entry_start : self.pos].rstrip(" \t")
        value = self._value()
        ts = self._timestamp()
        exemplar = self._exemplar() if self.om and src.startswith(" # ", self.pos) else None
        self.skip_ws()
        if self.pos < len(src) and src[self.pos] != "\n":
            if ts == NO_TIMESTAMP and not self.om:
                raise self.invalid("expected timestamp or new record")
            self.tok_start = self.pos
            raise self.fail(
                "expected next entry after timestamp",
                "INVALID",
                len(src) if self.om else self.pos + 1,
            )
        names = [p[0] for p in pairs]
        for n in names:
            if names.count(n) > 1 or n == METRIC_NAME:
                raise ParseError(f'label name "{n}" is not unique', self.lineno, 1)
        labels = Labels([(METRIC_NAME, name), *pairs])
        return _Sample(key, labels, value, ts, exemplar)

    def _labels(self, pairs: list[tuple[str, str]], name: str | None) -> str | None:
        """Parse after '{' up to and including '}'; returns the metric name."""
        src = self.src
        while True:
            self.skip_ws()
            self.tok_start = self.pos
            ch = src[self.pos]
            if ch == "}":
                self.pos += 1
                return name
            quoted = False
            if ch == '"':
                q = _QSTRING.match(src, self.pos)
                if q is None:
                    raise self.fail("expected label name", "INVALID", len(src))
                label = _unescape_value(q.group(0)[1:-1])
                self.pos = q.end()
                quoted = True
            else:
                m = _LNAME.match(src, self.pos)
                if m is None:
                    kind = {"=": "EQUAL", ",": "COMMA", "}": "BCLOSE"}.get(ch, "INVALID")
                    end = self.pos + (2 if kind in ("EQUAL", "COMMA") else 1)
                    raise self.fail("expected label name", kind, min(end, len(src)))
                label = m.group(0)
                self.pos = m.end()
            self.skip_ws()
            if quoted and src[self.pos] in ",}":
                if name is not None:
                    raise ParseError(
                        "metric name already set while parsing: " + _go_quote(src[: self.pos]),
                        self.lineno,
                        self.tok_start + 1,
                    )
                name = label
                if src[self.pos] == ",":
                    self.pos += 1
                continue
            if src[self.pos] != "=":
                self.tok_start = self.pos
                raise self.fail("expected equal", "INVALID", self.pos + 1)
            self.pos += 1
            self.skip_ws()
            self.tok_start = self.pos
            if src[self.pos] != '"':
                raise self.invalid("expected label value")
            q = _QSTRING.match(src, self.pos)
            if q is None:
                raise self.fail("expected label value", "INVALID", len(src))
            raw = q.group(0)
            if any(0xDC80 <= ord(c) <= 0xDCFF for c in raw):
                raise ParseError(
                    f"invalid UTF-8 label value: {_go_quote(raw)}", self.lineno, self.pos + 1
                )
            pairs.append((label, _unescape_value(raw[1:-1])))
            self.pos = q.end()
            self.skip_ws()
            ch = src[self.pos]
            if ch == ",":
                self.pos += 1
            elif ch != "}":
                self.tok_start = self.pos
                m = _LNAME.match(src, self.pos)
                end = m.end() + 1 if m else self.pos + 1
                raise self.fail(
                    "expected comma or brace close", "LNAME" if m else "INVALID", min(end, len(src))
                )

    def _value(self) -> float:
        src = self.src
        if self.om:
            if src[self.pos] != " ":
                raise self.invalid("expected value after metric")
            self.pos += 1
            m = re.compile(r"[^ \n]+").match(src, self.pos)
        else:
            self.skip_ws()
            m = re.compile(r"[^{ \t\n]+").match(src, self.pos)
        if m is None:
            raise self.invalid("expected value after metric")
        self.tok_start = self.pos
        self.pos = m.end()
        return self._parse_float(m.group(0))

    def _parse_float(self, text: str) -> float:
        if any(c in text for c in "pP_"):
            raise ParseError(
                "unsupported character in float while parsing: "
                + _go_quote(self.src[: self.pos].rstrip("\n")),
                self.lineno,
                self.tok_start + 1,
            )
        try:
            value = _float(text)
        except ValueError:
            raise ParseError(
                f"strconv.ParseFloat: parsing {_go_quote(text)}: invalid syntax while parsing: "
                + _go_quote(self.src[: self.pos].rstrip("\n")),
                self.lineno,
                self.tok_start + 1,
            ) from None
        return value

    def _timestamp(self) -> int:
        src = self.src
        start = self.pos
        if self.om:
            if not src.startswith(" ", self.pos) or src.startswith(" # ", self.pos):
                return NO_TIMESTAMP
            m = re.compile(r"[^ \n]+").match(src, self.pos + 1)
            if m is None:
                return NO_TIMESTAMP
            self.tok_start = self.pos + 1
            self.pos = m.end()
            secs = self._parse_float(m.group(0))
            if math.isnan(secs) or math.isinf(secs):
                raise ParseError(
                    f"invalid timestamp {_go_float(secs)}", self.lineno, self.tok_start + 1
                )
            return int(secs * 1000)
        self.skip_ws()
        m = re.compile(r"-?[0-9]+").match(src, self.pos)
        if m is None:
            self.pos = start if src[self.pos] == "\n" else self.pos
            return NO_TIMESTAMP
        self.tok_start = self.pos
        self.pos = m.end()
        return int(m.group(0))

    def _exemplar(self) -> tuple[Labels, float, int | None]:
        src = self.src
        self.pos += 3
        self.tok_start = self.pos
        if src[self.pos] != "{":
            raise self.invalid("expected label set for exemplar")
        self.pos += 1
        pairs: list[tuple[str, str]] = []
        self._labels(pairs, "")
        if src[self.pos] != " ":
            self.tok_start = self.pos - 1 if src[self.pos] == "\n" else self.pos
            self.tok_start = self.pos
            end = self.pos + 1
            raise self.fail("expected value after exemplar labels", "INVALID", end)
        self.pos += 1
        m = re.compile(r"[^ \n]+").match(src, self.pos)
        if m is None:
            raise self.invalid("expected value after exemplar labels")
        self.tok_start = self.pos
        self.pos = m.end()
        value = self._parse_float(m.group(0))
        ts: int | None = None
        if src.startswith(" ", self.pos):
            m = re.compile(r"[^ \n]+").match(src, self.pos + 1)
            if m is not None:
                self.tok_start = self.pos + 1
                self.pos = m.end()
                secs = self._parse_float(m.group(0))
                if math.isnan(secs) or math.isinf(secs):
                    raise ParseError(
                        f"invalid exemplar timestamp {_go_float(secs)}",
                        self.lineno,
                        self.tok_start + 1,
                    )
                ts = int(secs * 1000)
        return Labels(pairs), value, ts


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _go_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"
