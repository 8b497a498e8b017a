"""Async pushes and claims cancelled at random points, thousands of times."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest

from rapidfire import (
    AsyncBatcher,
    Batch,
    BatchPolicy,
    RedisConfig,
    RedisUnavailableError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

POOL = 4
CLIENTS = POOL  # each holds at most one connection at a time: none may wait
ROUNDS = 800
# From "before the first await" to "after Redis answered".
TIMEOUTS = (0.0, 0.0001, 0.0003, 0.001, 0.002, 0.005, 0.05)
POLICY = BatchPolicy(debounce=0.02, max_wait=0.1, lease=1.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def conversation_of(client: int, round_: int) -> str:
    return f"1555000{client}{round_ % 3}"


async def test_cancelled_pushes_and_claims_keep_the_pool_and_every_message(
    real_config: RedisConfig, figures: dict[str, Any]
):
    config = RedisConfig.from_url(
        real_config.url,
        namespace=real_config.namespace,
        max_connections=POOL,
        retries=0,
    )
    batcher = AsyncBatcher(config, POLICY)
    returned: dict[str, str] = {}  # dedupe id -> conversation
    cancelled: dict[str, str] = {}
    acked: list[Batch] = []
    errors: list[Exception] = []
    claims = {"returned": 0, "cancelled": 0}

    async def settle(batches: list[Batch]) -> None:
        for batch in batches:
            if await batcher.ack(batch):
                acked.append(batch)

    async def client(number: int) -> None:
        rng = random.Random(number)
        for round_ in range(ROUNDS):
            timeout = rng.choice(TIMEOUTS)
            try:
                if rng.random() < 0.75:
                    dedupe = f"wamid.{number}.{round_:04d}"
                    conversation = conversation_of(number, round_)
                    receipt = None
                    with anyio.move_on_after(timeout):
                        receipt = await batcher.push(
                            conversation, dedupe, dedupe_id=dedupe
                        )
                    target = cancelled if receipt is None else returned
                    target[dedupe] = conversation
                else:
                    batches = None
                    with anyio.move_on_after(timeout):
                        batches = await batcher.claim(limit=5)
                    claims["cancelled" if batches is None else "returned"] += 1
                    await settle(batches or [])
            except RedisUnavailableError as exc:
                errors.append(exc)

    with anyio.fail_after(40):
        async with anyio.create_task_group() as tasks:
            for number in range(CLIENTS):
                tasks.start_soon(client, number)
        stored_anyway = [
            dedupe
            for dedupe, conversation in sorted(cancelled.items())
            if (await batcher.push(conversation, dedupe, dedupe_id=dedupe)).duplicate
        ]
        for conversation in {*returned.values(), *cancelled.values()}:
            await batcher.flush(conversation)
        while (await batcher.stats()).stored_messages:
            await settle(await batcher.claim(limit=20))
            await anyio.sleep(0.02)
    stats = await batcher.stats()
    await batcher.aclose()
    delivered = Counter(m for batch in acked for m in batch.messages)
    pushed = {**returned, **cancelled}
    figures.update(
        operations=CLIENTS * ROUNDS,
        pushes_returned=len(returned),
        pushes_cancelled=len(cancelled),
        cancelled_but_stored=len(stored_anyway),
        claims_returned=claims["returned"],
        claims_cancelled=claims["cancelled"],
        delivered=sum(delivered.values()),
        lease_redeliveries=sum(b.attempt > 1 for b in acked),
        duplicated=sum(n - 1 for n in delivered.values()),
        lost=len(set(pushed) - set(delivered)),
    )
    in_order = all(
        [m for m in batch_messages if m in returned]
        == sorted(m for m in batch_messages if m in returned)
        for batch_messages in _by_conversation(acked).values()
    )

    assert errors == []
    assert returned
    assert cancelled
    assert claims["cancelled"]
    assert set(delivered) == set(pushed)
    assert max(delivered.values()) == 1
    assert in_order
    assert (stats.stored_messages, stats.in_flight, stats.pending) == (0, 0, 0)
    assert stats.pushed == len(pushed)


def _by_conversation(batches: list[Batch]) -> dict[str, list[Any]]:
    """Each conversation's delivered messages, in the order they were acked."""
    found: dict[str, list[Any]] = {}
    for batch in batches:
        found.setdefault(batch.conversation, []).extend(batch.messages)
    return found
