"""Error grouping: recognising exceptions, fingerprints, groups, persistence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from signalroom.logs.errors import (
    ERROR_GROUP_METRIC,
    KV_NAMESPACE,
    ErrorEvent,
    ErrorGroups,
    extract_error,
    fingerprint,
    normalise_message,
    parse_stack_text,
)
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_id
from signalroom.model.labels import Labels
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

PYTHON_TB = """Traceback (most recent call last):
  File "/app/shop/views.py", line 42, in checkout
    order = place_order(cart)
  File "/app/shop/orders.py", line 17, in place_order
    return charge(cart.total)
  File "/app/shop/payments.py", line 88, in charge
    raise PaymentError(f"card {card_id} declined")
shop.payments.PaymentError: card 4242 declined for order 'A-1001'"""

PYTHON_CHAINED = """Traceback (most recent call last):
  File "/app/db.py", line 5, in get
    raise KeyError(k)
KeyError: 'user:17'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/api.py", line 9, in handler
    user = db.get(uid)
  File "/app/db.py", line 7, in get
    raise LookupError("missing user 17")
LookupError: missing user 17"""

JAVA_TRACE = """java.lang.IllegalStateException: Order 12345 is already shipped
\tat com.shop.orders.OrderService.cancel(OrderService.java:120)
\tat com.shop.api.OrderController.cancel(OrderController.java:45)
\tat sun.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\tat org.springframework.web.Servlet.service(Servlet.java:750)
Caused by: java.sql.SQLException: timeout
\tat com.db.Pool.get(Pool.java:1)"""

JS_TRACE = """TypeError: Cannot read properties of undefined (reading 'price')
    at computeTotal (/srv/app/cart.js:10:15)
    at Array.map (<anonymous>)
    at /srv/app/routes.js:33:7
    at processTicksAndRejections (node:internal/process/task_queues:95:5)"""

GO_PANIC = """panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.lookup(...)
\t/app/main.go:12
main.handler(0xc000012345)
\t/app/main.go:20 +0x1d
main.main()
\t/app/main.go:30 +0x25
exit status 2"""


def test_python_traceback_innermost_frames_first() -> None:
    event = parse_stack_text(PYTHON_TB)
    assert event == ErrorEvent(
        "shop.payments.PaymentError",
        "card 4242 declined for order 'A-1001'",
        (
            "/app/shop/payments.py:charge",
            "/app/shop/orders.py:place_order",
            "/app/shop/views.py:checkout",
        ),
    )


def test_python_chained_takes_the_last_traceback() -> None:
    event = parse_stack_text(PYTHON_CHAINED)
    assert event is not None
    assert event.type == "LookupError"
    assert event.frames == ("/app/db.py:get", "/app/api.py:handler")


def test_java_trace() -> None:
    event = parse_stack_text("2024-01-01 ERROR boom\n" + JAVA_TRACE)
    assert event is not None
    assert event.type == "java.lang.IllegalStateException"
    assert event.message == "Order 12345 is already shipped"
    assert event.frames[:2] == (
        "com.shop.orders.OrderService.cancel",
        "com.shop.api.OrderController.cancel",
    )


def test_javascript_trace_drops_line_numbers() -> None:
    event = parse_stack_text(JS_TRACE)
    assert event is not None
    assert event.type == "TypeError"
    assert event.frames[:3] == (
        "computeTotal (/srv/app/cart.js)",
        "Array.map (<anonymous>)",
        "/srv/app/routes.js",
    )


def test_go_panic_skips_runtime_frames() -> None:
    event = parse_stack_text(GO_PANIC)
    assert event is not None
    assert event.type == "runtime error"
    assert event.message == "index out of range [5] with length 3"
    assert event.frames == ("main.lookup", "main.handler", "main.main")


def test_plain_lines_are_not_errors() -> None:
    assert extract_error("GET /cart 200 12ms") is None
    assert extract_error('level=error msg="upstream timeout"') is None
    assert extract_error('{"msg": "ok", "error": null}') is None


def test_structured_fields_otel_and_json_line() -> None:
    meta = json.dumps({"exception.type": "ValueError", "exception.message": "bad id 17"})
    assert extract_error("request failed", meta) == ErrorEvent("ValueError", "bad id 17")
    line = json.dumps({"level": "error", "msg": "failed", "stack_trace": JS_TRACE})
    event = extract_error(line)
    assert event is not None and event.type == "TypeError"
    ecs = json.dumps(
        {"error": {"type": "Timeout", "message": "after 30s", "stack_trace": GO_PANIC}}
    )
    event = extract_error(ecs)
    assert event is not None
    assert (event.type, event.message) == ("Timeout", "after 30s")
    assert event.frames[0] == "main.lookup"


def test_normalise_message() -> None:
    assert normalise_message("card 4242 declined for order 'A-1001'") == (
        "card <id> declined for order <str>"
    )
    assert (
        normalise_message(
            'user "bob" 0xdeadbeef req 3f2a9c1e-0b1d-4c3e-9f00-123456789abc at 10.0.0.1'
        )
        == "user <str> <hex> req <uuid> at <id>"
    )
    assert normalise_message("sha deadbeef12345678 failed") == "sha <hex> failed"


def test_fingerprint_ignores_variable_parts_but_not_frames() -> None:
    first = parse_stack_text(PYTHON_TB)
    other_card = parse_stack_text(PYTHON_TB.replace("4242 declined for order 'A-1001'",
                                                    "9999 declined for order 'B-7'"))  # fmt: skip
    moved = parse_stack_text(PYTHON_TB.replace("line 88", "line 91"))
    other_path = parse_stack_text(PYTHON_TB.replace("in checkout", "in express_checkout"))
    assert first and other_card and moved and other_path
    assert fingerprint(first) == fingerprint(other_card) == fingerprint(moved)
    assert fingerprint(first) != fingerprint(other_path)
    assert len(fingerprint(first)) == 16


def _table(rows: list[tuple[int, dict[str, str], str, str | None]]) -> pa.Table:
    streams = [format_labels(labels) for _, labels, _, _ in rows]
    return pa.table(
        {
            "timestamp": [r[0] for r in rows],
            "stream_id": [stream_id(s) for s in streams],
            "stream": streams,
            "line": [r[2] for r in rows],
            "trace_id": [None] * len(rows),
            "span_id": [None] * len(rows),
            "metadata": [r[3] for r in rows],
        },
        schema=LOG_SCHEMA,
    )


class _Samples:
    def __init__(self) -> None:
        self.samples: list[tuple[Labels, int, float]] = []

    def append_samples(self, samples: Sequence[tuple[Labels, int, float]]) -> None:
        self.samples.extend(samples)


def test_groups_count_services_resolve_and_regress(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    sink = _Samples()
    now = [1_700_000_000.0]
    groups = ErrorGroups(store.kv(KV_NAMESPACE), sink, clock=lambda: now[0])
    shop, cart = {"service": "shop"}, {"service": "cart"}
    new = groups.observe(
        "default",
        _table(
            [
                (10, shop, PYTHON_TB, None),
                (11, shop, "GET / 200", None),
                (12, cart, PYTHON_TB.replace("4242", "1111"), None),
                (13, shop, JS_TRACE, None),
                (9, shop, "failed", json.dumps({"exception.type": "KeyError"})),
            ]
        ),
    )
    assert sorted(g.type for g in new) == ["KeyError", "TypeError", "shop.payments.PaymentError"]
    listed = groups.list("default")
    assert [g.type for g in listed] == ["TypeError", "shop.payments.PaymentError", "KeyError"]
    payment = listed[1]
    assert (payment.count, payment.first_seen, payment.last_seen) == (2, 10, 12)
    assert payment.services == ["cart", "shop"]
    assert payment.example == PYTHON_TB
    assert payment.message == "card <id> declined for order <str>"
    assert {s[0]["__name__"] for s in sink.samples} == {ERROR_GROUP_METRIC}
    assert {s[0]["type"] for s in sink.samples} == {g.type for g in new}
    assert {s[0]["fingerprint"] for s in sink.samples} == {g.fingerprint for g in new}

    # Seen again: not new, counted.
    assert groups.observe("default", _table([(20, shop, PYTHON_TB, None)])) == []
    assert groups.get("default", payment.fingerprint).count == 3  # type: ignore[union-attr]

    resolved = groups.resolve("default", payment.fingerprint)
    assert resolved is not None and resolved.status == "resolved"
    assert groups.resolve("default", "0" * 16) is None
    assert [g.fingerprint for g in groups.list("default", status="resolved")] == [
        payment.fingerprint
    ]

    # A fresh instance reads the groups back from the state store.
    reloaded = ErrorGroups(store.kv(KV_NAMESPACE), None)
    again = reloaded.get("default", payment.fingerprint)
    assert again is not None and again.status == "resolved" and again.count == 3
    assert reloaded.list("other") == []

    # The error comes back: the group reopens as a regression and is announced again.
    before = len(sink.samples)
    back = groups.observe("default", _table([(30, shop, PYTHON_TB, None)]))
    assert [g.fingerprint for g in back] == [payment.fingerprint]
    assert back[0].status == "unresolved" and back[0].regressions == 1
    assert len(sink.samples) == before + 1
    groups.flush()
    assert ErrorGroups(store.kv(KV_NAMESPACE)).get("default", payment.fingerprint).count == 4  # type: ignore[union-attr]
    store.close()


def test_tenants_are_separate() -> None:
    groups = ErrorGroups()
    groups.observe("a", _table([(1, {"service": "x"}, GO_PANIC, None)]))
    assert len(groups.list("a")) == 1
    assert groups.list("b") == []
    assert groups.observe("b", _table([(1, {"service": "x"}, GO_PANIC, None)]))
