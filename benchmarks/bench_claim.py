"""claim + ack of ready batches, batches/s, with 1, 4 and 16 workers.

Each sample fills the namespace with ``batches`` conversations holding a
ready batch of 3 messages (untimed), then times ``workers`` threads (sync) or
tasks (async) that each loop ``claim(1)`` + ``ack`` until nothing is left.
That is two round trips per batch.

The baseline is the cheapest thing that does the same work in the same two
round trips: each conversation's messages in a plain list, the conversations
in a ready list; the dequeue is one call of a three-line script that moves a
conversation from the ready list to an in-flight list (``LMOVE``, the
reliable-queue pattern) and reads its messages (``LRANGE``); the ack is one
pipeline of ``DEL`` of the list and ``LREM`` from the in-flight list. Its
messages are JSON-decoded like ours. It has no lease expiry, no fencing
token, no attempt count, no dead letters and no stats.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio

from rapidfire import AsyncBatcher, Batcher, BatchPolicy, RedisConfig

from ._harness import (
    Figure,
    Setup,
    Table,
    aresilient,
    compare,
    interleaved,
    resilient,
    wipe,
)

POLICY = BatchPolicy(debounce=0, max_wait=1, lease=60)
MESSAGE = {"text": "x" * 100, "from": "15550000001"}
PER_BATCH = 3
WORKERS = (1, 4, 16)
OURS = "claim+ack"
BARE = "LMOVE script + DEL"
DEQUEUE = """
local conversation = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not conversation then return false end
return {conversation, redis.call('LRANGE', ARGV[1] .. conversation, 0, -1)}
"""


class _Baseline:
    """The plain-list queue, its keys under the run's namespace."""

    def __init__(self, config: RedisConfig, raw: Any) -> None:
        prefix = f"{config.namespace}:baseline:claim"
        self.ready = f"{prefix}:ready"
        self.inflight = f"{prefix}:inflight"
        self.lists = f"{prefix}:m:"
        self.raw = raw
        self.dequeue = raw.register_script(DEQUEUE)

    def fill(self, sync_client: Any, conversations: list[str], payload: bytes) -> None:
        for i in range(0, len(conversations), 500):
            pipe = sync_client.pipeline(transaction=False)
            chunk = conversations[i : i + 500]
            for conversation in chunk:
                pipe.rpush(self.lists + conversation, *[payload] * PER_BATCH)
            pipe.rpush(self.ready, *chunk)
            pipe.execute()


def _conversations(sample: int, n: int) -> list[str]:
    return [f"claim-{sample}-{i}" for i in range(n)]


def run(setup: Setup, table: Table) -> None:
    config = setup.config
    batches = max(200, int(1000 * setup.scale))
    filler = Batcher(config, POLICY)
    raw = config.client()
    payload = filler.protocol.encode_message(MESSAGE)
    filler.ping()
    samples = iter(range(1_000_000))

    def fill_ours() -> None:
        conversations = _conversations(next(samples), batches)
        for i in range(0, batches, 300):
            filler.push_many(
                [
                    (c, MESSAGE)
                    for c in conversations[i : i + 300]
                    for _ in range(PER_BATCH)
                ]
            )

    # sync: worker threads sharing one Batcher / one redis-py client
    batcher = Batcher(config, POLICY)
    baseline = _Baseline(config, raw)
    batcher.ping()

    def reset() -> None:
        wipe(raw, f"{config.namespace}:*")

    for workers in WORKERS:

        def ours(workers: int = workers) -> float:
            fill_ours()
            return _threads(workers, batches, lambda: _sync_ours(batcher))

        def bare(workers: int = workers) -> float:
            baseline.fill(raw, _conversations(next(samples), batches), payload)
            return _threads(workers, batches, lambda: _sync_bare(baseline))

        result = interleaved(
            {
                OURS: functools.partial(resilient, ours, reset),
                BARE: functools.partial(resilient, bare, reset),
            },
            setup.rounds,
        )
        table.add(_figure(f"claim(1)+ack, sync, {workers} thread(s)", result))
    batcher.close()

    # async: worker tasks sharing one AsyncBatcher / one redis.asyncio client
    for workers in WORKERS:
        result = anyio.run(
            _async_figure, config, workers, batches, setup.rounds, fill_ours, samples
        )
        table.add(_figure(f"claim(1)+ack, async, {workers} task(s)", result))
    raw.delete(baseline.ready, baseline.inflight)
    raw.close()
    filler.close()


def _figure(name: str, result: dict[str, list[float]]) -> Figure:
    return compare(
        name,
        "batch/s",
        result[OURS],
        result[BARE],
        BARE,
        goal="(none set)",
    )


def _threads(workers: int, expected: int, loop: Callable[[], int]) -> float:
    counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def target() -> None:
        try:
            n = loop()
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            counts.append(n)

    threads = [threading.Thread(target=target) for _ in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    if sum(counts) != expected:
        raise RuntimeError(f"handled {sum(counts)} batches, expected {expected}")
    return expected / elapsed


def _sync_ours(batcher: Batcher) -> int:
    handled = 0
    while True:
        got = batcher.claim(1)
        if not got:
            return handled
        for batch in got:
            batcher.ack(batch)
            handled += 1


def _sync_bare(b: _Baseline) -> int:
    handled = 0
    while True:
        reply = b.dequeue(keys=[b.ready, b.inflight], args=[b.lists])
        if reply is None:
            return handled
        conversation, messages = reply
        _ = [json.loads(m) for m in messages]
        pipe = b.raw.pipeline(transaction=False)
        pipe.delete(b.lists + conversation.decode())
        pipe.lrem(b.inflight, 1, conversation)
        pipe.execute()
        handled += 1


async def _async_figure(
    config: RedisConfig,
    workers: int,
    batches: int,
    rounds: int,
    fill_ours: Any,
    samples: Any,
) -> dict[str, list[float]]:
    batcher = AsyncBatcher(config, POLICY)
    raw = config.async_client()
    sync_raw = config.client()
    baseline = _Baseline(config, raw)
    payload = batcher.protocol.encode_message(MESSAGE)
    await batcher.ping()

    async def tasks(loop: Any) -> float:
        counts: list[int] = []

        async def one() -> None:
            counts.append(await loop())

        start = time.perf_counter()
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(one)
        elapsed = time.perf_counter() - start
        if sum(counts) != batches:
            raise RuntimeError(f"handled {sum(counts)} batches, expected {batches}")
        return batches / elapsed

    async def ours_loop() -> int:
        handled = 0
        while True:
            got = await batcher.claim(1)
            if not got:
                return handled
            for batch in got:
                await batcher.ack(batch)
                handled += 1

    async def bare_loop() -> int:
        handled = 0
        b = baseline
        while True:
            reply = await b.dequeue(keys=[b.ready, b.inflight], args=[b.lists])
            if reply is None:
                return handled
            conversation, messages = reply
            _ = [json.loads(m) for m in messages]
            pipe = raw.pipeline(transaction=False)
            pipe.delete(b.lists + conversation.decode())
            pipe.lrem(b.inflight, 1, conversation)
            await pipe.execute()
            handled += 1

    async def ours() -> float:
        fill_ours()  # sync and untimed: nothing else runs meanwhile
        return await tasks(ours_loop)

    async def bare() -> float:
        conversations = _conversations(next(samples), batches)
        baseline.fill(sync_raw, conversations, payload)
        return await tasks(bare_loop)

    def reset() -> None:
        wipe(sync_raw, f"{config.namespace}:*")

    result: dict[str, list[float]] = {OURS: [], BARE: []}
    for r in range(rounds):
        order = [(OURS, ours), (BARE, bare)]
        if r % 2:
            order.reverse()
        for name, sample in order:
            result[name].append(await aresilient(sample, reset))
    sync_raw.close()
    await raw.aclose()
    await batcher.aclose()
    return result
