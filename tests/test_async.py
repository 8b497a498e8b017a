"""The core rules through AsyncBatcher, on asyncio, and its drain loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis

from rapidfire import (
    ArgumentTypeError,
    AsyncBatcher,
    Batch,
    BatchPolicy,
    InvalidArgumentError,
    ReadyReason,
    RedisConfig,
)

from .conftest import FAST, FakeClock, raw_client

pytestmark = pytest.mark.anyio

ALICE = "15550000001"
BOB = "15550000002"
CAROL = "15550000003"
MakeAsync = Callable[..., AsyncBatcher]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_async(config: RedisConfig) -> AsyncIterator[MakeAsync]:
    """Build AsyncBatchers on the test's config; keywords override FAST."""
    made: list[AsyncBatcher] = []

    def factory(clock: Any = None, **policy: Any) -> AsyncBatcher:
        batcher = AsyncBatcher(config, BatchPolicy(**{**FAST, **policy}), clock=clock)
        made.append(batcher)
        return batcher

    yield factory
    for batcher in made:
        await batcher.aclose()


@pytest.fixture
def raw(config: RedisConfig) -> Any:
    client = raw_client(config)
    yield client
    client.close()


def namespace_keys(raw: redis.Redis, config: RedisConfig) -> list[bytes]:
    return list(raw.scan_iter(match=f"{config.namespace}:*"))


# -- the core rules ------------------------------------------------------------


async def test_burst_is_one_batch_after_the_quiet_window(
    make_async: MakeAsync, clock: FakeClock
):
    batcher = make_async(clock=clock)
    receipts = []
    for text in ("hi", "hi", "still there?"):
        receipts.append(await batcher.push(ALICE, text, dedupe_id=f"w{len(receipts)}"))
        clock.advance(0.05)

    early = await batcher.claim()
    clock.advance(0.05)
    (batch,) = await batcher.claim()
    acked, again = await batcher.ack(batch), await batcher.ack(batch)
    stats = await batcher.stats()

    assert early == []
    assert batch.messages == ("hi", "hi", "still there?")
    assert batch.reason is ReadyReason.QUIET
    assert {r.batch_id for r in receipts} == {batch.id}
    assert [r.size for r in receipts] == [1, 2, 3]
    assert (acked, again) == (True, False)
    assert (stats.pushed, stats.acked, stats.stored_messages) == (3, 1, 0)


async def test_a_full_batch_is_ready_at_once(make_async: MakeAsync, clock: FakeClock):
    batcher = make_async(clock=clock)
    for i in range(5):
        await batcher.push(ALICE, i)

    claimed = await batcher.claim()

    assert [(b.messages, b.reason) for b in claimed] == [
        ((0, 1, 2, 3, 4), ReadyReason.MAX_SIZE)
    ]


async def test_a_batch_that_keeps_growing_is_ready_after_max_wait(
    make_async: MakeAsync, clock: FakeClock
):
    batcher = make_async(clock=clock, max_size=50)
    for i in range(5):
        await batcher.push(BOB, i)
        clock.advance(0.075)
    early = await batcher.claim()
    clock.advance(0.025)

    (batch,) = await batcher.claim()

    assert early == []
    assert batch.reason is ReadyReason.MAX_WAIT
    assert batch.messages == (0, 1, 2, 3, 4)


async def test_dedupe_id_is_a_duplicate_only_within_its_conversation(
    make_async: MakeAsync, clock: FakeClock
):
    batcher = make_async(clock=clock)

    first = await batcher.push(ALICE, "hi", dedupe_id="wamid.1")
    again = await batcher.push(ALICE, "hi", dedupe_id="wamid.1")
    other = await batcher.push(BOB, "hi", dedupe_id="wamid.1")

    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert (await batcher.inspect(ALICE)).stored_messages == 1


async def test_push_many_keeps_input_order_and_refuses_a_bad_item_whole(
    make_async: MakeAsync, clock: FakeClock, raw: redis.Redis, config: RedisConfig
):
    batcher = make_async(clock=clock)

    with pytest.raises(ArgumentTypeError, match=r"items\[1\] message"):
        await batcher.push_many([(ALICE, 1), (BOB, {1, 2}), (ALICE, 2)])
    nothing = namespace_keys(raw, config)
    receipts = await batcher.push_many([(ALICE, 1), (BOB, 2), (ALICE, 3)])
    clock.advance(0.2)
    claimed = {b.conversation: b.messages for b in await batcher.claim()}

    assert nothing == []
    assert [(r.conversation, r.size) for r in receipts] == [
        (ALICE, 1),
        (BOB, 1),
        (ALICE, 2),
    ]
    assert claimed == {ALICE: (1, 3), BOB: (2,)}


async def test_bad_input_raises_before_anything_is_sent(
    make_async: MakeAsync, clock: FakeClock, raw: redis.Redis, config: RedisConfig
):
    batcher = make_async(clock=clock)

    with pytest.raises(InvalidArgumentError, match="conversation must not be empty"):
        await batcher.push("", "hi")
    with pytest.raises(ArgumentTypeError, match="conversation must be a str, got int"):
        await batcher.push(1555, "hi")
    with pytest.raises(
        InvalidArgumentError, match="limit must be an integer >= 1, got 0"
    ):
        await batcher.claim(0)
    assert namespace_keys(raw, config) == []


async def test_one_batch_per_conversation_in_flight(
    make_async: MakeAsync, clock: FakeClock
):
    batcher = make_async(clock=clock)
    await batcher.push(ALICE, 1)
    clock.advance(0.2)
    (first,) = await batcher.claim()
    await batcher.push(ALICE, 2)
    clock.advance(0.2)

    during = await batcher.claim()
    await batcher.ack(first)
    (second,) = await batcher.claim()

    assert during == []
    assert second.messages == (2,)


async def test_two_async_batchers_never_claim_the_same_batch(
    make_async: MakeAsync, clock: FakeClock
):
    claimers = [make_async(clock=clock) for _ in range(2)]
    await claimers[0].push_many([(f"1555400{i:04d}", i) for i in range(20)])
    clock.advance(0.2)
    got: list[Batch] = []

    async def claim_all(batcher: AsyncBatcher) -> None:
        while batches := await batcher.claim(limit=3):
            got.extend(batches)

    async with anyio.create_task_group() as tasks:
        for batcher in claimers:
            tasks.start_soon(claim_all, batcher)

    assert len(got) == len({b.id for b in got}) == 20


async def test_expired_lease_fences_the_old_holder(
    make_async: MakeAsync, clock: FakeClock
):
    batcher = make_async(clock=clock)
    await batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = await batcher.claim()
    clock.advance(0.5)

    fenced = (
        await batcher.ack(held),
        await batcher.nack(held, 0),
        await batcher.extend(held),
        await batcher.owns(held),
    )
    (again,) = await batcher.claim()
    stale = (await batcher.ack(held), await batcher.owns(held))

    assert fenced == (False, "lost", False, False)
    assert (again.id, again.attempt, again.reason) == (
        held.id,
        2,
        ReadyReason.LEASE_EXPIRED,
    )
    assert stale == (False, False)
    assert await batcher.ack(again) is True


async def test_extend_and_owns(make_async: MakeAsync, clock: FakeClock):
    batcher = make_async(clock=clock)
    await batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = await batcher.claim()

    clock.advance(0.4)
    extended = await batcher.extend(held)
    many = await batcher.extend_many([held], 0.5)
    clock.advance(0.4)
    still = await batcher.owns(held)
    clock.advance(0.1)
    gone = await batcher.owns(held)

    assert (extended, many, still, gone) == (True, [True], True, False)


async def test_nack_delay_and_release(make_async: MakeAsync, clock: FakeClock):
    batcher = make_async(clock=clock)
    await batcher.push(ALICE, "hi")
    clock.advance(0.2)
    (held,) = await batcher.claim()

    outcome = await batcher.nack(held, 1.0, error="boom")
    clock.advance(0.999)
    early = await batcher.claim()
    clock.advance(0.001)
    (retried,) = await batcher.claim()
    released = await batcher.release(retried)
    (again,) = await batcher.claim()

    assert outcome == "retry"
    assert early == []
    assert (retried.reason, retried.attempt) == (ReadyReason.RETRY, 2)
    assert released is True
    assert again.attempt == 2
    assert (await batcher.inspect(ALICE)).last_error == "boom"


async def test_flush_now_and_behind_a_batch_in_flight(
    make_async: MakeAsync, clock: FakeClock
):
    batcher = make_async(clock=clock)
    await batcher.push(ALICE, 1)
    flushed = await batcher.flush(ALICE)
    (first,) = await batcher.claim()
    await batcher.push(ALICE, 2)

    behind = await batcher.flush(ALICE)
    during = await batcher.claim()
    await batcher.ack(first)
    (second,) = await batcher.claim()
    nothing = await batcher.flush(BOB)

    assert (flushed, behind, nothing) == (1, 1, 0)
    assert first.reason is ReadyReason.FLUSH
    assert during == []
    assert (second.messages, second.reason) == ((2,), ReadyReason.FLUSH)


async def test_dead_letters_requeue_and_purge(make_async: MakeAsync, clock: FakeClock):
    batcher = make_async(clock=clock)
    for conversation in (ALICE, BOB):
        await batcher.push(conversation, conversation)
        await batcher.flush(conversation)
        clock.advance(1.0)
        (held,) = await batcher.claim()
        while await batcher.nack(held, 0, error="boom") == "retry":
            (held,) = await batcher.claim()

    letters = await batcher.dead_letters()
    one = await batcher.dead_letter(letters[0].id)
    requeued = await batcher.requeue(letters[0])
    (batch,) = await batcher.claim()
    purged = await batcher.purge(letters[1].id)
    stats = await batcher.stats()

    assert [d.conversation for d in letters] == [ALICE, BOB]
    assert one is not None
    assert (one.attempts, one.error, one.messages) == (3, "boom", (ALICE,))
    assert requeued == 1
    assert (batch.id, batch.reason, batch.attempt) == (
        letters[0].id,
        ReadyReason.REQUEUED,
        1,
    )
    assert purged is True
    assert (stats.dead, stats.dead_lettered, stats.requeued) == (0, 2, 1)


async def test_stats_and_inspect(make_async: MakeAsync, clock: FakeClock):
    batcher = make_async(clock=clock)
    await batcher.push_many([(ALICE, 1), (BOB, 1), (BOB, 2)])
    clock.advance(0.2)
    claimed = {b.conversation: b for b in await batcher.claim(limit=1)}
    await batcher.push(CAROL, 1)

    stats = await batcher.stats()
    state = await batcher.inspect(next(iter(claimed)))

    assert (stats.pending, stats.in_flight, stats.overdue) == (2, 1, 1)
    assert stats.stored_messages == 4
    assert stats.claimed == 1
    assert state.in_flight is True
    assert state.batches[0].attempt == 1


async def test_scripts_are_reloaded_after_script_flush(
    make_async: MakeAsync,
    clock: FakeClock,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
):
    batcher = make_async(clock=clock)
    await batcher.push(ALICE, 1)

    with caplog.at_level(logging.INFO, logger="rapidfire.redis"):
        raw.script_flush()
        pushed = await batcher.push(ALICE, 2)
        raw.script_flush()
        many = await batcher.push_many([(ALICE, 3), (BOB, 1)])
        clock.advance(0.2)
        raw.script_flush()
        claimed = {b.conversation: b for b in await batcher.claim()}
        raw.script_flush()
        acked = await batcher.ack(claimed[ALICE])

    assert pushed.size == 2
    assert [r.size for r in many] == [3, 1]
    assert claimed[ALICE].messages == (1, 2, 3)
    assert acked is True
    # Only push had run before a flush: claim and ack were first loads, which
    # are routine and not reported as NOSCRIPT reloads.
    reloads = [r for r in caplog.records if "NOSCRIPT" in r.getMessage()]
    assert {r.args[0] for r in reloads} == {"push"}


async def test_context_manager_closes_and_reconnects(config: RedisConfig):
    batcher = AsyncBatcher(config, BatchPolicy(**FAST))

    async with batcher:
        first = await batcher.push(ALICE, 1)
    again = await batcher.push(ALICE, 2)
    await batcher.aclose()

    assert (first.size, again.size) == (1, 2)


# -- drain -----------------------------------------------------------------------


async def test_async_drain_with_an_async_handler_handles_everything(
    make_async: MakeAsync,
):
    batcher = make_async()
    await batcher.push_many([(ALICE, 1), (ALICE, 2), (BOB, 1), (CAROL, 1)])
    seen: dict[str, tuple[Any, ...]] = {}

    async def handler(batch: Batch) -> None:
        await anyio.sleep(0.01)
        seen[batch.conversation] = batch.messages

    with anyio.fail_after(20):
        report = await batcher.drain(handler, concurrency=2, until_idle=True)
    stats = await batcher.stats()

    assert seen == {ALICE: (1, 2), BOB: (1,), CAROL: (1,)}
    assert (report.handled, report.failed, report.lost) == (3, 0, 0)
    assert (stats.pending, stats.in_flight, stats.stored_messages) == (0, 0, 0)


async def test_async_drain_runs_a_sync_handler_in_a_worker_thread(
    make_async: MakeAsync,
):
    batcher = make_async()
    await batcher.push_many([(ALICE, 1), (BOB, 2)])
    threads: list[int] = []

    def handler(batch: Batch) -> None:
        threads.append(threading.get_ident())

    with anyio.fail_after(20):
        report = await batcher.drain(handler, until_idle=True)

    assert report.handled == 2
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_async_drain_retries_a_failing_handler_into_the_dead_letters(
    make_async: MakeAsync,
):
    batcher = make_async()
    await batcher.push(ALICE, "hi")
    attempts: list[int] = []

    async def handler(batch: Batch) -> None:
        attempts.append(batch.attempt)
        raise RuntimeError("model unavailable")

    with anyio.fail_after(20):
        report = await batcher.drain(handler, until_idle=True)
    (letter,) = await batcher.dead_letters()

    assert attempts == [1, 2, 3]
    assert (report.handled, report.failed, report.dead_lettered) == (0, 3, 1)
    assert letter.error == "RuntimeError: model unavailable"


async def test_async_drain_stops_when_the_stop_event_is_set(make_async: MakeAsync):
    batcher = make_async()
    await batcher.push(ALICE, "hi")
    stop = anyio.Event()
    handled = anyio.Event()

    async def handler(batch: Batch) -> None:
        handled.set()

    async def stop_once_handled() -> None:
        await handled.wait()
        stop.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stop_once_handled)
            report = await batcher.drain(handler, stop=stop)

    assert report.handled == 1
    assert (await batcher.stats()).stored_messages == 0


async def test_async_drain_handles_a_push_to_an_idle_worker(make_async: MakeAsync):
    batcher = make_async()
    stop = anyio.Event()
    seen: list[tuple[Any, ...]] = []

    async def handler(batch: Batch) -> None:
        seen.append(batch.messages)
        stop.set()

    async def push_later() -> None:
        await anyio.sleep(0.5)
        await batcher.push(BOB, "anyone?")

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(push_later)
            report = await batcher.drain(handler, stop=stop)

    assert seen == [("anyone?",)]
    assert report.handled == 1


async def test_async_drain_does_not_miss_a_push_during_an_in_flight_claim(
    make_async: MakeAsync,
):
    batcher = make_async()
    stop = anyio.Event()
    claim_shard = batcher.claim_shard
    claims: list[int] = []

    async def claim_then_push(shard: int, limit: int) -> Any:
        result = await claim_shard(shard, limit)
        claims.append(shard)
        if len(claims) == 1:
            await anyio.sleep(1.0)  # the wake listener subscribes meanwhile
            await batcher.push(ALICE, "sent while the worker was claiming")
            await anyio.sleep(0.3)  # its wake message arrives before this reply
        return result

    batcher.claim_shard = claim_then_push  # type: ignore[method-assign]

    handled: list[Batch] = []

    async def handler(batch: Batch) -> None:
        handled.append(batch)
        stop.set()

    with anyio.move_on_after(3.0):
        await batcher.drain(handler, stop=stop)

    assert [b.messages for b in handled] == [("sent while the worker was claiming",)]
