"""A runner for Prometheus's promqltest DSL (the `.test` files of PromQL's own test suite).

Each `eval` command is one case. Instant evals are also re-run with `@ <t>` pinned on every
selector at other evaluation times and as a range query around t, as Prometheus does.
Cases touching native histograms are skipped (signalroom stores floats only).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import re2

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.promql import ast
from signalroom.promql.engine import Engine
from signalroom.promql.storage import STALE_NAN, MemoryStorage, is_stale_nan
from signalroom.promql.value import Matrix, PromQLError, Result, Scalar, String, Vector

EPSILON = 1e-6
MIN_NORMAL = 2.2250738585072014e-308
MAX_FLOAT = 1.7976931348623157e308

_AT_UNSAFE = {
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
}

_PAT_LOAD = re.compile(r"^load(_with_nhcb)?\s+(\S+)$")
_PAT_INSTANT = re.compile(
    r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$"
)
_PAT_RANGE = re.compile(
    r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$"
)
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_NUMBER = (
    r"[+-]?(?:0[xX][0-9a-fA-F]+|[iI][nN][fF]|[nN][aA][nN]"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
)
# Series values never contain hex numbers: `0x10` is "0 repeated 10 more times".
_SERIES_NUMBER = r"[+-]?(?:[iI][nN][fF]|[nN][aA][nN]|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_SERIES_VALUE = re.compile(
    rf"^(?P<base>{_SERIES_NUMBER})(?:(?P<op>[+-])(?P<inc>{_SERIES_NUMBER}))?(?:x(?P<times>\d+))?$"
)


class DSLError(Exception):
    """A line of a test file that cannot be parsed."""


def parse_duration_ms(text: str) -> int:
    text = text.strip()
    if text == "0":
        return 0
    m = _DURATION.match(text)
    if m and text:
        y, w, d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
        return (((((y * 365 + w * 7 + d) * 24 + h) * 60 + mi) * 60 + s) * 1000) + ms
    try:
        return round(float(text) * 1000)
    except ValueError as exc:
        raise DSLError(f"invalid duration {text!r}") from exc


def parse_number(text: str) -> float:
    t = text.strip()
    body = t.lstrip("+-")
    if body.lower().startswith("0x"):
        value = float(int(body, 16))
        return -value if t.startswith("-") else value
    if body.lower() in ("inf", "nan") or re.fullmatch(
        r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", body
    ):
        return float(t)
    raise DSLError(f"invalid number {text!r}")


# --- label sets and series lines ------------------------------------------------------------------


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    quote = text[pos]
    i = pos + 1
    if quote == "`":
        end = text.index("`", i)
        return text[i:end], end + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1]
            simple = {
                "n": "\n",
                "t": "\t",
                "r": "\r",
                "\\": "\\",
                '"': '"',
                "'": "'",
                "a": "\a",
                "b": "\b",
                "f": "\f",
                "v": "\v",
            }
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
            if nxt == "x":
                raw = bytes([int(text[i + 2 : i + 4], 16)])
                out.append(raw.decode("latin-1"))
                i += 4
                continue
            if nxt in "uU":
                width = 4 if nxt == "u" else 8
                out.append(chr(int(text[i + 2 : i + 2 + width], 16)))
                i += 2 + width
                continue
            out.append(nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    raise DSLError(f"unterminated string in {text!r}")


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:.]*")


def parse_labels(text: str) -> tuple[Labels, str]:
    """Parse `name{a="b"}` / `{a="b"}` at the start of text; returns labels and the rest."""
    text = text.strip()
    pairs: dict[str, str] = {}
    pos = 0
    m = _IDENT.match(text)
    if m and not text.startswith("{"):
        pairs[METRIC_NAME] = m.group(0)
        pos = m.end()
    if pos < len(text) and text[pos] == "{":
        pos += 1
        while True:
            while pos < len(text) and text[pos] in " \t,":
                pos += 1
            if pos >= len(text):
                raise DSLError(f"unterminated label set in {text!r}")
            if text[pos] == "}":
                pos += 1
                break
            if text[pos] in "\"'`":
                name, pos = _read_quoted(text, pos)
            else:
                nm = re.compile(r"[^\s=!~,}]+").match(text, pos)
                if not nm:
                    raise DSLError(f"bad label set {text!r}")
                name, pos = nm.group(0), nm.end()
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == "=":
                pos += 1
                while pos < len(text) and text[pos] == " ":
                    pos += 1
                value, pos = _read_quoted(text, pos)
                pairs[name] = value
            else:
                pairs[METRIC_NAME] = name
    elif not m:
        raise DSLError(f"bad series description {text!r}")
    return Labels(pairs), text[pos:]


@dataclass
class SeqValue:
    value: float = 0.0
    omitted: bool = False
    native: bool = False


def _split_values(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not text[i].isspace():
            if text.startswith("{{", i):
                end = text.find("}}", i)
                if end == -1:
                    raise DSLError(f"unterminated histogram in {text!r}")
                i = end + 2
            else:
                i += 1
        tokens.append(text[start:i])
    return tokens


def parse_values(text: str) -> list[SeqValue]:
    out: list[SeqValue] = []
    for token in _split_values(text):
        if "{{" in token:
            m = re.search(r"}}x(\d+)$", token)
            count = int(m.group(1)) + 1 if m else 1
            out.extend(SeqValue(native=True) for _ in range(count))
            continue
        if token == "_":
            out.append(SeqValue(omitted=True))
            continue
        if token.startswith("_x"):
            out.extend(SeqValue(omitted=True) for _ in range(int(token[2:])))
            continue
        if token == "stale":
            out.append(SeqValue(STALE_NAN))
            continue
        m = _SERIES_VALUE.match(token)
        if not m:
            raise DSLError(f"bad value {token!r}")
        base = parse_number(m.group("base"))
        times = m.group("times")
        if times is None:
            if m.group("op"):
                raise DSLError(f"bad value {token!r}")
            out.append(SeqValue(base))
            continue
        inc = 0.0
        if m.group("op"):
            inc = parse_number(m.group("inc"))
            if m.group("op") == "-":
                inc = -inc
        value = base
        for _ in range(int(times) + 1):
            out.append(SeqValue(value))
            value += inc
    return out


# --- commands -------------------------------------------------------------------------------------


@dataclass
class Expected:
    labels: Labels
    values: list[SeqValue]
    pos: int


@dataclass
class EvalCase:
    line: int
    expr: str
    instant: bool
    start_ms: int
    end_ms: int
    step_ms: int
    fail: bool = False
    warn: bool = False
    info: bool = False
    ordered: bool = False
    no_warn: bool = False
    no_info: bool = False
    fail_message: str | None = None
    fail_regex: str | None = None
    warn_messages: list[tuple[str, str]] = field(default_factory=list)
    info_messages: list[tuple[str, str]] = field(default_factory=list)
    expect_scalar: bool = False
    expected: dict[Labels, Expected] = field(default_factory=dict)
    native: bool = False


@dataclass
class CaseOutcome:
    line: int
    expr: str
    status: str  # passed / failed / skipped
    message: str = ""


@dataclass
class FileResult:
    """Outcome of one .test file."""

    path: str
    outcomes: list[CaseOutcome] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "passed")

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "failed")

    @property
    def skipped(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "skipped")


def _almost_equal(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return is_stale_nan(a) == is_stale_nan(b)
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < MIN_NORMAL:
        return diff < EPSILON * MIN_NORMAL
    return diff / min(abs_sum, MAX_FLOAT) < EPSILON


class CaseFailure(Exception):
    pass


class TestRunner:
    """Runs the commands of one promqltest file against a fresh MemoryStorage."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.engine = Engine(
            lookback_delta_ms=300_000,
            max_samples=10_000_000,
            timeout_s=60.0,
            default_subquery_step_ms=60_000,
        )
        self.native_series: set[Labels] = set()

    # --- parsing -------------------------------------------------------------------------
    def _load(self, header: re.Match[str], lines: list[str]) -> None:
        step = parse_duration_ms(header.group(2))
        nhcb = bool(header.group(1))
        for line in lines:
            labels, rest = parse_labels(line)
            values = parse_values(rest)
            for i, v in enumerate(values):
                if v.native:
                    self.native_series.add(labels)
                    continue
                if v.omitted:
                    continue
                self.storage.add(labels, i * step, v.value)
            if nhcb and labels.name.endswith("_bucket") and "le" in labels:
                base = labels.without("le").with_(METRIC_NAME, labels.name[: -len("_bucket")])
                self.native_series.add(base)

    def _parse_eval(self, line_no: int, header: str, lines: list[str]) -> EvalCase:
        m = _PAT_INSTANT.match(header)
        if m:
            mod, at, expr = m.groups()
            t = parse_duration_ms(at) if at else 0
            case = EvalCase(line_no, expr.strip(), True, t, t, 0)
        else:
            m = _PAT_RANGE.match(header)
            if not m:
                raise DSLError(f"invalid eval command: {header}")
            mod, start, end, step, expr = m.groups()
            case = EvalCase(
                line_no,
                expr.strip(),
                False,
                parse_duration_ms(start),
                parse_duration_ms(end),
                parse_duration_ms(step),
            )
        case.fail = mod == "fail"
        case.warn = mod == "warn"
        case.info = mod == "info"
        case.ordered = mod == "ordered"
        pos = 0
        for raw in lines:
            if raw.startswith("expected_fail_message"):
                case.fail_message = raw[len("expected_fail_message") :].strip()
                continue
            if raw.startswith("expected_fail_regexp"):
                case.fail_regex = raw[len("expected_fail_regexp") :].strip()
                continue
            if raw.startswith("expect "):
                self._parse_expect(case, raw[len("expect ") :].strip())
                continue
            if "{{" in raw:
                case.native = True
            try:
                value = parse_number(raw)
            except DSLError:
                value = None
            if value is not None:
                case.expect_scalar = True
                case.expected[Labels()] = Expected(Labels(), [SeqValue(value)], 0)
                continue
            labels, rest = parse_labels(raw)
            pos += 1
            case.expected[labels] = Expected(labels, parse_values(rest), pos)
        if "{{" in case.expr:
            case.native = True
        return case

    def _parse_expect(self, case: EvalCase, text: str) -> None:
        kind, _, rest = text.partition(" ")
        rest = rest.strip()
        mode, message = "", ""
        if rest.startswith("msg:"):
            mode, message = "msg", rest[4:].strip()
        elif rest.startswith("regex:"):
            mode, message = "regex", rest[6:].strip()
        if kind == "fail":
            case.fail = True
            if mode == "msg":
                case.fail_message = message
            elif mode == "regex":
                case.fail_regex = message
        elif kind == "warn":
            case.warn = True
            if mode:
                case.warn_messages.append((mode, message))
        elif kind == "info":
            case.info = True
            if mode:
                case.info_messages.append((mode, message))
        elif kind == "no_warn":
            case.no_warn = True
        elif kind == "no_info":
            case.no_info = True
        elif kind == "ordered":
            case.ordered = True
        else:
            raise DSLError(f"unknown expect line: {text}")

    # --- execution -----------------------------------------------------------------------------
    def _touches_native(self, node: ast.Expr) -> bool:
        if not self.native_series:
            return False
        for sub in ast.walk(node):
            if isinstance(sub, ast.VectorSelector):
                for labels in self.native_series:
                    if all(m.matches(labels.get(m.name)) for m in sub.matchers):
                        return True
        return False

    def run_case(self, case: EvalCase) -> CaseOutcome:
        if case.native:
            return CaseOutcome(case.line, case.expr, "skipped", "native histograms")
        try:
            node = ast.parse(case.expr)
        except PromQLError as exc:
            if case.fail:
                try:
                    self._check_failure(case, exc)
                    return CaseOutcome(case.line, case.expr, "passed")
                except CaseFailure as failure:
                    return CaseOutcome(case.line, case.expr, "failed", str(failure))
            return CaseOutcome(case.line, case.expr, "failed", str(exc))
        try:
            if case.instant:
                self._run_instant(case, node)
            else:
                self._run_range(case, node)
        except CaseFailure as failure:
            message = str(failure)
        except Exception as exc:  # an engine crash is a failed case, not a runner crash
            message = f"internal error: {type(exc).__name__}: {exc}"
        else:
            return CaseOutcome(case.line, case.expr, "passed")
        # Series with native histograms are not loaded, so a case reading them cannot pass.
        if self._touches_native(node):
            return CaseOutcome(case.line, case.expr, "skipped", f"native histograms ({message})")
        return CaseOutcome(case.line, case.expr, "failed", message)

    def _check_failure(self, case: EvalCase, exc: Exception) -> None:
        message = str(exc)
        if case.fail_message is not None and case.fail_message not in message:
            raise CaseFailure(f"expected error {case.fail_message!r}, got {message!r}")
        if case.fail_regex is not None and not re2.search(case.fail_regex, message):
            raise CaseFailure(f"expected error matching {case.fail_regex!r}, got {message!r}")

    def _check_annotations(self, case: EvalCase, result: Result) -> None:
        if case.ordered:
            return
        warnings, infos = result.warnings, result.infos
        if not case.warn and warnings:
            raise CaseFailure(f"unexpected warnings: {warnings}")
        if case.warn and not warnings:
            raise CaseFailure("expected warnings but got none")
        if case.no_warn and warnings:
            raise CaseFailure(f"unexpected warnings: {warnings}")
        if not case.info and infos:
            raise CaseFailure(f"unexpected info annotations: {infos}")
        if case.info and not infos:
            raise CaseFailure("expected info annotations but got none")
        for kind, expected, got in (
            ("warn", case.warn_messages, warnings),
            ("info", case.info_messages, infos),
        ):
            for mode, text in expected:
                if mode == "msg" and text not in got:
                    raise CaseFailure(f"expected {kind} {text!r}, got {got}")
                if mode == "regex" and not any(re2.search(text, g) for g in got):
                    raise CaseFailure(f"expected {kind} matching {text!r}, got {got}")

    def _instant_variants(self, node: ast.Expr, time_ms: int) -> list[tuple[ast.Expr, int]]:
        variants: list[tuple[ast.Expr, int]] = [(node, time_ms), (node, time_ms)]
        if any(isinstance(n, ast.Call) and n.name in _AT_UNSAFE for n in ast.walk(node)):
            return variants
        pinned = ast.with_at(node, time_ms)
        if time_ms == 0:
            extra = [-1000, 0, 1000]
        else:
            extra = [-10 * time_ms, 0, int(time_ms / 5), time_ms, 10 * time_ms]
        variants.extend((pinned, t) for t in extra)
        return variants

    def _run_instant(self, case: EvalCase, node: ast.Expr) -> None:
        for expr, t in self._instant_variants(node, case.start_ms):
            try:
                result = self.engine.instant_query(self.storage, expr, t)
            except PromQLError as exc:
                if case.fail:
                    self._check_failure(case, exc)
                    continue
                raise CaseFailure(f"error evaluating query at {t}ms: {exc}") from exc
            if case.fail:
                raise CaseFailure(f"expected error evaluating query at {t}ms but got none")
            self._check_annotations(case, result)
            try:
                self._compare(case, result.value)
            except CaseFailure as failure:
                raise CaseFailure(f"at {t}ms: {failure}") from failure
            # The same query as a range query must give the same result at t.
            try:
                ranged = self.engine.range_query(self.storage, expr, t - 60_000, t + 60_000, 60_000)
            except PromQLError as exc:
                raise CaseFailure(f"error evaluating query in range mode: {exc}") from exc
            if case.ordered:
                continue
            assert isinstance(ranged.value, Matrix)
            samples = []
            from signalroom.promql.value import Sample

            for series in ranged.value.series:
                hits = [i for i, ts in enumerate(series.timestamps.tolist()) if ts == t]
                if hits:
                    samples.append(Sample(series.labels, float(series.values[hits[0]]), t))
            try:
                if isinstance(result.value, Scalar):
                    if not samples:
                        raise CaseFailure("range mode returned no scalar")
                    self._compare(case, Scalar(samples[0].value, t))
                else:
                    self._compare(case, Vector(samples))
            except CaseFailure as failure:
                raise CaseFailure(f"range mode at {t}ms: {failure}") from failure

    def _run_range(self, case: EvalCase, node: ast.Expr) -> None:
        try:
            result = self.engine.range_query(
                self.storage, node, case.start_ms, case.end_ms, case.step_ms
            )
        except PromQLError as exc:
            if case.fail:
                self._check_failure(case, exc)
                return
            raise CaseFailure(f"error evaluating range query: {exc}") from exc
        if case.fail:
            raise CaseFailure("expected error evaluating range query but got none")
        self._check_annotations(case, result)
        self._compare(case, result.value)

    def _compare(self, case: EvalCase, value: object) -> None:
        if isinstance(value, Matrix):
            if case.ordered:
                raise CaseFailure("expected ordered result, but query returned a matrix")
            if case.expect_scalar:
                raise CaseFailure("expected scalar result, but got matrix")
            seen: set[Labels] = set()
            for series in value.series:
                exp = case.expected.get(series.labels)
                if exp is None:
                    points_got = list(
                        zip(series.timestamps.tolist(), series.values.tolist(), strict=True)
                    )
                    raise CaseFailure(
                        f"unexpected metric {series.labels} in result, has {points_got}"
                    )
                seen.add(series.labels)
                points: list[tuple[int, float]] = []
                step = case.step_ms
                for i, v in enumerate(exp.values):
                    ts = case.start_ms + i * step
                    if ts > case.end_ms:
                        raise CaseFailure(
                            f"expected {len(exp.values)} points for {series.labels}, but query "
                            "time range cannot return this many points"
                        )
                    if not v.omitted:
                        points.append((ts, v.value))
                got = list(zip(series.timestamps.tolist(), series.values.tolist(), strict=True))
                if len(points) != len(got):
                    raise CaseFailure(
                        f"expected {len(points)} float points for {series.labels}, got {got}"
                    )
                for (et, ev), (gt, gv) in zip(points, got, strict=True):
                    if et != gt or not _almost_equal(gv, ev):
                        raise CaseFailure(
                            f"expected {ev} at t={et} for {series.labels}, got {gv} at t={gt} "
                            f"(result has {got})"
                        )
            for labels in case.expected:
                if labels not in seen:
                    raise CaseFailure(f"expected metric {labels} not found")
            return
        if isinstance(value, Vector):
            if case.expect_scalar:
                raise CaseFailure(f"expected scalar result, but got vector {value.samples}")
            seen = set()
            for pos, sample in enumerate(value.samples):
                exp = case.expected.get(sample.labels)
                if exp is None:
                    raise CaseFailure(
                        f"unexpected metric {sample.labels} in result, has value {sample.value}"
                    )
                if case.ordered and exp.pos != pos + 1:
                    raise CaseFailure(
                        f"expected metric {sample.labels} at position {exp.pos} but was at "
                        f"{pos + 1}"
                    )
                if not _almost_equal(exp.values[0].value, sample.value):
                    raise CaseFailure(
                        f"expected {exp.values[0].value} for {sample.labels} but got {sample.value}"
                    )
                seen.add(sample.labels)
            for labels in case.expected:
                if labels not in seen:
                    raise CaseFailure(f"expected metric {labels} not found")
            return
        if isinstance(value, Scalar):
            if not case.expect_scalar:
                raise CaseFailure(f"expected vector or matrix result, but got scalar {value.value}")
            exp0 = case.expected[Labels()].values[0].value
            if not _almost_equal(exp0, value.value):
                raise CaseFailure(f"expected scalar {exp0} but got {value.value}")
            return
        if isinstance(value, String):
            raise CaseFailure(f"string result {value.value!r} not supported by the test format")
        raise CaseFailure(f"unexpected result type {type(value).__name__}")


_COMMAND = re.compile(r"^(?:eval(?:_\w+)?\s|load(?:_with_nhcb)?\s|clear$)")


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Split a file into blocks of non-blank lines (comments count as blank)."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            line = ""
        if not line:
            if current:
                blocks.append((start, current))
                current = []
            continue
        if not current:
            start = no
        # A new command inside a block starts its own block.
        if current and _COMMAND.match(line):
            blocks.append((start, current))
            current = []
            start = no
        current.append(line)
    if current:
        blocks.append((start, current))
    return blocks


def run_file(path: str | Path) -> FileResult:
    """Run every eval case of one .test file."""
    result = FileResult(str(path))
    runner = TestRunner()
    text = Path(path).read_text(encoding="utf-8")
    for line_no, lines in _blocks(text):
        header, body = lines[0], lines[1:]
        if header == "clear":
            runner.storage.clear()
            runner.native_series.clear()
            continue
        load = _PAT_LOAD.match(header)
        if load:
            try:
                runner._load(load, body)
            except (DSLError, ValueError, IndexError) as exc:
                result.outcomes.append(CaseOutcome(line_no, header, "failed", f"load: {exc}"))
            continue
        if header.startswith("eval"):
            try:
                case = runner._parse_eval(line_no, header, body)
            except (DSLError, ValueError, IndexError) as exc:
                result.outcomes.append(CaseOutcome(line_no, header, "failed", f"parse: {exc}"))
                continue
            result.outcomes.append(runner.run_case(case))
            continue
        result.outcomes.append(CaseOutcome(line_no, header, "failed", "unknown command"))
    return result


def _counts_line(passed: int, failed: int, skipped: int) -> str:
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    return line


def main(paths: list[str], verbose: bool = False) -> int:
    """Run the given files; print per-file and total counts; 0 only when nothing failed."""
    total_p = total_f = total_s = 0
    for path in paths:
        fr = run_file(path)
        total_p += fr.passed
        total_f += fr.failed
        total_s += fr.skipped
        print(f"{path}: {_counts_line(fr.passed, fr.failed, fr.skipped)}")
        for o in fr.outcomes:
            if o.status == "failed":
                print(f"  FAIL line {o.line}: {o.expr}\n    {o.message[:500]}")
            elif o.status == "skipped" and verbose:
                print(f"  SKIP line {o.line}: {o.expr} ({o.message})")
    print(_counts_line(total_p, total_f, total_s))
    sys.stdout.flush()
    return 0 if total_f == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:], verbose="-v" in sys.argv))
