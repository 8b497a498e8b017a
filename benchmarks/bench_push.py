"""push against the cheapest thing that does the same round trips.

- ``Batcher.push`` (one EVALSHA per call) against a bare redis-py ``RPUSH`` per
  call: both are one round trip; the ratio is what the script costs on top.
- ``Batcher.push_many`` of 100 messages (one pipeline of one EVALSHA per
  shard) against one pipeline of 100 ``RPUSH``, in two distributions: 100
  messages over 100 conversations, and 100 over 10 (10 each, a burst per
  conversation). The baseline pushes into one plain list per conversation of
  the same distribution.
- ``AsyncBatcher.push`` from 64 concurrent tasks against ``redis.asyncio``
  ``RPUSH`` from 64 tasks.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from rapidfire import AsyncBatcher, Batcher, BatchPolicy, RedisConfig

from ._harness import Setup, Table, interleaved, rate, ratio_figure

POLICY = BatchPolicy(debounce=60, max_wait=120, max_size=10_000)
MESSAGE = {"text": "x" * 100, "from": "15550000001"}
CONVERSATIONS = [f"1555{i:07d}" for i in range(1000)]


def run(setup: Setup, table: Table) -> None:
    config, rounds, scale = setup.config, setup.rounds, setup.scale
    batcher = Batcher(config, POLICY)
    raw = config.client()
    counter = itertools.count()
    baseline_key = f"{config.namespace}:baseline:list"
    payload = batcher.protocol.encode_message(MESSAGE)
    calls = max(200, int(2000 * scale))
    batcher.ping()

    def ours_single() -> None:
        for _ in range(calls):
            n = next(counter)
            batcher.push(CONVERSATIONS[n % 1000], MESSAGE)

    def bare_single() -> None:
        for _ in range(calls):
            raw.rpush(baseline_key, payload)

    samples = interleaved(
        {
            "Batcher.push": lambda: rate(calls, ours_single),
            "redis-py RPUSH": lambda: rate(calls, bare_single),
        },
        rounds,
    )
    table.add(
        ratio_figure(
            "push, one per call (sync)",
            "msg/s",
            samples,
            "Batcher.push",
            "redis-py RPUSH",
            0.8,
        )
    )

    batches = max(20, int(200 * scale))
    for spread in (100, 10):
        ours_many, bare_many = _many(batcher, raw, baseline_key, payload, spread)
        ours_name = f"push_many(100), {spread} conv."
        samples = interleaved(
            {
                ours_name: lambda f=ours_many: rate(batches * 100, f, batches),
                "pipelined RPUSH x100": lambda f=bare_many: rate(
                    batches * 100, f, batches
                ),
            },
            rounds,
        )
        table.add(
            ratio_figure(
                f"push_many(100) over {spread} conversations",
                "msg/s",
                samples,
                ours_name,
                "pipelined RPUSH x100",
                0.5,
            )
        )
    raw.delete(baseline_key, *(f"{baseline_key}:{i}" for i in range(1000)))
    raw.close()
    batcher.close()

    samples = anyio.run(_async_rounds, config, payload, rounds, scale)
    table.add(
        ratio_figure(
            "AsyncBatcher.push, 64 tasks",
            "msg/s",
            samples,
            "AsyncBatcher.push",
            "redis.asyncio RPUSH",
            0.8,
        )
    )


def _many(
    batcher: Batcher, raw: Any, key: str, payload: bytes, spread: int
) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """push_many(100) over ``spread`` conversations, and its baseline."""
    counter = itertools.count()
    per = 100 // spread

    def ours(batches: int) -> None:
        for _ in range(batches):
            n = next(counter)
            items = [
                (CONVERSATIONS[(n * spread + i) % 1000], MESSAGE)
                for i in range(spread)
                for _ in range(per)
            ]
            batcher.push_many(items)

    def bare(batches: int) -> None:
        for _ in range(batches):
            n = next(counter)
            pipe = raw.pipeline(transaction=False)
            for i in range(spread):
                conversation = f"{key}:{(n * spread + i) % 1000}"
                for _ in range(per):
                    pipe.rpush(conversation, payload)
            pipe.execute()

    return ours, bare


async def _async_rounds(
    config: RedisConfig, payload: bytes, rounds: int, scale: float
) -> dict[str, list[float]]:
    batcher = AsyncBatcher(config, POLICY)
    raw = config.async_client()
    key = f"{config.namespace}:baseline:alist"
    per_task = max(20, int(100 * scale))
    await batcher.ping()

    async def measure(one: Callable[[int, int], Awaitable[object]]) -> float:
        async def task(t: int) -> None:
            for i in range(per_task):
                await one(t, i)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for t in range(64):
                tg.start_soon(task, t)
        return 64 * per_task / (time.perf_counter() - start)

    async def ours(t: int, i: int) -> object:
        return await batcher.push(CONVERSATIONS[(t * 31 + i) % 1000], MESSAGE)

    async def bare(t: int, i: int) -> object:
        return await raw.rpush(key, payload)

    samples: dict[str, list[float]] = {
        "AsyncBatcher.push": [],
        "redis.asyncio RPUSH": [],
    }
    for r in range(rounds):
        order = [("AsyncBatcher.push", ours), ("redis.asyncio RPUSH", bare)]
        if r % 2:
            order.reverse()
        for name, one in order:
            samples[name].append(await measure(one))
    await raw.delete(key)
    await raw.aclose()
    await batcher.aclose()
    return samples
