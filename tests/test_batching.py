"""The batching rules of Batcher, on every backend, timed by the FakeClock."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import rapidfire._batcher as batcher_module
from rapidfire import (
    ArgumentTypeError,
    Batch,
    Batcher,
    BatchPolicy,
    ConfigurationError,
    InvalidArgumentError,
    LayoutMismatchError,
    LeaseLostError,
    ReadyReason,
    RedisConfig,
)
from rapidfire._scripts import script

from .conftest import FAST, FakeClock, raw_client

ALICE = "15550000001"
BOB = "15550000002"
CAROL = "15550000003"
DAVE = "15550000004"
MakeBatcher = Callable[..., Batcher]


@pytest.fixture
def raw(config: RedisConfig) -> Iterator[redis.Redis]:
    client = raw_client(config)
    yield client
    client.close()


def namespace_keys(raw: redis.Redis, config: RedisConfig) -> list[str]:
    return sorted(k.decode() for k in raw.scan_iter(match=f"{config.namespace}:*"))


def key_kind(key: str) -> str:
    """``ns:{0}:m:conv`` -> ``m``; ``ns:layout`` -> ``layout``."""
    rest = key.split("}:", 1)[1] if "}:" in key else key.rsplit(":", 1)[1]
    return rest.split(":", 1)[0]


def by_conversation(batches: list[Batch]) -> dict[str, Batch]:
    return {b.conversation: b for b in batches}


# -- when a batch becomes ready ---------------------------------------------------


def test_burst_within_debounce_is_one_batch_ready_after_quiet(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    start = clock.now
    receipts = []
    for text in ("hi", "hi", "are you there?", "hi"):
        receipts.append(batcher.push(ALICE, {"text": text}))
        clock.advance(0.05)

    during = batcher.claim()
    clock.advance(0.049)
    almost = batcher.claim()
    clock.advance(0.001)
    (batch,) = batcher.claim()

    assert during == almost == []
    assert [m["text"] for m in batch.messages] == ["hi", "hi", "are you there?", "hi"]
    assert {r.batch_id for r in receipts} == {batch.id}
    assert batch.reason is ReadyReason.QUIET
    assert batch.first_push_at == pytest.approx(start, abs=1e-3)
    assert batch.last_push_at == pytest.approx(start + 0.15, abs=1e-3)
    assert batch.ready_at == pytest.approx(start + 0.25, abs=1e-3)
    assert batch.waited == pytest.approx(0.25, abs=1e-3)
    assert batch.handover_delay == pytest.approx(0.0, abs=1e-3)


def test_messages_that_keep_coming_are_ready_max_wait_after_the_first(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock, max_size=50)
    start = clock.now
    receipts, claims = [], []
    for i in range(8):
        receipts.append(batcher.push(ALICE, i))
        claims.append(batcher.claim())
        if i < 7:
            clock.advance(0.05)

    clock.advance(0.049)
    almost = batcher.claim()
    clock.advance(0.001)
    (batch,) = batcher.claim()

    assert claims == [[]] * 8
    assert almost == []
    assert batch.messages == tuple(range(8))
    assert batch.reason is ReadyReason.MAX_WAIT
    assert batch.ready_at == pytest.approx(start + 0.4, abs=1e-3)
    assert receipts[0].ready_at == pytest.approx(start + 0.1, abs=1e-3)
    assert receipts[-1].ready_at == pytest.approx(start + 0.4, abs=1e-3)


def test_full_batch_is_ready_at_once_and_the_next_push_starts_a_new_one(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    filling = [batcher.push(ALICE, i) for i in range(5)]
    overflow = batcher.push(ALICE, 5)

    claimed = batcher.claim()
    clock.advance(0.2)
    blocked = batcher.claim()
    acked = [batcher.ack(b) for b in claimed]
    after_ack = batcher.claim()

    assert filling[-2].ready_in == pytest.approx(0.1, abs=1e-3)
    assert filling[-1].ready_in == 0
    assert [(b.messages, b.reason) for b in claimed] == [
        ((0, 1, 2, 3, 4), ReadyReason.MAX_SIZE)
    ]
    assert overflow.batch_id != filling[0].batch_id
    assert overflow.size == 1
    assert blocked == []
    assert acked == [True]
    assert [(b.id, b.messages, b.reason) for b in after_ack] == [
        (overflow.batch_id, (5,), ReadyReason.QUIET)
    ]


def test_a_batch_never_holds_more_than_max_size_messages(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    receipts = batcher.push_many([(ALICE, i) for i in range(12)])
    clock.advance(1.0)
    sizes = []

    while batches := batcher.claim():
        sizes.extend(b.size for b in batches)
        for batch in batches:
            batcher.ack(batch)

    assert sizes == [5, 5, 2]
    assert [r.size for r in receipts] == [1, 2, 3, 4, 5] * 2 + [1, 2]


def test_push_receipt_tells_size_batch_and_ready_time(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    start = clock.now

    first = batcher.push(ALICE, "a")
    clock.advance(0.03)
    second = batcher.push(ALICE, "b", dedupe_id="wamid.2")

    assert (first.conversation, first.duplicate, first.size) == (ALICE, False, 1)
    assert isinstance(first.batch_id, str)
    assert first.server_time == pytest.approx(start, abs=1e-3)
    assert first.ready_at == pytest.approx(start + 0.1, abs=1e-3)
    assert first.ready_in == pytest.approx(0.1, abs=1e-3)
    assert (second.batch_id, second.size) == (first.batch_id, 2)
    assert second.ready_at == pytest.approx(start + 0.13, abs=1e-3)
    assert second.ready_in == pytest.approx(0.1, abs=1e-3)


def test_push_many_returns_receipts_in_input_order(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    items = [
        (ALICE, 1),
        (BOB, "x", "wamid.b1"),
        (ALICE, 2),
        (CAROL, {"k": 1}),
        (BOB, "y"),
        (ALICE, 3, "wamid.a3"),
    ]

    receipts = batcher.push_many(items)
    clock.advance(0.2)
    batches = by_conversation(batcher.claim())

    assert [r.conversation for r in receipts] == [i[0] for i in items]
    assert [r.size for r in receipts] == [1, 1, 2, 1, 2, 3]
    assert len({r.batch_id for r in receipts if r.conversation == ALICE}) == 1
    assert batches[ALICE].messages == (1, 2, 3)
    assert batches[BOB].messages == ("x", "y")
    assert batches[CAROL].messages == ({"k": 1},)
    assert batcher.push_many([]) == []


def test_push_many_is_one_pipeline(
    make_batcher: MakeBatcher, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    batcher = make_batcher(clock=clock)
    batcher.push(DAVE, "loads the push script")
    client = batcher._executor.client  # type: ignore[union-attr]
    trips: list[str] = []
    pipeline = client.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        trips.append("pipeline")
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(client, "pipeline", counting_pipeline)
    monkeypatch.setattr(client, "evalsha", lambda *a: trips.append("evalsha"))

    receipts = batcher.push_many([(ALICE, 1), (BOB, 2), (CAROL, 3), (ALICE, 4)])

    assert trips == ["pipeline"]
    assert [r.size for r in receipts] == [1, 1, 1, 2]


@pytest.mark.parametrize(
    ("bad", "error", "named"),
    [
        ((CAROL, {1, 2}), ArgumentTypeError, "items[2] message"),
        (("", 1), InvalidArgumentError, "items[2] conversation"),
        ((7, 1), ArgumentTypeError, "items[2] conversation"),
        ((CAROL, 1, 5), ArgumentTypeError, "items[2] dedupe_id"),
        ([CAROL, 1], ArgumentTypeError, "items[2] must be"),
        ((CAROL,), ArgumentTypeError, "items[2] must be"),
    ],
)
def test_push_many_with_one_invalid_item_stores_nothing(
    make_batcher: MakeBatcher,
    clock: FakeClock,
    raw: redis.Redis,
    config: RedisConfig,
    bad: Any,
    error: type[Exception],
    named: str,
):
    batcher = make_batcher(clock=clock)

    with pytest.raises(error) as info:
        batcher.push_many([(ALICE, 1), (BOB, 2, "wamid.1"), bad, (ALICE, 3)])

    assert named in str(info.value)
    assert namespace_keys(raw, config) == []


# -- dedupe ---------------------------------------------------------------------


def test_second_push_with_a_dedupe_id_is_a_duplicate_and_stores_nothing(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    first = batcher.push(ALICE, "hi", dedupe_id="wamid.1")
    clock.advance(0.05)

    again = batcher.push(ALICE, "hi (webhook retry)", dedupe_id="wamid.1")
    elsewhere = batcher.push(BOB, "hi", dedupe_id="wamid.1")
    stored = batcher.inspect(ALICE).stored_messages
    clock.advance(0.2)
    batches = by_conversation(batcher.claim())
    for batch in batches.values():
        batcher.ack(batch)
    stats = batcher.stats()

    assert again.duplicate is True
    assert (again.batch_id, again.size) == (first.batch_id, 1)
    assert again.ready_at == first.ready_at
    assert elsewhere.duplicate is False
    assert stored == 1
    assert batches[ALICE].messages == ("hi",)
    assert batches[BOB].messages == ("hi",)
    assert (stats.pushed, stats.duplicates) == (2, 1)


def test_duplicate_with_no_open_batch_names_no_batch(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi", dedupe_id="wamid.1")
    clock.advance(0.2)
    batcher.claim()

    again = batcher.push(ALICE, "hi", dedupe_id="wamid.1")

    assert again.duplicate is True
    assert (again.batch_id, again.size) == (None, 0)
    assert again.ready_at is None
    assert again.ready_in is None


def test_duplicates_inside_one_push_many_are_caught(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)

    receipts = batcher.push_many(
        [(ALICE, "a", "w1"), (ALICE, "a", "w1"), (ALICE, "b", "w2"), (BOB, "a", "w1")]
    )
    clock.advance(0.2)
    batches = by_conversation(batcher.claim())

    assert [r.duplicate for r in receipts] == [False, True, False, False]
    assert batches[ALICE].messages == ("a", "b")


def test_dedupe_id_is_accepted_again_after_the_dedupe_window(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock, dedupe_window=60)
    batcher.push(ALICE, "hi", dedupe_id="wamid.1")

    clock.advance(59.999)
    inside = batcher.push(ALICE, "hi", dedupe_id="wamid.1")
    clock.advance(0.001)
    after = batcher.push(ALICE, "hi", dedupe_id="wamid.1")

    assert inside.duplicate is True
    assert after.duplicate is False


# -- claiming -------------------------------------------------------------------


def test_a_ready_batch_goes_to_exactly_one_of_two_batchers(
    make_batcher: MakeBatcher, clock: FakeClock
):
    first, second = make_batcher(clock=clock), make_batcher(clock=clock)
    first.push(ALICE, "hi")
    clock.advance(0.2)

    claims = [first.claim(), second.claim()]

    assert sorted(len(c) for c in claims) == [0, 1]


def test_racing_claimers_never_get_the_same_batch(
    make_batcher: MakeBatcher, clock: FakeClock
):
    claimers = [make_batcher(clock=clock) for _ in range(3)]
    conversations = [f"1555100{i:04d}" for i in range(30)]
    claimers[0].push_many([(c, i) for i, c in enumerate(conversations)])
    clock.advance(0.2)
    start = threading.Barrier(len(claimers))
    got: list[list[Batch]] = [[] for _ in claimers]

    def claim_all(index: int) -> None:
        start.wait(timeout=10)
        while batches := claimers[index].claim(limit=2):
            got[index].extend(batches)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ids = [b.id for batches in got for b in batches]

    assert len(ids) == len(set(ids)) == 30
    assert {b.conversation for batches in got for b in batches} == set(conversations)


def test_claim_respects_limit(make_batcher: MakeBatcher, clock: FakeClock):
    batcher = make_batcher(clock=clock)
    batcher.push_many([(f"1555200000{i}", i) for i in range(5)])
    clock.advance(0.2)

    sizes = [len(batcher.claim(limit=2)) for _ in range(4)]

    assert sizes == [2, 2, 1, 0]


def test_one_batch_per_conversation_in_flight_and_the_next_waits_for_ack(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    clock.advance(0.2)
    (first,) = batcher.claim()
    batcher.push(ALICE, 2)
    batcher.push(ALICE, 3)
    batcher.push(BOB, "b")
    clock.advance(0.2)

    during = batcher.claim()
    batcher.ack(first)
    (second,) = batcher.claim()

    assert [b.conversation for b in during] == [BOB]
    assert second.conversation == ALICE
    assert second.id != first.id
    assert second.messages == (2, 3)
    assert second.attempt == 1


def test_a_redelivered_batch_comes_before_later_ones(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    clock.advance(0.2)
    (first,) = batcher.claim()
    batcher.push(ALICE, 2)
    clock.advance(0.5)

    (redelivered,) = batcher.claim()
    batcher.nack(redelivered, 0)
    (retried,) = batcher.claim()
    batcher.ack(retried)
    (later,) = batcher.claim()

    assert (redelivered.id, redelivered.messages) == (first.id, (1,))
    assert (retried.id, retried.attempt) == (first.id, 3)
    assert later.messages == (2,)


# -- leases and fencing -------------------------------------------------------------


def test_unacked_batch_comes_back_after_the_lease_with_the_next_attempt(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = batcher.claim()

    clock.advance(0.499)
    early = batcher.claim()
    still_held = batcher.owns(held)
    clock.advance(0.001)
    (again,) = batcher.claim()

    assert held.lease_expires_at == pytest.approx(held.claimed_at + 0.5, abs=1e-3)
    assert early == []
    assert still_held is True
    assert again.id == held.id
    assert again.messages == held.messages
    assert (held.attempt, again.attempt) == (1, 2)
    assert held.reason is ReadyReason.QUIET
    assert again.reason is ReadyReason.LEASE_EXPIRED
    assert again.ready_at == pytest.approx(held.lease_expires_at, abs=1e-3)
    assert again.token != held.token


def test_old_holder_is_fenced_once_its_lease_ran_out_even_before_a_reclaim(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = batcher.claim()
    clock.advance(0.5)

    def holder_calls() -> tuple[Any, ...]:
        return (
            batcher.ack(held),
            batcher.nack(held, 0),
            batcher.extend(held),
            batcher.owns(held),
            batcher.release(held),
        )

    expired = holder_calls()
    (again,) = batcher.claim()
    reclaimed = holder_calls()
    new_holder_acks = batcher.ack(again)
    after_ack = holder_calls()

    assert expired == reclaimed == after_ack == (False, "lost", False, False, False)
    assert again.attempt == 2
    assert new_holder_acks is True


def test_extend_pushes_the_lease_and_owns_follows_it(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = batcher.claim()
    claimed = clock.now

    clock.advance(0.4)
    extended = batcher.extend(held)
    clock.advance(0.4)
    owns_past_first_lease = batcher.owns(held)
    stolen = batcher.claim()
    lease_end = batcher.inspect(ALICE).lease_expires_at
    clock.advance(0.1)
    owns_at_new_end = batcher.owns(held)
    (again,) = batcher.claim()

    assert extended is True
    assert owns_past_first_lease is True
    assert stolen == []
    assert lease_end == pytest.approx(claimed + 0.9, abs=1e-3)
    assert owns_at_new_end is False
    assert again.attempt == 2


def test_extend_takes_a_lease_length_and_extend_many_reports_each(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push_many([(ALICE, 1), (BOB, 2)])
    clock.advance(0.2)
    batches = by_conversation(batcher.claim())
    clock.advance(0.3)
    batcher.extend(batches[ALICE], 5.0)
    clock.advance(0.3)

    renewed = batcher.extend_many([batches[ALICE], batches[BOB]])

    assert renewed == [True, False]
    assert batcher.inspect(ALICE).lease_expires_at == pytest.approx(
        clock.now + 0.5, abs=1e-3
    )


def test_owns_is_false_after_ack(make_batcher: MakeBatcher, clock: FakeClock):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = batcher.claim()

    before = batcher.owns(held)
    batcher.ack(held)
    after = batcher.owns(held)

    assert (before, after) == (True, False)
    assert batcher.ack(held) is False


# -- nack --------------------------------------------------------------------------


def test_nack_with_delay_keeps_the_batch_until_the_delay_has_passed(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push_many([(ALICE, 1), (ALICE, 2)])
    clock.advance(0.2)
    (held,) = batcher.claim()

    outcome = batcher.nack(held, delay=1.0, error="TimeoutError: model took too long")
    state = batcher.inspect(ALICE)
    clock.advance(0.999)
    early = batcher.claim()
    clock.advance(0.001)
    (again,) = batcher.claim()

    assert outcome == "retry"
    assert state.last_error == "TimeoutError: model took too long"
    assert state.in_flight is False
    assert early == []
    assert (again.id, again.messages) == (held.id, (1, 2))
    assert again.reason is ReadyReason.RETRY
    assert again.attempt == 2


def test_nack_without_delay_uses_the_policy_backoff_capped_at_its_max(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(
        clock=clock, max_attempts=10, retry_backoff=0.05, retry_backoff_max=0.12
    )
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    nominal = [0.05, 0.1, 0.12, 0.12, 0.12, 0.12]
    delays, attempts = [], []

    for _ in nominal:
        (held,) = batcher.claim()
        attempts.append(held.attempt)
        batcher.nack(held)
        ready_at = batcher.inspect(ALICE).ready_at or math.nan
        delays.append(ready_at - clock.now)
        clock.advance(delays[-1] + 0.001)

    assert attempts == [1, 2, 3, 4, 5, 6]
    for delay, expected in zip(delays, nominal, strict=True):
        assert 0.5 * expected - 0.001 <= delay <= expected + 0.001


def test_release_gives_a_batch_back_without_spending_an_attempt(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = batcher.claim()

    released = batcher.release(held)
    (again,) = batcher.claim()

    assert released is True
    assert again.attempt == 1
    assert again.id == held.id


# -- flush ---------------------------------------------------------------------


def test_flush_makes_the_open_batch_ready_now(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    batcher.push(ALICE, 2)

    flushed = batcher.flush(ALICE)
    after = batcher.push(ALICE, 3)
    (batch,) = batcher.claim()

    assert flushed == 2
    assert batch.reason is ReadyReason.FLUSH
    assert batch.messages == (1, 2)
    assert batch.ready_at == pytest.approx(clock.now, abs=1e-3)
    assert after.batch_id != batch.id


def test_flush_with_nothing_open_returns_zero(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    batcher.flush(ALICE)

    twice = batcher.flush(ALICE)
    unknown = batcher.flush("15559999999")

    assert (twice, unknown) == (0, 0)


def test_flush_while_a_batch_is_in_flight_seals_the_open_one_for_after_the_ack(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    clock.advance(0.2)
    (first,) = batcher.claim()
    batcher.push(ALICE, 2)
    batcher.push(ALICE, 3)

    flushed = batcher.flush(ALICE)
    during = batcher.claim()
    joined_later = batcher.push(ALICE, 4)
    batcher.ack(first)
    (sealed,) = batcher.claim()

    assert flushed == 2
    assert during == []
    assert sealed.messages == (2, 3)
    assert sealed.reason is ReadyReason.FLUSH
    assert joined_later.batch_id != sealed.id


# -- stats and inspect ---------------------------------------------------------------


def test_stats_count_what_happened(make_batcher: MakeBatcher, clock: FakeClock):
    batcher = make_batcher(clock=clock)
    batcher.push_many([(ALICE, 1), (ALICE, 2), (ALICE, 2, "w"), (ALICE, 9, "w")])
    batcher.push(BOB, "fails")
    batcher.push(CAROL, "slow")
    for conversation in (ALICE, BOB, CAROL):
        batcher.flush(conversation)
    batches = by_conversation(batcher.claim())
    batcher.ack(batches[ALICE])
    held = batches[BOB]
    while batcher.nack(held, 0, error="boom") == "retry":
        (held,) = batcher.claim()

    stats = batcher.stats()

    assert (stats.pending, stats.in_flight, stats.dead) == (0, 1, 1)
    assert stats.stored_messages == 1
    assert (stats.pushed, stats.duplicates) == (5, 1)
    assert (stats.claimed, stats.acked, stats.retried) == (5, 1, 2)
    assert stats.dead_lettered == 1
    assert stats.overdue == 0
    assert stats.oldest_overdue is None
    assert stats.ready_reasons["flush"] == 3
    assert stats.ready_reasons["retry"] == 2
    assert sum(stats.ready_reasons.values()) == stats.claimed


def test_stats_count_pending_and_overdue_batches(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    clock.advance(0.03)
    batcher.push(BOB, 1)
    clock.advance(0.05)
    batcher.push(CAROL, 1)
    waiting = batcher.stats()
    clock.advance(0.07)

    late = batcher.stats()

    assert (waiting.pending, waiting.overdue, waiting.oldest_overdue) == (3, 0, None)
    assert (late.pending, late.in_flight, late.stored_messages) == (3, 0, 3)
    assert late.overdue == 2
    assert late.oldest_overdue == pytest.approx(0.05, abs=1e-3)


def test_inspect_shows_the_conversations_batches_lease_and_error(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    batcher.push(ALICE, 2)
    opened = batcher.inspect(ALICE)
    clock.advance(0.2)
    (held,) = batcher.claim()
    batcher.push(ALICE, 3)

    busy = batcher.inspect(ALICE)
    batcher.nack(held, 5.0, error="ValueError: bad reply")
    failed = batcher.inspect(ALICE)
    unknown = batcher.inspect("15559999999")

    (view,) = opened.batches
    assert (view.id, view.size, view.open, view.attempt) == (held.id, 2, True, 0)
    assert view.reason == "quiet"
    assert opened.ready_at == pytest.approx(view.last_push_at + 0.1, abs=1e-3)
    assert (opened.stored_messages, opened.in_flight) == (2, False)
    assert [(v.size, v.open, v.attempt) for v in busy.batches] == [
        (2, False, 1),
        (1, True, 0),
    ]
    assert busy.in_flight is True
    assert busy.lease_expires_at == pytest.approx(held.lease_expires_at, abs=1e-3)
    assert busy.ready_at is None
    assert busy.stored_messages == 3
    assert failed.last_error == "ValueError: bad reply"
    assert failed.batches[0].reason == "retry"
    assert failed.ready_at == pytest.approx(clock.now + 5.0, abs=1e-3)
    assert unknown.batches == ()
    assert (unknown.stored_messages, unknown.in_flight) == (0, False)
    assert busy.shard == 0


# -- bad input ---------------------------------------------------------------------


def _handler(batch: Batch) -> None:
    """A drain handler that is never called."""


BAD_CALLS: list[tuple[str, Callable[[Batcher], Any], type[Exception], list[str]]] = [
    (
        "empty conversation",
        lambda b: b.push("", "hi"),
        InvalidArgumentError,
        ["conversation", "''"],
    ),
    (
        "int conversation",
        lambda b: b.push(15550000001, "hi"),
        ArgumentTypeError,
        ["conversation", "int", "15550000001"],
    ),
    (
        "None conversation",
        lambda b: b.push(None, "hi"),
        ArgumentTypeError,
        ["conversation", "NoneType"],
    ),
    (
        "bytes conversation",
        lambda b: b.push(b"1555", "hi"),
        ArgumentTypeError,
        ["conversation", "bytes"],
    ),
    (
        "long conversation",
        lambda b: b.push("9" * 513, "hi"),
        InvalidArgumentError,
        ["conversation", "513 bytes"],
    ),
    (
        "surrogate conversation",
        lambda b: b.push("\ud800", "hi"),
        InvalidArgumentError,
        ["conversation", "Unicode"],
    ),
    (
        "set message",
        lambda b: b.push(ALICE, {1, 2}),
        ArgumentTypeError,
        ["message", "set"],
    ),
    (
        "object message",
        lambda b: b.push(ALICE, object()),
        ArgumentTypeError,
        ["message", "object"],
    ),
    (
        "NaN message",
        lambda b: b.push(ALICE, {"x": math.nan}),
        ArgumentTypeError,
        ["message", "float"],
    ),
    (
        "big message",
        lambda b: b.push(ALICE, "x" * 99),
        InvalidArgumentError,
        ["message", "101 bytes", "max_message_bytes (100)"],
    ),
    (
        "int dedupe id",
        lambda b: b.push(ALICE, "hi", dedupe_id=7),
        ArgumentTypeError,
        ["dedupe_id", "int", "7"],
    ),
    (
        "empty dedupe id",
        lambda b: b.push(ALICE, "hi", dedupe_id=""),
        InvalidArgumentError,
        ["dedupe_id", "''"],
    ),
    (
        "long dedupe id",
        lambda b: b.push(ALICE, "hi", dedupe_id="w" * 257),
        InvalidArgumentError,
        ["dedupe_id", "257 bytes"],
    ),
    ("limit 0", lambda b: b.claim(limit=0), InvalidArgumentError, ["limit", "0"]),
    (
        "limit True",
        lambda b: b.claim(limit=True),
        InvalidArgumentError,
        ["limit", "True"],
    ),
    ("limit 2.0", lambda b: b.claim(limit=2.0), InvalidArgumentError, ["limit", "2.0"]),
    (
        "dead letters limit",
        lambda b: b.dead_letters(limit=-1),
        InvalidArgumentError,
        ["limit", "-1"],
    ),
    ("flush empty", lambda b: b.flush(""), InvalidArgumentError, ["conversation"]),
    ("inspect int", lambda b: b.inspect(5), ArgumentTypeError, ["conversation", "5"]),
    ("ack a string", lambda b: b.ack("1-0-1"), ArgumentTypeError, ["batch", "str"]),
    ("nack a dict", lambda b: b.nack({}), ArgumentTypeError, ["batch", "dict"]),
    ("owns None", lambda b: b.owns(None), ArgumentTypeError, ["batch", "NoneType"]),
    (
        "dead letter bad id",
        lambda b: b.dead_letter("nope"),
        InvalidArgumentError,
        ["'nope'"],
    ),
    ("purge an int", lambda b: b.purge(5), ArgumentTypeError, ["dead", "int"]),
    ("requeue None", lambda b: b.requeue(None), ArgumentTypeError, ["dead"]),
    (
        "concurrency 0",
        lambda b: b.drain(_handler, concurrency=0),
        InvalidArgumentError,
        ["concurrency", "0"],
    ),
    (
        "push_many a list",
        lambda b: b.push_many([[ALICE, 1]]),
        ArgumentTypeError,
        ["items[0]"],
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [case[1:] for case in BAD_CALLS],
    ids=[case[0] for case in BAD_CALLS],
)
def test_bad_input_raises_a_clear_error_and_stores_nothing(
    make_batcher: MakeBatcher,
    clock: FakeClock,
    raw: redis.Redis,
    config: RedisConfig,
    call: Callable[[Batcher], Any],
    error: type[Exception],
    named: list[str],
):
    batcher = make_batcher(clock=clock, max_message_bytes=100)

    with pytest.raises(error) as info:
        call(batcher)

    assert [n for n in named if n not in str(info.value)] == []
    assert namespace_keys(raw, config) == []


def test_values_exactly_at_the_limits_are_accepted(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock, max_message_bytes=100)
    longest = "7" * 512

    message = batcher.push(ALICE, "x" * 98)
    conversation = batcher.push(longest, "hi")
    dedupe = batcher.push(BOB, "hi", dedupe_id="w" * 256)
    clock.advance(0.2)
    claimed = by_conversation(batcher.claim())

    assert (message.size, conversation.size, dedupe.size) == (1, 1, 1)
    assert claimed[ALICE].messages == ("x" * 98,)
    assert claimed[longest].messages == ("hi",)


def test_errors_about_a_message_never_quote_its_body(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock, max_message_bytes=100)

    with pytest.raises(ArgumentTypeError) as unencodable:
        batcher.push(ALICE, {"text": "my card is 4111-1111", "tags": {"x"}})
    with pytest.raises(InvalidArgumentError) as too_big:
        batcher.push(ALICE, {"text": "my card is 4111-1111" * 10})

    assert "4111" not in str(unencodable.value)
    assert "4111" not in str(too_big.value)


BAD_DURATIONS: list[tuple[str, Callable[[Batcher, Batch], Any]]] = [
    ("nack delay", lambda b, batch: b.nack(batch, delay=-1)),
    ("release delay", lambda b, batch: b.release(batch, delay=math.nan)),
    ("extend seconds", lambda b, batch: b.extend(batch, 0)),
    ("extend_many seconds", lambda b, batch: b.extend_many([batch], -5)),
    ("drain grace", lambda b, batch: b.drain(_handler, grace=-1)),
]


@pytest.mark.parametrize(
    "call", [c[1] for c in BAD_DURATIONS], ids=[c[0] for c in BAD_DURATIONS]
)
def test_bad_duration_argument_is_an_invalid_argument(
    make_batcher: MakeBatcher, clock: FakeClock, call: Callable[[Batcher, Batch], Any]
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    (held,) = batcher.claim()

    with pytest.raises(InvalidArgumentError):
        call(batcher, held)


def test_bad_duration_argument_changes_nothing(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    batcher.flush(ALICE)
    (held,) = batcher.claim()

    for _, call in BAD_DURATIONS:
        with pytest.raises(ValueError, match=r"delay|seconds|grace"):
            call(batcher, held)

    assert batcher.owns(held) is True
    assert batcher.inspect(ALICE).lease_expires_at == pytest.approx(
        held.lease_expires_at, abs=1e-3
    )


# -- scripts, clocks, TTLs ---------------------------------------------------------


def test_scripts_are_reloaded_after_script_flush(
    make_batcher: MakeBatcher,
    clock: FakeClock,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    raw.script_flush()
    gone = raw.script_exists(script("push").sha)

    with caplog.at_level(logging.INFO, logger="rapidfire.redis"):
        single = batcher.push(ALICE, 2)
        raw.script_flush()
        many = batcher.push_many([(ALICE, 3), (BOB, 4)])
        raw.script_flush()
        flushed = batcher.flush(ALICE)
        clock.advance(0.2)
        raw.script_flush()
        batches = by_conversation(batcher.claim())
        raw.script_flush()
        acked = batcher.ack(batches[ALICE])
        raw.script_flush()
        nacked = batcher.nack(batches[BOB], 0)
    reloads = [r for r in caplog.records if "NOSCRIPT" in r.getMessage()]

    assert gone == [False]
    assert single.size == 2
    assert [r.size for r in many] == [3, 1]
    assert flushed == 3
    assert batches[ALICE].messages == (1, 2, 3)
    assert (acked, nacked) == (True, "retry")
    # Only push ran before a flush; flush, claim, ack and nack were first
    # loads, which are routine and not reported as NOSCRIPT reloads.
    assert {r.args[0] for r in reloads} == {"push"}


def test_readiness_follows_the_server_clock_not_the_local_one(
    real_config: RedisConfig, monkeypatch: pytest.MonkeyPatch
):
    batcher = Batcher(real_config, BatchPolicy(**FAST))
    raw = raw_client(real_config)
    real_time = time.time
    try:
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
        receipt = batcher.push(ALICE, "hi")
        seconds, micros = raw.time()
        immediately = batcher.claim()
        deadline = time.monotonic() + 5.0
        claimed: list[Batch] = []
        while not claimed and time.monotonic() < deadline:
            time.sleep(0.02)
            claimed = batcher.claim()
    finally:
        batcher.close()
        raw.close()
    server_now = seconds + micros / 1e6

    assert abs(receipt.server_time - server_now) < 5.0
    assert abs(receipt.server_time - time.time()) > 3000.0
    assert receipt.ready_in == pytest.approx(0.1, abs=1e-3)
    assert immediately == []
    assert [b.messages for b in claimed] == [("hi",)]
    assert claimed[0].claimed_at >= receipt.ready_at


def test_every_key_of_the_namespace_has_a_ttl(
    make_batcher: MakeBatcher, clock: FakeClock, raw: redis.Redis, config: RedisConfig
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1, dedupe_id="wamid.a1")
    batcher.push_many([(BOB, 1), (CAROL, 1), (DAVE, 1)])
    clock.advance(0.2)
    batches = by_conversation(batcher.claim())
    batcher.ack(batches[ALICE])
    batcher.nack(batches[BOB], 1.0, error="boom")
    held = batches[CAROL]
    while batcher.nack(held, 0, error="boom") == "retry":
        (held,) = batcher.claim()
    batcher.push(DAVE, 2)
    batcher.push("15550000005", 1)

    during = {k: raw.pttl(k) for k in namespace_keys(raw, config)}
    (dead,) = [d for d in [batcher.dead_letter(held.id)] if d is not None]
    batcher.requeue(dead)
    clock.advance(1.0)
    for batch in batcher.claim():
        batcher.ack(batch)
    after = {k: raw.pttl(k) for k in namespace_keys(raw, config)}

    assert {key_kind(k) for k in during} >= {
        "m",
        "b",
        "d",
        "ready",
        "leased",
        "stats",
        "dead",
        "dl",
        "dm",
    }
    assert {k: ttl for k, ttl in during.items() if ttl <= 0} == {}
    assert after
    assert {k: ttl for k, ttl in after.items() if ttl <= 0} == {}


def test_a_ttl_too_short_for_the_retries_is_refused(make_batcher: MakeBatcher):
    with pytest.raises(ConfigurationError, match=r"ttl \(2 s\) is too short"):
        make_batcher(ttl=2.0)


def test_work_whose_keys_expired_is_counted_and_logged_without_the_id(
    make_batcher: MakeBatcher,
    clock: FakeClock,
    raw: redis.Redis,
    config: RedisConfig,
    caplog: pytest.LogCaptureFixture,
):
    conversation = "447700900123"
    batcher = make_batcher(clock=clock)
    batcher.push(conversation, 1)
    batcher.push(conversation, 2)
    expired = [
        k for k in namespace_keys(raw, config) if k.endswith(f":m:{conversation}")
    ]
    raw.delete(*expired)  # the messages expire first; the batch records outlive them
    clock.advance(0.2)

    # Keys that are missing may still be on their way in a slot migration:
    # the first claim to find them gone only notes it and looks again later.
    first_look = batcher.claim()
    still_counted = batcher.stats()
    clock.advance(61.0)
    with caplog.at_level(logging.WARNING, logger="rapidfire"):
        claimed = batcher.claim()
    stats = batcher.stats()
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "expired" in r.getMessage()
    ]

    assert len(expired) == 1
    assert first_look == []
    assert (still_counted.pending, still_counted.expired_batches) == (1, 0)
    assert claimed == []
    assert (stats.expired_batches, stats.expired_messages) == (1, 2)
    assert (stats.pending, stats.stored_messages) == (0, 0)
    assert len(warnings) == 1
    assert "expired" in warnings[0].getMessage()
    assert conversation not in caplog.text


def test_a_push_after_the_messages_expired_starts_a_new_batch(
    make_batcher: MakeBatcher, clock: FakeClock, raw: redis.Redis, config: RedisConfig
):
    """The records outlive the messages by a ttl; a push in that time must not
    file its message under a batch whose messages are gone."""
    conversation = "447700900125"
    batcher = make_batcher(clock=clock, max_size=2)
    first = batcher.push(conversation, 1)
    batcher.push(conversation, 2)  # the batch is full: ready
    (messages,) = [
        k for k in namespace_keys(raw, config) if k.endswith(f":m:{conversation}")
    ]
    raw.delete(messages)  # expired: workers were away for twice the ttl
    again = batcher.push(conversation, 3)
    clock.advance(0.2)
    (batch,) = batcher.claim()
    assert batcher.ack(batch)
    stats = batcher.stats()

    assert again.batch_id != first.batch_id
    assert batch.id == again.batch_id
    assert batch.messages == (3,)
    assert (stats.expired_batches, stats.expired_messages) == (1, 2)
    assert (stats.pending, stats.in_flight, stats.stored_messages) == (0, 0, 0)


def test_keys_that_are_missing_for_a_moment_are_not_written_off(
    make_batcher: MakeBatcher, clock: FakeClock, raw: redis.Redis, config: RedisConfig
):
    """As on the importing node of a slot migration, before the keys arrive."""
    conversation = "447700900124"
    batcher = make_batcher(clock=clock)
    batcher.push(conversation, 1)
    batcher.push(conversation, 2)
    moved = {
        k: raw.dump(k)
        for k in namespace_keys(raw, config)
        if k.endswith((f":m:{conversation}", f":b:{conversation}"))
    }
    raw.delete(*moved)
    clock.advance(0.2)

    while_away = batcher.claim()
    for key, value in moved.items():  # the migration brings them in
        raw.restore(key, 0, value)
    clock.advance(5.1)
    (batch,) = batcher.claim()

    assert len(moved) == 2
    assert while_away == []
    assert batch.messages == (1, 2)
    assert batcher.ack(batch)
    assert batcher.stats().expired_batches == 0


# -- layout and shards ---------------------------------------------------------------


@pytest.fixture
def uptime(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Make the batchers' monotonic clock read as if the host booted ``s`` ago."""

    def set_uptime(seconds: float) -> None:
        origin = time.monotonic()
        fake = types.SimpleNamespace(
            monotonic=lambda: seconds + (time.monotonic() - origin),
            perf_counter=time.perf_counter,
        )
        monkeypatch.setattr(batcher_module, "time", fake)

    return set_uptime


def test_a_batcher_with_other_shards_on_the_namespace_is_refused(
    config: RedisConfig, make_batcher: MakeBatcher, uptime: Callable[[float], None]
):
    uptime(86400.0)
    make_batcher().push(ALICE, 1)
    other = Batcher(dataclasses.replace(config, shards=2))

    try:
        with pytest.raises(LayoutMismatchError) as info:
            other.push(BOB, 1)
    finally:
        other.close()

    assert isinstance(info.value, ConfigurationError)
    assert repr(config.namespace) in str(info.value)
    assert '"shards": 1' in str(info.value)
    assert '"shards": 2' in str(info.value)
    assert "same shards setting (RAPIDFIRE_SHARDS=1)" in str(info.value)


def test_a_namespace_of_an_older_key_format_is_refused_not_misread(
    config: RedisConfig, make_batcher: MakeBatcher, raw: redis.Redis
):
    batcher = make_batcher()
    raw.set(batcher.protocol.layout.layout_key, '{"format": 1, "shards": 1}')

    with pytest.raises(LayoutMismatchError, match="another version of rapidfire"):
        batcher.push(ALICE, 1)
    assert namespace_keys(raw, config) == [batcher.protocol.layout.layout_key]


def test_the_layout_is_checked_soon_after_boot(
    config: RedisConfig, make_batcher: MakeBatcher, uptime: Callable[[float], None]
):
    uptime(120.0)
    make_batcher().push(ALICE, 1)
    other = Batcher(dataclasses.replace(config, shards=2))

    try:
        with pytest.raises(LayoutMismatchError):
            other.push(BOB, 1)
    finally:
        other.close()


def test_several_shards_work_end_to_end(config: RedisConfig, clock: FakeClock):
    sharded = dataclasses.replace(config, shards=4)
    batcher = Batcher(sharded, BatchPolicy(**FAST), clock=clock)
    conversations = [f"1555300{i:04d}" for i in range(24)]
    try:
        receipts = batcher.push_many(
            [(c, {"n": i}) for i, c in enumerate(conversations)]
        )
        shards = {batcher.inspect(c).shard for c in conversations}
        clock.advance(0.2)
        first = batcher.claim(limit=10)
        rest = batcher.claim(limit=100)
        acked = [batcher.ack(b) for b in first + rest]
        stats = batcher.stats()
    finally:
        batcher.close()

    assert shards == {0, 1, 2, 3}
    assert len({r.batch_id for r in receipts}) == 24
    assert len(first) == 10
    assert sorted(b.conversation for b in first + rest) == sorted(conversations)
    assert {b.shard for b in first + rest} == shards
    assert all(acked)
    assert (stats.acked, stats.stored_messages, stats.pending) == (24, 0, 0)


def test_a_closed_batcher_reconnects_when_used_again(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    with batcher:
        batcher.push(ALICE, 1)

    again = batcher.push(ALICE, 2)

    assert again.size == 2
    assert batcher.ping() >= 0.0


class TextCodec:
    """Plain UTF-8 text, for showing that the codec is pluggable."""

    def encode(self, message: Any) -> bytes:
        if not isinstance(message, str):
            raise TypeError(f"TextCodec takes str, got {type(message).__name__}")
        return message.encode("utf-8")

    def decode(self, data: bytes) -> Any:
        return data.decode("utf-8")


class BrokenCodec(TextCodec):
    def encode(self, message: Any) -> bytes:
        return message  # type: ignore[no-any-return]


def test_a_custom_codec_round_trips_and_its_refusals_store_nothing(
    config: RedisConfig, clock: FakeClock, raw: redis.Redis
):
    batcher = Batcher(config, BatchPolicy(**FAST), codec=TextCodec(), clock=clock)
    broken = Batcher(config, BatchPolicy(**FAST), codec=BrokenCodec(), clock=clock)
    try:
        with pytest.raises(ArgumentTypeError, match="TextCodec takes str"):
            batcher.push(ALICE, {"not": "text"})
        with pytest.raises(ArgumentTypeError, match="returned str, not bytes"):
            broken.push(ALICE, "text")
        refused = namespace_keys(raw, config)
        batcher.push(ALICE, "héllo")
        batcher.push(ALICE, "wörld")
        batcher.flush(ALICE)
        (batch,) = batcher.claim()
    finally:
        batcher.close()
        broken.close()

    assert refused == []
    assert batch.messages == ("héllo", "wörld")


@pytest.mark.parametrize(
    "conversation", ["user:{tag}|x", "wa_id 447700900123 ✓", "}{", "a" * 511]
)
def test_unusual_conversation_ids_keep_their_batches_apart(
    make_batcher: MakeBatcher, clock: FakeClock, conversation: str
):
    batcher = make_batcher(clock=clock)
    batcher.push(conversation, "theirs")
    batcher.push(conversation + "2", "other")
    clock.advance(0.2)

    batches = by_conversation(batcher.claim())

    assert batches[conversation].messages == ("theirs",)
    assert batches[conversation + "2"].messages == ("other",)
    assert batcher.inspect(conversation).stored_messages == 1


def test_strict_ack_and_extend_raise_lease_lost(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, 1)
    batcher.flush(ALICE)
    (batch,) = batcher.claim()
    clock.advance(1.0)  # past the lease

    with pytest.raises(LeaseLostError, match=batch.id):
        batcher.extend(batch, strict=True)
    with pytest.raises(LeaseLostError, match=batch.id):
        batcher.ack(batch, strict=True)
    (again,) = batcher.claim()
    assert batcher.ack(again, strict=True) is True
