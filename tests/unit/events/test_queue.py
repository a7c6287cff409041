"""The WAL-backed event queue: durable puts, at-least-once delivery with acks, redelivery
after a reopen, checkpointing behind the oldest unacknowledged item, and the depth limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signalroom.events.queue import QueueFull, RawCapture, WALEventQueue, decode_item

pytestmark = pytest.mark.unit


def records(*names: str) -> list[dict[str, object]]:
    return [{"event": n, "id": n, "ts": 1, "user": "u", "props": {}} for n in names]


async def opened(path: Path, max_depth_events: int = 1_000_000) -> WALEventQueue:
    queue = WALEventQueue(path, fsync="never", max_depth_events=max_depth_events)
    await queue.open()
    return queue


async def test_put_get_ack_delivers_each_item_once(tmp_path: Path) -> None:
    queue = await opened(tmp_path)
    await queue.put("acme", records("a", "b"))
    await queue.put("acme", records("c"))
    assert queue.depth_events == 3
    items = await queue.get(min_events=1, max_events=100, wait_s=0)
    assert [decode_item(i.payload) for i in items] == [
        ("acme", records("a", "b")),
        ("acme", records("c")),
    ]
    assert [i.events for i in items] == [2, 1]
    # delivered but not acked: still counted in the depth, not delivered again
    assert queue.depth_events == 3
    assert await queue.get(min_events=1, max_events=100, wait_s=0) == []
    await queue.ack(items)
    assert queue.depth_events == 0
    assert queue.oldest_age_s() == 0.0
    await queue.close()


async def test_unacked_items_are_redelivered_after_reopen(tmp_path: Path) -> None:
    queue = await opened(tmp_path)
    await queue.put("t", records("a"))
    await queue.put("t", records("b"))
    await queue.put("t", records("c"))
    items = await queue.get(min_events=1, max_events=100, wait_s=0)
    await queue.ack(items[:1])  # only "a" is stored; "b" was delivered but not acked
    await queue.close()

    again = await opened(tmp_path)
    pending = again.pending()
    assert [decode_item(i.payload)[1][0]["event"] for i in pending] == ["b", "c"]
    assert again.depth_events == 2
    await again.close()


async def test_ack_out_of_order_checkpoints_only_behind_the_oldest_unacked(
    tmp_path: Path,
) -> None:
    queue = await opened(tmp_path)
    for name in "abc":
        await queue.put("t", records(name))
    items = await queue.get(min_events=1, max_events=100, wait_s=0)
    await queue.ack(items[1:])  # b and c stored, a not: the checkpoint cannot pass a
    await queue.close()

    again = await opened(tmp_path)
    # at-least-once: a comes back, and so may b and c (the consumer's dedupe drops them)
    names = [decode_item(i.payload)[1][0]["event"] for i in again.pending()]
    assert names[0] == "a"
    redelivered = await again.get(min_events=1, max_events=100, wait_s=0)
    await again.ack(redelivered)
    await again.close()

    third = await opened(tmp_path)
    assert third.pending() == []
    assert third.depth_events == 0
    await third.close()


async def test_acked_items_are_not_redelivered_and_the_wal_is_checkpointed(
    tmp_path: Path,
) -> None:
    queue = await opened(tmp_path)
    lsns = [await queue.put("t", records(str(i))) for i in range(5)]
    items = await queue.get(min_events=1, max_events=100, wait_s=0)
    await queue.ack(items)
    assert queue._wal.checkpoint_lsn == max(lsns)
    await queue.put("t", records("late"))
    await queue.close()

    again = await opened(tmp_path)
    assert [decode_item(i.payload)[1][0]["event"] for i in again.pending()] == ["late"]
    await again.close()


async def test_nack_gives_items_back_first(tmp_path: Path) -> None:
    queue = await opened(tmp_path)
    for name in "abc":
        await queue.put("t", records(name))
    first = await queue.get(min_events=1, max_events=2, wait_s=0)
    assert len(first) == 2
    queue.nack(first)
    again = await queue.get(min_events=1, max_events=100, wait_s=0)
    assert [decode_item(i.payload)[1][0]["event"] for i in again] == ["a", "b", "c"]
    await queue.close()


async def test_get_takes_at_most_max_events_but_at_least_one_item(tmp_path: Path) -> None:
    queue = await opened(tmp_path)
    await queue.put("t", records("a", "b", "c"))
    await queue.put("t", records("d", "e"))
    await queue.put("t", records("f"))
    # an item larger than max_events still goes out alone (never split, never stuck)
    assert [i.events for i in await queue.get(min_events=1, max_events=2, wait_s=0)] == [3]
    assert [i.events for i in await queue.get(min_events=1, max_events=3, wait_s=0)] == [2, 1]
    await queue.close()


async def test_get_waits_for_min_events_or_the_interval(tmp_path: Path) -> None:
    queue = await opened(tmp_path)
    await queue.put("t", records("a"))
    # fewer than min_events and a short wait: the oldest event's age ends the wait
    items = await queue.get(min_events=10, max_events=100, wait_s=0.05)
    assert [i.events for i in items] == [1]
    # nothing queued: the wait ends empty
    assert await queue.get(min_events=1, max_events=100, wait_s=0.05) == []
    await queue.close()


async def test_depth_limit_raises_queue_full_until_acked(tmp_path: Path) -> None:
    queue = await opened(tmp_path, max_depth_events=3)
    await queue.put("t", records("a", "b"))
    with pytest.raises(QueueFull, match="max_depth_events 3"):
        await queue.put("t", records("c", "d"))
    await queue.put("t", records("c"))  # exactly at the limit is fine
    items = await queue.get(min_events=1, max_events=100, wait_s=0)
    with pytest.raises(QueueFull):  # delivered but unacked events still count
        await queue.put("t", records("e"))
    await queue.ack(items)
    await queue.put("t", records("e"))
    assert queue.depth_events == 1
    await queue.close()

    # a refused put left nothing in the WAL
    again = await opened(tmp_path)
    assert [decode_item(i.payload)[1][0]["event"] for i in again.pending()] == ["e"]
    await again.close()


async def test_a_raw_posthog_body_is_queued_as_sent_and_parsed_the_same_after_a_restart(
    tmp_path: Path,
) -> None:
    body = json.dumps(
        {
            "api_key": "k",
            "batch": [
                {"event": "a", "distinct_id": "u1", "timestamp": "2024-03-04T00:00:00Z"},
                {"event": "b", "distinct_id": "u2", "uuid": "given"},
                {"distinct_id": "u3"},  # no name: a dead letter, counted all the same
            ],
        }
    ).encode()
    raw = RawCapture(body, 10**18, 3, 12345, json.loads(body))
    queue = await opened(tmp_path)
    await queue.put("acme", raw)
    assert queue.depth_events == 3
    (item,) = await queue.get(min_events=1, max_events=100, wait_s=0)
    assert item.payload.endswith(body)  # the body itself is what the WAL holds
    live = decode_item(item.payload, item.parsed)
    await queue.close()
    again = await opened(tmp_path)
    (replayed,) = again.pending()
    assert replayed.events == 3 and replayed.parsed is None
    # events without a uuid get the same ids when the body is parsed again: a redelivered
    # item is recognised as a duplicate
    assert decode_item(replayed.payload) == live
    tenant, parsed = live
    assert tenant == "acme" and [r["event"] for r in parsed] == ["a", "b", None]
    assert parsed[1]["id"] == "given" and parsed[0]["id"] != parsed[2]["id"]
    assert "error" in parsed[2]
    await again.close()


async def test_a_large_body_is_appended_from_a_worker_and_survives_a_reopen(
    tmp_path: Path,
) -> None:
    events = [{"event": "a", "distinct_id": f"u{i}", "uuid": f"id-{i:05}"} for i in range(5000)]
    body = json.dumps({"batch": events}).encode()
    assert len(body) > 256 * 1024  # past the WAL's inline write
    queue = await opened(tmp_path)
    await queue.put("t", RawCapture(body, 10**18, len(events), 1, json.loads(body)))
    await queue.put("t", records("small"))
    assert queue.depth_events == 5001
    await queue.close()
    again = await opened(tmp_path)
    big = next(i for i in again.pending() if i.events == 5000)
    tenant, parsed = decode_item(big.payload)
    assert tenant == "t" and [r["id"] for r in parsed] == [e["uuid"] for e in events]
    await again.close()
