"""A Redis with AOF killed with -9 and restarted, and a Redis that forgets its
scripts (SCRIPT FLUSH), under one long-lived Batcher."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

from rapidfire import (
    AsyncBatcher,
    Batch,
    Batcher,
    BatchPolicy,
    RedisConfig,
    RedisUnavailableError,
)

from ..conftest import unique_namespace
from .conftest import RedisServer, wait_until

pytestmark = pytest.mark.timeout(60)

ALICE = "15550000001"
BOB = "15550000002"
AOF = ("--appendonly", "yes", "--appendfsync", "always")
POLICY = BatchPolicy(debounce=0.05, max_wait=0.2, lease=5, retry_backoff=0.05)
StartServer = Callable[..., RedisServer]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config_for(server: RedisServer) -> RedisConfig:
    """Small timeouts and no retries: every failure reaches the caller."""
    return RedisConfig.from_url(
        server.url,
        namespace=unique_namespace("fault"),
        connect_timeout=0.5,
        command_timeout=0.5,
        retries=0,
    )


def loaded(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Scripts loaded after a NOSCRIPT reply, in order, from rapidfire's log
    (the first load of each at DEBUG, every later one at INFO)."""
    found = []
    for record in caplog.records:
        match = re.fullmatch(
            r"(?:re)?loading script (\w+)( after NOSCRIPT)?", record.message
        )
        if record.name == "rapidfire.redis" and match:
            found.append(match.group(1))
    return found


def take_everything(batcher: Batcher) -> list[Batch]:
    """Claim and ack until nothing is stored; the batches whose ack held."""
    taken = []
    for conversation in (ALICE, BOB):
        batcher.flush(conversation)
    deadline = time.monotonic() + 15
    while batcher.stats().stored_messages and time.monotonic() < deadline:
        for batch in batcher.claim(limit=10):
            if batcher.ack(batch):
                taken.append(batch)
        time.sleep(0.02)
    return taken


def test_acknowledged_pushes_survive_kill_9_and_the_same_batcher_carries_on(
    redis_server: StartServer,
    caplog: pytest.LogCaptureFixture,
    figures: dict[str, Any],
):
    caplog.set_level(logging.DEBUG, logger="rapidfire.redis")
    server = redis_server(*AOF)
    batcher = Batcher(config_for(server), POLICY)
    acknowledged: dict[str, list[str]] = {ALICE: [], BOB: []}
    refused: list[RedisUnavailableError] = []
    first_after_restart = []
    for cycle in range(3):
        for i in range(6):
            conversation = (ALICE, BOB)[i % 2]
            text = f"{cycle}.{i}"
            batcher.push(conversation, text, dedupe_id=f"wamid.{text}")
            acknowledged[conversation].append(text)
        server.kill()
        with pytest.raises(RedisUnavailableError) as down:
            batcher.push(ALICE, "while Redis is down", dedupe_id=f"down.{cycle}")
        refused.append(down.value)
        server.start()
        receipt = batcher.push(BOB, f"{cycle}.back", dedupe_id=f"wamid.{cycle}.back")
        first_after_restart.append(receipt.duplicate)
        acknowledged[BOB].append(f"{cycle}.back")
    taken = take_everything(batcher)
    batcher.close()
    delivered = {ALICE: [], BOB: []}
    for batch in taken:
        delivered[batch.conversation] += batch.messages
    total = sum(map(len, acknowledged.values()))
    figures.update(
        pushed=total,
        refused_while_down=len(refused),
        delivered=sum(map(len, delivered.values())),
        lost=total - len(set(delivered[ALICE]) | set(delivered[BOB])),
        restarts=3,
    )

    assert delivered == acknowledged
    assert first_after_restart == [False, False, False]
    assert all(e.where == server.where for e in refused)
    assert all(f"Redis at {server.where} is unreachable" in str(e) for e in refused)
    assert loaded(caplog).count("push") == 1 + 3  # first use, then each restart


def test_holder_calls_of_one_batcher_work_across_restarts_of_redis(
    redis_server: StartServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="rapidfire.redis")
    server = redis_server(*AOF)
    batcher = Batcher(config_for(server), POLICY)
    batcher.push(ALICE, "hi", dedupe_id="wamid.1")
    batcher.flush(ALICE)
    (batch,) = batcher.claim()
    server.kill()
    server.start()
    extended = batcher.extend(batch)
    owned = batcher.owns(batch)
    server.kill()
    server.start()
    outcome = batcher.nack(batch, delay=0)
    (again,) = wait_until(batcher.claim, what="the batch back after its nack")
    server.kill()
    server.start()
    acked = batcher.ack(again)
    stats = batcher.stats()
    batcher.close()

    assert (extended, owned, outcome, acked) == (True, True, "retry", True)
    assert (again.id, again.attempt, again.messages) == (batch.id, 2, ("hi",))
    assert (stats.stored_messages, stats.claimed, stats.acked) == (0, 2, 1)
    assert {"extend", "nack", "ack"} <= set(loaded(caplog))


def test_pushes_racing_kill_9_are_each_stored_once_when_retried_by_dedupe_id(
    redis_server: StartServer, figures: dict[str, Any]
):
    server = redis_server(*AOF)
    batcher = Batcher(config_for(server), POLICY)
    rng = random.Random(7)
    killer_done = threading.Event()
    kills: list[float] = []

    def kill_and_restart() -> None:
        try:
            for _ in range(3):
                time.sleep(rng.uniform(0.15, 0.4))
                server.kill()
                kills.append(time.monotonic())
                time.sleep(0.1)
                server.start()
        finally:
            killer_done.set()

    killer = threading.Thread(target=kill_and_restart, daemon=True)
    pushed: dict[str, list[str]] = {ALICE: [], BOB: []}
    raised = stored_by_a_failed_try = 0
    killer.start()
    try:
        i = 0
        while (not killer_done.is_set() or i < 200) and i < 5000:
            conversation, text = (ALICE, BOB)[i % 2], f"m{i}"
            for _ in range(200):
                try:
                    receipt = batcher.push(conversation, text, dedupe_id=f"wamid.{i}")
                    break
                except RedisUnavailableError:
                    raised += 1
                    time.sleep(0.02)
            else:
                pytest.fail(f"push {i} never succeeded")
            stored_by_a_failed_try += receipt.duplicate
            pushed[conversation].append(text)
            i += 1
    finally:
        killer.join(timeout=15)
    taken = take_everything(batcher)
    batcher.close()
    delivered: dict[str, list[str]] = {ALICE: [], BOB: []}
    for batch in taken:
        delivered[batch.conversation] += batch.messages
    total = sum(map(len, pushed.values()))
    figures.update(
        pushed=total,
        kills=len(kills),
        failed_tries=raised,
        stored_by_a_failed_try=stored_by_a_failed_try,
        delivered=sum(map(len, delivered.values())),
        lost=total - len(set(delivered[ALICE]) | set(delivered[BOB])),
    )

    assert len(kills) == 3
    assert raised >= 3
    assert delivered == pushed


def test_push_claim_extend_nack_and_ack_carry_on_after_script_flush(
    redis_server: StartServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="rapidfire.redis")
    server = redis_server()
    batcher = Batcher(config_for(server), POLICY)
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    batcher.push(ALICE, "warm up")  # every later call finds its script loaded

    def forget() -> None:
        admin.script_flush()

    forget()
    first = batcher.push(ALICE, "one", dedupe_id="wamid.1")
    forget()
    many = batcher.push_many([(ALICE, "two", "wamid.2"), (BOB, "three", "wamid.3")])
    forget()
    flushed = batcher.flush(ALICE), batcher.flush(BOB)
    forget()
    batches = sorted(batcher.claim(), key=lambda b: b.conversation)
    forget()
    extended = batcher.extend(batches[0])
    forget()
    renewed = batcher.extend_many(batches)
    forget()
    owned = batcher.owns(batches[1])
    forget()
    outcome = batcher.nack(batches[1], delay=0)
    forget()
    (again,) = wait_until(batcher.claim, what="the nacked batch back")
    forget()
    acked = batcher.ack(batches[0]), batcher.ack(again)
    stats = batcher.stats()
    admin.close()
    batcher.close()

    assert (first.duplicate, [r.duplicate for r in many]) == (False, [False, False])
    assert flushed == (3, 1)
    assert [b.messages for b in batches] == [("warm up", "one", "two"), ("three",)]
    assert (extended, renewed, owned, outcome) == (True, [True, True], True, "retry")
    assert (again.conversation, again.attempt) == (BOB, 2)
    assert acked == (True, True)
    assert stats.stored_messages == 0
    assert {"push", "flush", "claim", "extend", "owns", "nack", "ack"} <= set(
        loaded(caplog)
    )


@pytest.mark.anyio
async def test_the_same_async_batcher_carries_on_after_kill_9_and_script_flush(
    redis_server: StartServer,
):
    server = redis_server(*AOF)
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    batcher = AsyncBatcher(config_for(server), POLICY)
    with anyio.fail_after(30):
        await batcher.push_many([(ALICE, "one", "wamid.1"), (BOB, "two", "wamid.2")])
        server.kill()
        with pytest.raises(RedisUnavailableError):
            await batcher.push(ALICE, "while Redis is down", dedupe_id="wamid.down")
        server.start()
        await batcher.push_many([(ALICE, "three", "wamid.3"), (BOB, "four", "wamid.4")])
        await batcher.flush(ALICE)
        await batcher.flush(BOB)
        batches = sorted(await batcher.claim(), key=lambda b: b.conversation)
        admin.script_flush()
        renewed = await batcher.extend_many(batches)
        server.kill()
        server.start()
        # With retries=0 the first command on a pooled connection that the
        # restart closed reaches the caller once; the next one reconnects.
        refused = 0
        acked = []
        for b in batches:
            try:
                acked.append(await batcher.ack(b))
            except RedisUnavailableError:
                refused += 1
                acked.append(await batcher.ack(b))
        stats = await batcher.stats()
    await batcher.aclose()
    admin.close()

    assert [b.messages for b in batches] == [("one", "three"), ("two", "four")]
    assert (renewed, acked) == ([True, True], [True, True])
    assert refused <= 1
    assert (stats.stored_messages, stats.acked) == (0, 2)
