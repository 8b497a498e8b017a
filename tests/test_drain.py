"""Batcher.drain in real time: small windows, bounded waits, no speed asserts."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rapidfire import Batch, Batcher, DrainReport, ReadyReason

ALICE = "15550000001"
BOB = "15550000002"
CAROL = "15550000003"
DAVE = "15550000004"
MakeBatcher = Callable[..., Batcher]
BOUND = 10.0


@contextmanager
def drain_in_thread(batcher: Batcher, handler: Any, **options: Any) -> Iterator[dict]:
    """Run drain with a stop event in a thread; stop and join it on exit."""
    stop = threading.Event()
    out: dict[str, Any] = {"stop": stop}

    def run() -> None:
        try:
            out["report"] = batcher.drain(handler, stop=stop, **options)
        except BaseException as exc:  # reported by the test, not lost in the thread
            out["error"] = exc

    thread = threading.Thread(target=run, name="test-drain")
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join(timeout=BOUND)
        out["alive"] = thread.is_alive()


def test_until_idle_returns_after_handling_everything_including_open_batches(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher()
    batcher.push_many([(ALICE, 1), (ALICE, 2), (BOB, 1)])
    batcher.flush(BOB)
    seen: dict[str, tuple[Any, ...]] = {}
    lock = threading.Lock()

    def handler(batch: Batch) -> None:
        with lock:
            seen[batch.conversation] = batch.messages

    batcher.push(CAROL, "just now")
    report = batcher.drain(handler, until_idle=True, concurrency=2)
    stats = batcher.stats()

    assert seen == {ALICE: (1, 2), BOB: (1,), CAROL: ("just now",)}
    assert report == DrainReport(handled=3)
    assert (stats.pending, stats.in_flight, stats.stored_messages) == (0, 0, 0)


def test_until_idle_on_an_empty_namespace_returns_at_once(make_batcher: MakeBatcher):
    calls: list[Batch] = []

    report = make_batcher().drain(calls.append, until_idle=True)

    assert report == DrainReport()
    assert calls == []


def test_failing_handler_is_retried_with_backoff_then_dead_lettered(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher(retry_backoff=0.1, retry_backoff_max=0.2)
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    started: list[tuple[int, float]] = []

    def handler(batch: Batch) -> None:
        started.append((batch.attempt, time.monotonic()))
        raise RuntimeError("model unavailable")

    report = batcher.drain(handler, until_idle=True)
    (letter,) = batcher.dead_letters()
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(started)]

    assert [attempt for attempt, _ in started] == [1, 2, 3]
    assert (report.handled, report.failed, report.dead_lettered) == (0, 3, 1)
    assert gaps[0] >= 0.5 * 0.1
    assert gaps[1] >= 0.5 * 0.2
    assert (letter.attempts, letter.messages) == (3, ("hi",))
    assert letter.error == "RuntimeError: model unavailable"


def test_slow_handler_keeps_its_batch_because_drain_renews_the_lease(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher()
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    deliveries: list[int] = []

    def handler(batch: Batch) -> None:
        deliveries.append(batch.attempt)
        time.sleep(1.0)

    report = batcher.drain(handler, until_idle=True, concurrency=2)

    assert deliveries == [1]
    assert report == DrainReport(handled=1)
    assert batcher.stats().acked == 1


def test_without_renewal_a_slow_handler_loses_its_lease_and_the_batch_returns(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher()
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    deliveries: list[tuple[int, ReadyReason]] = []

    def handler(batch: Batch) -> None:
        deliveries.append((batch.attempt, batch.reason))
        if batch.attempt == 1:
            time.sleep(1.0)

    report = batcher.drain(handler, until_idle=True, renew=False)

    assert deliveries == [(1, ReadyReason.FLUSH), (2, ReadyReason.LEASE_EXPIRED)]
    assert (report.handled, report.lost) == (1, 1)


def test_concurrency_handles_conversations_in_parallel_but_one_batch_each(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher()
    conversations = (ALICE, BOB, CAROL)
    for conversation in conversations:
        batcher.push_many([(conversation, 0), (conversation, 1)])
        batcher.flush(conversation)
        batcher.push_many([(conversation, 2), (conversation, 3)])
        batcher.flush(conversation)
    together = threading.Barrier(len(conversations), timeout=BOUND)
    lock = threading.Lock()
    active: dict[str, int] = dict.fromkeys(conversations, 0)
    most_at_once: dict[str, int] = dict.fromkeys(conversations, 0)
    order: dict[str, list[tuple[Any, ...]]] = {c: [] for c in conversations}

    def handler(batch: Batch) -> None:
        with lock:
            active[batch.conversation] += 1
            most = max(most_at_once[batch.conversation], active[batch.conversation])
            most_at_once[batch.conversation] = most
            order[batch.conversation].append(batch.messages)
        if batch.messages[0] == 0:
            together.wait()
        time.sleep(0.05)
        with lock:
            active[batch.conversation] -= 1

    report = batcher.drain(handler, until_idle=True, concurrency=4)

    assert report == DrainReport(handled=6)
    assert not together.broken
    assert most_at_once == dict.fromkeys(conversations, 1)
    assert order == {c: [(0, 1), (2, 3)] for c in conversations}


def test_setting_stop_from_another_thread_stops_drain_cleanly(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher()
    handled = threading.Event()

    def handler(batch: Batch) -> None:
        handled.set()

    with drain_in_thread(batcher, handler) as run:
        batcher.push(ALICE, "hi")
        was_handled = handled.wait(BOUND)

    assert was_handled
    assert run["alive"] is False
    assert "error" not in run
    assert run["report"] == DrainReport(handled=1)


def test_stop_gives_unfinished_batches_back_after_the_grace_period(
    make_batcher: MakeBatcher,
):
    batcher = make_batcher()
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    started, release_handler = threading.Event(), threading.Event()

    def handler(batch: Batch) -> None:
        started.set()
        release_handler.wait(BOUND)

    try:
        with drain_in_thread(batcher, handler, grace=0.2) as run:
            was_started = started.wait(BOUND)
        (again,) = batcher.claim()
    finally:
        release_handler.set()

    assert was_started
    assert run["alive"] is False
    assert run["report"].released == 1
    assert (again.attempt, again.reason) == (1, ReadyReason.RETRY)


def test_an_idle_drain_sleeps_instead_of_polling(make_batcher: MakeBatcher):
    batcher = make_batcher()
    claims: list[int] = []
    claim_shard = batcher.claim_shard

    def counting_claim_shard(shard: int, limit: int) -> Any:
        claims.append(shard)
        return claim_shard(shard, limit)

    batcher.claim_shard = counting_claim_shard  # type: ignore[method-assign]

    with drain_in_thread(batcher, lambda batch: None) as run:
        time.sleep(1.5)

    assert run["alive"] is False
    assert 1 <= len(claims) <= 4


def test_a_push_to_an_idle_worker_is_handled_promptly(make_batcher: MakeBatcher):
    batcher = make_batcher()
    handled = threading.Event()
    seen: list[tuple[Any, ...]] = []

    def handler(batch: Batch) -> None:
        seen.append(batch.messages)
        handled.set()

    with drain_in_thread(batcher, handler) as run:
        time.sleep(0.5)
        batcher.push(DAVE, "anyone?")
        was_handled = handled.wait(5.0)

    assert was_handled
    assert seen == [("anyone?",)]
    assert run["report"].handled == 1


def test_a_push_during_an_in_flight_claim_is_not_missed(make_batcher: MakeBatcher):
    batcher = make_batcher()
    handled = threading.Event()
    claim_shard = batcher.claim_shard
    first_claim = threading.Event()

    def claim_then_push(shard: int, limit: int) -> Any:
        result = claim_shard(shard, limit)
        if not first_claim.is_set():
            first_claim.set()
            time.sleep(1.0)  # the wake listener subscribes meanwhile
            batcher.push(ALICE, "sent while the worker was claiming")
            time.sleep(0.3)  # its wake message arrives before this reply
        return result

    batcher.claim_shard = claim_then_push  # type: ignore[method-assign]

    with drain_in_thread(batcher, lambda batch: handled.set()):
        was_handled = handled.wait(3.0)

    assert was_handled


def test_handler_failures_are_logged_without_the_conversation_or_the_error_text(
    make_batcher: MakeBatcher, caplog: pytest.LogCaptureFixture
):
    batcher = make_batcher(max_attempts=1)
    batcher.push(ALICE, {"text": "my card is 4111-1111"})
    batcher.flush(ALICE)

    def handler(batch: Batch) -> None:
        raise ValueError(f"cannot parse {batch.messages[0]['text']}")

    with caplog.at_level(logging.INFO, logger="rapidfire"):
        report = batcher.drain(handler, until_idle=True)
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    (letter,) = batcher.dead_letters()

    assert report.dead_lettered == 1
    assert any("ValueError" in line for line in shown)
    assert [line for line in shown if "4111" in line or ALICE in line] == []
    assert "4111" in letter.error
