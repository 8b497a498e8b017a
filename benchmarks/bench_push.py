"""push against the cheapest thing that does the same round trips.

- ``Batcher.push`` (one EVALSHA per call) against a bare redis-py ``RPUSH`` per
  call: both are one round trip; the ratio is what the script costs on top.
- ``Batcher.push_many`` of 100 messages (one pipeline of one EVALSHA per
  conversation) against one pipeline of 100 ``RPUSH``.
- ``AsyncBatcher.push`` from 64 concurrent tasks against ``redis.asyncio``
  ``RPUSH`` from 64 tasks.
"""

from __future__ import annotations

import itertools

import anyio

from rapidfire import AsyncBatcher, Batcher, BatchPolicy, RedisConfig

from ._harness import Table, interleaved, rate, ratio_figure

POLICY = BatchPolicy(debounce=60, max_wait=120, max_size=10_000)
MESSAGE = {"text": "x" * 100, "from": "15550000001"}


def run(config: RedisConfig, table: Table, *, rounds: int, scale: float) -> None:
    batcher = Batcher(config, POLICY)
    raw = config.client()
    counter = itertools.count()
    conversations = [f"1555{i:07d}" for i in range(1000)]
    baseline_key = f"{config.namespace}:baseline:list"
    payload = batcher.protocol.encode_message(MESSAGE)
    calls = max(200, int(2000 * scale))
    batcher.ping()

    def ours_single() -> None:
        for _ in range(calls):
            n = next(counter)
            batcher.push(conversations[n % 1000], MESSAGE)

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

    def ours_many() -> None:
        for _ in range(batches):
            n = next(counter)
            batcher.push_many(
                [(conversations[(n + i) % 1000], MESSAGE) for i in range(100)]
            )

    def bare_many() -> None:
        for _ in range(batches):
            pipe = raw.pipeline(transaction=False)
            for _ in range(100):
                pipe.rpush(baseline_key, payload)
            pipe.execute()

    samples = interleaved(
        {
            "push_many(100)": lambda: rate(batches * 100, ours_many),
            "pipelined RPUSH x100": lambda: rate(batches * 100, bare_many),
        },
        rounds,
    )
    table.add(
        ratio_figure(
            "push_many(100)",
            "msg/s",
            samples,
            "push_many(100)",
            "pipelined RPUSH x100",
            0.5,
        )
    )
    raw.delete(baseline_key)
    raw.close()
    batcher.close()

    samples = anyio.run(_async_rounds, config, conversations, payload, rounds, scale)
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


async def _async_rounds(
    config: RedisConfig,
    conversations: list[str],
    payload: bytes,
    rounds: int,
    scale: float,
) -> dict[str, list[float]]:
    import time

    batcher = AsyncBatcher(config, POLICY)
    raw = config.async_client()
    key = f"{config.namespace}:baseline:alist"
    per_task = max(20, int(100 * scale))
    await batcher.ping()

    async def measure(one: object) -> float:
        async def task(t: int) -> None:
            for i in range(per_task):
                await one(t, i)  # type: ignore[operator]

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for t in range(64):
                tg.start_soon(task, t)
        return 64 * per_task / (time.perf_counter() - start)

    async def ours(t: int, i: int) -> None:
        await batcher.push(conversations[(t * 31 + i) % 1000], MESSAGE)

    async def bare(t: int, i: int) -> None:
        await raw.rpush(key, payload)

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
