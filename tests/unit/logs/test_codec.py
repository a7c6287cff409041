"""Line templates (signalroom.logs.codec): byte-exact round trips, and searches over encoded
files that answer exactly what the unencoded lines answer."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signalroom.logs import codec
from signalroom.logs.logql.ast import LineFilter, LogQuery
from signalroom.logs.logql.engine import LogQLEngine
from signalroom.logs.logql.parser import parse
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_id
from signalroom.logs.store import LogStore
from signalroom.storage.table import DurableTable

pytestmark = pytest.mark.unit

BASE_NS = 1_700_000_000 * 10**9
STREAMS = [format_labels({"app": name, "env": "prod"}) for name in ("api", "web", "jobs")]


def _rfc3339(ns: int) -> str:
    seconds, rest = divmod(ns, 10**9)
    text = np.datetime_as_string(np.datetime64(seconds, "s"), unit="s")
    return f"{text}.{rest // 10**6:03d}Z"


def _random_line(rng: random.Random, ns: int) -> str:
    hex16 = "".join(rng.choice("0123456789abcdef") for _ in range(16))
    hex32 = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    pieces = [
        f"ts={_rfc3339(ns)}",
        f'{{"ts":"{_rfc3339(ns + rng.choice([0, 10**6]))}"}}',
        _rfc3339(ns) + "x",
        f"status={rng.choice([200, 404, 500, 503])}",
        f"duration_ms={rng.randint(0, 5000)}",
        f"id={rng.randint(0, 10**19)}",
        f"n={rng.choice(['007', '0', '00', '12ms', '1.5', '-3', '99999999999999999999'])}",
        f"request_id={hex16}",
        f"trace={hex32}",
        f"odd={hex16}a",
        f"upper={hex16.upper()}",
        f"short={hex16[:8]}",
        "caf\u00e9 \u65e5\u672c 42\u00e9 x42 42_",
        "order created",
        "needle-7f3a9c",
        "\x01\x0e\x10 placeholders",
        "1 2 3 4 5 6 7 8 9",
        "",
        "a-b:c.d",
    ]
    return " ".join(rng.sample(pieces, rng.randint(0, 6)))


def _table(lines: list[str], stamps: list[int], streams: list[int]) -> pa.Table:
    n = len(lines)
    texts = [STREAMS[s] for s in streams]
    return pa.Table.from_arrays(
        [
            pa.array(stamps, pa.int64()),
            pa.array([stream_id(t) for t in texts], pa.int64()),
            pa.array(texts),
            pa.array(lines, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
        ],
        schema=LOG_SCHEMA,
    )


def _rows(n: int, seed: int) -> pa.Table:
    rng = random.Random(seed)
    stamps = [BASE_NS + i * 7_000_123 for i in range(n)]
    lines = [_random_line(rng, ts) for ts in stamps]
    return _table(lines, stamps, [rng.randrange(len(STREAMS)) for _ in range(n)])


ADVERSARIAL = [
    "",
    "0",
    "007",
    "18446744073709551616 9223372036854775807 9223372036854775808 123456789012345678",
    "0123456789abcdef 0123456789ABCDEF 0123456789abcdef0 deadbeefdeadbeefdeadbeef",
    "\u00e9123 123\u00e9 \u65e5\u672c\u8a9e 1 \U0001f600 2",
    "\x01 \x02 \x06 \x0e \x0f \x10 1 2",
    "2023-11-14T22:13:20.000Z",
    "2023-11-14T22:13:20.000Z2023-11-14T22:13:20.000Z",
    "x2023-11-14T22:13:20.000Z 2023-11-14T22:13:20.000Z",
    "2023-11-14T22:13:20.000Zabc",
    "2023-11-14T22:13:20.0",
    "1 2 3 4 5 6 7 8 9 10 0123456789abcdef 0123456789abcdef 0123456789abcdef",
    "a" * 5000 + " 12 " + "f" * 64,
    "tab\t1\ttab\n2\r\n",
]


def test_round_trip_adversarial_and_random_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_CHUNK_ROWS", 7)  # many chunk boundaries
    random_rows = _rows(400, seed=3)
    stamps = [1_700_000_000 * 10**9] * len(ADVERSARIAL)
    table = pa.concat_tables([_table(ADVERSARIAL, stamps, [0] * len(ADVERSARIAL)), random_rows])
    encoded = codec.encode(table)
    assert codec.is_encoded(encoded.schema.metadata)
    assert "line" not in encoded.column_names
    decoded = codec.decode(encoded, LOG_SCHEMA)
    assert decoded.column("line").to_pylist() == table.column("line").to_pylist()
    assert decoded.equals(table)


def test_variables_leave_the_template() -> None:
    ns = 1_700_000_000_007_000_000
    line = "ts=2023-11-14T22:13:20.007Z status=500 id=0123456789abcdef took 12ms n=007"
    encoded = codec.encode(_table([line], [ns], [0])).to_pylist()[0]
    assert encoded["tpl"] == "ts=\x10 status=\x01 id=\x0e took 12ms n=007"
    assert encoded["n0"] == 500
    assert encoded["h0"] == "0123456789abcdef"
    assert encoded["raw"] is None


def test_a_line_with_a_placeholder_byte_is_stored_raw() -> None:
    encoded = codec.encode(_table(["a \x01 1 b"], [0], [0])).to_pylist()[0]
    assert encoded["raw"] == "a \x01 1 b"
    assert encoded["tpl"] is None


def _needles(table: pa.Table, rng: random.Random, count: int) -> list[str]:
    lines = [x for x in table.column("line").to_pylist() if x]
    needles = [
        "status=500", "status=5", "=5", "id=7", "request_id=", "2023-11-14", "T22:", ".0",
        "Z ", "00Z", "0123", "abc", "order created", "needle-7f3a9c", "7f3a9c", "\u00e9 x",
        "42", "9 ", "\x01", "", "x", "12ms", "007", "odd=", "e", "1 2 3",
    ]  # fmt: skip
    while len(needles) < count:
        line = rng.choice(lines)
        start = rng.randrange(len(line))
        needles.append(line[start : start + rng.randint(1, 24)])
    return needles


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[LogStore, LogStore, pa.Table]:
    """The same rows in files (encoded, small row groups) and only in the buffer."""
    table = _rows(1500, seed=11)
    encoded = LogStore(tmp_path_factory.mktemp("encoded"), wal_fsync="never", row_group_rows=97)
    encoded.open()
    for part in table.to_batches(max_chunksize=500):  # several files
        encoded.append("t", pa.Table.from_batches([part]))
        encoded.table.flush()
    plain = LogStore(tmp_path_factory.mktemp("plain"), wal_fsync="never", flush_rows=10**9)
    plain.open()
    plain.append("t", table)
    return encoded, plain, table


def _scan(store: LogStore, filters: list[LineFilter], **options: object) -> list[tuple[int, str]]:
    batches = store.scan("t", 0, 2**62, line_filters=filters, **options)  # type: ignore[arg-type]
    out = []
    for batch in batches:
        out += list(zip(batch.column(0).to_pylist(), batch.column(2).to_pylist(), strict=True))
    return out


@pytest.mark.slow
def test_substring_filters_match_the_lines_exactly(
    stores: tuple[LogStore, LogStore, pa.Table],
) -> None:
    encoded, _, table = stores
    assert encoded.table.stats().files >= 3
    assert all(encoded.trigrams.encoded(p) for p in encoded.table.files("t"))
    rows = list(
        zip(table.column("timestamp").to_pylist(), table.column("line").to_pylist(), strict=True)
    )
    rng = random.Random(5)
    for needle in _needles(table, rng, 90):
        for op in ("|=", "!="):
            got = sorted(_scan(encoded, [LineFilter(op, (needle,))], direction="forward"))
            want = sorted((ts, x) for ts, x in rows if (needle in x) == (op == "|="))
            assert got == want, (op, needle)


@pytest.mark.slow
def test_filter_chains_alternatives_and_limits_agree_with_the_buffer(
    stores: tuple[LogStore, LogStore, pa.Table],
) -> None:
    encoded, plain, table = stores
    rng = random.Random(7)
    needles = _needles(table, rng, 60)
    for _ in range(25):
        filters = []
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(["|=", "!=", "|~", "!~"])
            values = tuple(rng.sample(needles, rng.randint(1, 2)))
            if op in ("|~", "!~"):
                values = tuple(re.escape(v)[:12] or "." for v in values)
            filters.append(LineFilter(op, values))  # type: ignore[arg-type]
        for options in (
            {"direction": "forward"},
            {"direction": "backward", "limit": 17},
            {"direction": "none"},
        ):
            got = _scan(encoded, filters, **options)
            want = _scan(plain, filters, **options)
            if options["direction"] == "none":
                got, want = sorted(got), sorted(want)
            assert got == want, (filters, options)


@pytest.mark.parametrize(
    "query",
    [
        '{env="prod"} |= "status=500" | logfmt | duration_ms > 100',
        '{env="prod"} | logfmt | status >= 500',
        '{app="api"} |~ "request_id=[0-9a-f]{4}" | line_format "{{.request_id}}"',
        '{env="prod"} != "trace=" |= "id=" | regexp "id=(?P<id>[0-9]+)"',
        '{env="prod"} |= "2023-11-14T22" | pattern "<_> ts=<ts> <_>"',
    ],
)
def test_queries_with_parsers_agree_with_the_buffer(
    stores: tuple[LogStore, LogStore, pa.Table], query: str
) -> None:
    encoded, plain, _ = stores
    results = []
    for store in (encoded, plain):
        engine = LogQLEngine(store, timeout_s=60)
        parsed = parse(query)
        assert isinstance(parsed, LogQuery)
        result = engine.select_logs("t", parsed, 0, 2**62, limit=1000)
        results.append(
            sorted((sorted(s.labels.items()), s.timestamps, s.lines) for s in result.streams)
        )
    assert results[0] == results[1]
    assert results[0]


def test_files_written_before_the_codec_are_still_read(tmp_path: Path) -> None:
    table = _rows(300, seed=2)
    old = DurableTable(tmp_path, LOG_SCHEMA, wal_fsync="never", sort_by=("stream_id",), name="logs")
    old.open()
    old.append("t", table.slice(0, 150))
    old.flush()
    old.close()
    [old_file] = list(tmp_path.rglob("*.parquet"))
    assert "line" in pq.read_schema(old_file).names
    store = LogStore(tmp_path, wal_fsync="never").open()
    store.append("t", table.slice(150))
    store.table.flush()
    assert not store.trigrams.encoded(old_file)
    want = sorted(x for x in table.column("line").to_pylist() if "status=500" in x)
    got = sorted(x for _, x in _scan(store, [LineFilter("|=", ("status=500",))]))
    assert got == want
    # Compaction merges the two formats into one encoded file.
    store.table.compact(now_ns=2**62, min_files=2)
    [merged] = store.table.files("t")
    assert store.trigrams.encoded(merged)
    assert sorted(store.table.scan("t").column("line").to_pylist()) == sorted(
        table.column("line").to_pylist()
    )
    store.close()


def test_rows_with_trace_id_rebuild_their_lines(tmp_path: Path) -> None:
    table = _rows(50, seed=4)
    trace = pa.array(["abc" if i % 10 == 0 else None for i in range(50)], pa.string())
    table = table.set_column(table.schema.get_field_index("trace_id"), "trace_id", trace)
    store = LogStore(tmp_path, wal_fsync="never").open()
    store.append("t", table.slice(0, 25))
    store.table.flush()
    store.append("t", table.slice(25))  # part in files, part in the buffer
    rows = store.rows_with_trace_id("t", "abc", 100)
    assert rows.column_names == ["timestamp", "stream", "line", "span_id"]
    want = [x for i, x in enumerate(table.column("line").to_pylist()) if i % 10 == 0]
    assert rows.column("line").to_pylist() == want
    assert store.rows_with_trace_id("t", "abc", 2).num_rows == 2
    store.close()
