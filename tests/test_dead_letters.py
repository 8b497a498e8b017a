"""Dead letters: how batches get there, and requeue, purge and listing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rapidfire import (
    Batch,
    Batcher,
    DeadLetter,
    InvalidArgumentError,
    ReadyReason,
    RedisConfig,
)

from .conftest import FakeClock, raw_client

ALICE = "15550000001"
BOB = "15550000002"
CAROL = "15550000003"
MakeBatcher = Callable[..., Batcher]


def claim_one(batcher: Batcher, conversation: str) -> Batch:
    (batch,) = [b for b in batcher.claim() if b.conversation == conversation]
    return batch


def kill(batcher: Batcher, conversation: str, error: str = "boom") -> DeadLetter:
    """Nack the conversation's head batch until it is a dead letter."""
    batch = claim_one(batcher, conversation)
    while batcher.nack(batch, 0, error=f"{error} {batch.attempt}") == "retry":
        batch = claim_one(batcher, conversation)
    letter = batcher.dead_letter(batch.id)
    assert letter is not None
    return letter


def test_batch_nacked_max_attempts_times_is_a_dead_letter_with_its_messages(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    first = batcher.push(ALICE, {"text": "hi"})
    batcher.push(ALICE, {"text": "order 42?"})
    batcher.flush(ALICE)
    outcomes, attempts = [], []

    for _ in range(3):
        (batch,) = batcher.claim()
        attempts.append(batch.attempt)
        outcomes.append(
            batcher.nack(batch, 0, error=f"RuntimeError: try {batch.attempt}")
        )
        clock.advance(0.01)
    letter = batcher.dead_letter(batch.id)
    state = batcher.inspect(ALICE)

    assert attempts == [1, 2, 3]
    assert outcomes == ["retry", "retry", "dead"]
    assert letter is not None
    assert (letter.id, letter.conversation) == (batch.id, ALICE)
    assert letter.messages == ({"text": "hi"}, {"text": "order 42?"})
    assert letter.attempts == 3
    assert letter.error == "RuntimeError: try 3"
    assert letter.first_push_at == pytest.approx(first.server_time, abs=1e-3)
    assert letter.dead_at == pytest.approx(clock.now - 0.01, abs=1e-3)
    assert batcher.claim() == []
    assert (state.batches, state.stored_messages) == ((), 0)


def test_lease_running_out_max_attempts_times_makes_a_dead_letter(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    attempts = []

    for _ in range(3):
        (batch,) = batcher.claim()
        attempts.append(batch.attempt)
        clock.advance(0.5)
    last_claim = batcher.claim()
    letter = batcher.dead_letter(batch.id)

    assert attempts == [1, 2, 3]
    assert last_claim == []
    assert letter is not None
    assert (letter.attempts, letter.error, letter.messages) == (
        3,
        "lease expired",
        ("hi",),
    )
    assert batcher.stats().dead_lettered == 1


def test_lease_expiry_dead_letter_keeps_the_last_handler_error(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (batch,) = batcher.claim()
    batcher.nack(batch, 0, error="ValueError: bad json from model")
    for _ in range(2):
        (batch,) = batcher.claim()
        clock.advance(0.5)

    batcher.claim()
    letter = batcher.dead_letter(batch.id)

    assert letter is not None
    assert letter.error == "ValueError: bad json from model"


def test_dead_letters_lists_oldest_first(make_batcher: MakeBatcher, clock: FakeClock):
    batcher = make_batcher(clock=clock)
    order = []
    for conversation in (BOB, CAROL, ALICE):
        batcher.push(conversation, conversation[-1])
        batcher.flush(conversation)
        order.append(kill(batcher, conversation).id)
        clock.advance(1.0)

    letters = batcher.dead_letters()
    first_two = batcher.dead_letters(limit=2)

    assert [d.id for d in letters] == order
    assert [d.conversation for d in letters] == [BOB, CAROL, ALICE]
    assert [d.id for d in first_two] == order[:2]
    assert letters[0].dead_at < letters[1].dead_at < letters[2].dead_at


def test_dead_letter_of_an_unknown_id_is_none_and_a_foreign_id_is_refused(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)

    unknown = batcher.dead_letter("1800000000000-0-99")

    assert unknown is None
    with pytest.raises(InvalidArgumentError, match="not a batch id"):
        batcher.dead_letter("1800000000000-7-1")
    assert batcher.requeue("1800000000000-0-99") == 0


def test_requeue_brings_the_batch_back_ready_now_with_attempts_reset(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push_many([(ALICE, 1), (ALICE, 2)])
    clock.advance(0.2)
    letter = kill(batcher, ALICE)
    clock.advance(5.0)

    count = batcher.requeue(letter.id)
    (batch,) = batcher.claim()
    gone = batcher.dead_letter(letter.id)
    batcher.ack(batch)
    stats = batcher.stats()

    assert count == 2
    assert (batch.id, batch.messages) == (letter.id, (1, 2))
    assert batch.reason is ReadyReason.REQUEUED
    assert batch.attempt == 1
    assert batch.ready_at == pytest.approx(clock.now, abs=1e-3)
    assert gone is None
    assert (stats.dead, stats.requeued, stats.stored_messages) == (0, 1, 0)


def test_requeue_goes_before_the_conversations_waiting_batches(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "old")
    clock.advance(0.2)
    held = claim_one(batcher, ALICE)
    batcher.push(ALICE, "new")
    batcher.flush(ALICE)
    while batcher.nack(held, 0, error="boom") == "retry":
        held = claim_one(batcher, ALICE)

    requeued = batcher.requeue(held.id)
    (first,) = batcher.claim()
    batcher.ack(first)
    (second,) = batcher.claim()

    assert requeued == 1
    assert (first.messages, first.reason) == (("old",), ReadyReason.REQUEUED)
    assert (second.messages, second.reason) == (("new",), ReadyReason.FLUSH)


def test_requeue_waits_behind_a_batch_in_flight(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "old")
    clock.advance(0.2)
    letter = kill(batcher, ALICE)
    batcher.push(ALICE, "new")
    clock.advance(0.2)
    (in_flight,) = batcher.claim()

    count = batcher.requeue(letter)
    during = batcher.claim()
    owns = batcher.owns(in_flight)
    acked = batcher.ack(in_flight)
    (requeued,) = batcher.claim()

    assert in_flight.messages == ("new",)
    assert count == 1
    assert during == []
    assert (owns, acked) == (True, True)
    assert (requeued.id, requeued.messages) == (letter.id, ("old",))
    assert requeued.reason is ReadyReason.REQUEUED


def test_requeue_of_a_letter_already_requeued_returns_zero(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "hi")
    clock.advance(0.2)
    letter = kill(batcher, ALICE)

    first, second = batcher.requeue(letter), batcher.requeue(letter)

    assert (first, second) == (1, 0)
    assert batcher.inspect(ALICE).stored_messages == 1


def test_purge_deletes_a_dead_letter_for_good(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "a")
    batcher.flush(ALICE)
    letter = kill(batcher, ALICE)
    batcher.push(BOB, "b")
    batcher.flush(BOB)
    other = kill(batcher, BOB)

    purged = batcher.purge(letter)
    again = batcher.purge(letter.id)
    remaining = batcher.dead_letters()

    assert (purged, again) == (True, False)
    assert batcher.dead_letter(letter.id) is None
    assert [d.id for d in remaining] == [other.id]
    assert batcher.stats().dead == 1
    assert batcher.requeue(letter) == 0


def test_the_next_batch_is_claimable_once_the_head_is_dead_lettered(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "first")
    clock.advance(0.2)
    held = claim_one(batcher, ALICE)
    batcher.push(ALICE, "second")
    batcher.flush(ALICE)

    outcomes = []
    for _ in range(3):
        outcomes.append(batcher.nack(held, 0))
        if outcomes[-1] == "retry":
            held = claim_one(batcher, ALICE)
    (after,) = batcher.claim()

    assert outcomes == ["retry", "retry", "dead"]
    assert after.messages == ("second",)
    assert after.attempt == 1


def test_lease_expiry_dead_letter_frees_the_next_batch_in_the_same_claim(
    make_batcher: MakeBatcher, clock: FakeClock
):
    batcher = make_batcher(clock=clock)
    batcher.push(ALICE, "first")
    clock.advance(0.2)
    for _ in range(3):
        held = claim_one(batcher, ALICE)
        if held.attempt == 1:
            batcher.push(ALICE, "second")
        clock.advance(0.5)

    (after,) = batcher.claim()

    assert after.messages == ("second",)
    assert batcher.dead_letter(held.id) is not None


def test_an_expired_dead_letter_is_neither_counted_nor_listed(
    make_batcher: MakeBatcher, clock: FakeClock, config: RedisConfig
):
    batcher = make_batcher(clock=clock, dead_letter_ttl=2.0)
    batcher.push(ALICE, "a")
    batcher.flush(ALICE)
    old = kill(batcher, ALICE)
    clock.advance(1.5)
    batcher.push(BOB, "b")
    batcher.flush(BOB)
    new = kill(batcher, BOB)
    clock.advance(1.0)  # past the older letter's dead_letter_ttl, not the newer's
    raw = raw_client(config)
    try:  # what dead_letter_ttl does to the older letter's own keys
        raw.delete(*batcher.protocol.layout.shard(0).dead_letter(old.id))
    finally:
        raw.close()

    listed = batcher.dead_letters(limit=1)
    stats = batcher.stats()

    assert batcher.dead_letter(old.id) is None
    assert [d.id for d in listed] == [new.id]
    assert stats.dead == 1
