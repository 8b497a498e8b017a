"""Handover latency: from a batch's deadline to its handler being called.

A worker runs idle (``drain`` with ``concurrency=4``, as ``rapidfire worker``
runs it, with a stop event); the benchmark then pushes bursts of 1-3 messages
into fresh conversations, a burst starting every 15-35 ms, with a 50 ms quiet
window, so that every batch becomes ready while the worker sleeps. The handler
notes ``time.time()``; its lateness is that time, moved to the server's clock,
minus ``batch.ready_at`` (the deadline, on the server's clock). The offset
between the clocks is read with TIME (shortest of 5 round trips) before and
after each round, and the mean of the two is applied.

The baseline is a worker that polls: ``claim(10)``, handle and ack what came,
and sleep 100 ms when nothing did. Every round runs the same schedule of
pushes for ``Batcher.drain``, ``AsyncBatcher.drain`` and the polling loop, in
alternating order.

p50 is the median of the per-round medians; p99 and max are taken over every
sample of every round (a round has too few for its own p99), with the
bootstrap interquartile range of the p99 and the spread of per-round maxima.
"""

from __future__ import annotations

import functools
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from rapidfire import AsyncBatcher, Batch, Batcher, BatchPolicy, RedisConfig

from ._harness import (
    Figure,
    Setup,
    Table,
    bootstrap,
    clock_offset,
    percentile,
    quantiles,
    resilient,
)

DEBOUNCE = 0.05
POLICY = BatchPolicy(debounce=DEBOUNCE, max_wait=5, lease=30)
MESSAGE = {"text": "where is my order?", "from": "15550000001"}
POLL = 0.1
SYNC, ASYNC, POLLING = "Batcher.drain", "AsyncBatcher.drain", "polling 100 ms"
GOAL_P99_MS = 10.0


class _Recorder:
    """What the handler saw: conversation -> (local time, ready_at, claimed_at)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[float, float, float]] = {}

    def handle(self, batch: Batch) -> None:
        now = time.time()
        with self.lock:
            self.seen[batch.conversation] = (now, batch.ready_at, batch.claimed_at)

    async def ahandle(self, batch: Batch) -> None:
        self.handle(batch)

    def count(self, names: set[str]) -> int:
        with self.lock:
            return len(names & self.seen.keys())


def _start(kind: str, config: RedisConfig, rec: _Recorder, stop: Any) -> Any:
    def sync_drain() -> None:
        with Batcher(config, POLICY) as batcher:
            batcher.drain(rec.handle, concurrency=4, stop=stop, grace=5)

    async def async_main() -> None:
        async with AsyncBatcher(config, POLICY) as batcher:
            await batcher.drain(rec.ahandle, concurrency=4, stop=stop, grace=5)

    def polling() -> None:
        with Batcher(config, POLICY) as batcher:
            while not stop.is_set():
                got = batcher.claim(10)
                for batch in got:
                    rec.handle(batch)
                    batcher.ack(batch)
                if not got:
                    stop.wait(POLL)

    target: Callable[[], None] = {
        SYNC: sync_drain,
        ASYNC: lambda: anyio.run(async_main),
        POLLING: polling,
    }[kind]
    thread = threading.Thread(target=target, name=f"bench-{kind}", daemon=True)
    thread.start()
    return thread


def _schedule(seed: int, conversations: int) -> list[tuple[float, int]]:
    """(seconds from start, conversation index) of every push, in time order."""
    rng = random.Random(seed)
    pushes = []
    start = 0.0
    for i in range(conversations):
        start += rng.uniform(0.015, 0.035)
        at = start
        for _ in range(rng.choice((1, 2, 3))):
            pushes.append((at, i))
            at += rng.uniform(0.003, 0.012)
    pushes.sort()
    return pushes


def _round(
    kind: str,
    config: RedisConfig,
    pusher: Batcher,
    raw: Any,
    tag: str,
    schedule: list[tuple[float, int]],
) -> tuple[list[float], list[float]]:
    """One round of one worker kind: lateness and claim delay of each batch, ms."""
    rec = _Recorder()
    stop = threading.Event()
    thread = _start(kind, config, rec, stop)
    try:
        warm = f"{tag}-warm"
        pusher.push(warm, MESSAGE)
        _wait(lambda: rec.count({warm}) == 1, 10.0, f"{kind} never handled a batch")
        time.sleep(0.05)
        before = clock_offset(raw)
        names = [f"{tag}-{i}" for i in range(1 + max(i for _, i in schedule))]
        origin = time.perf_counter()
        for at, i in schedule:
            delay = origin + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pusher.push(names[i], MESSAGE)
        expected = set(names)
        _wait(
            lambda: rec.count(expected) == len(expected),
            DEBOUNCE + POLL + 5.0,
            f"{kind} did not handle every batch",
        )
        offset = (before + clock_offset(raw)) / 2
    finally:
        stop.set()
        thread.join(timeout=10)
    late = []
    claim_delay = []
    for name in names:
        local, ready_at, claimed_at = rec.seen[name]
        late.append((local + offset - ready_at) * 1000)
        claim_delay.append((claimed_at - ready_at) * 1000)
    return late, claim_delay


def _wait(done: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.002)


def run(setup: Setup, table: Table) -> None:
    config = setup.config
    conversations = max(10, int(30 * setup.scale))
    pusher = Batcher(config, POLICY)
    raw = config.client()
    pusher.ping()
    kinds = [SYNC, ASYNC, POLLING]
    late: dict[str, list[list[float]]] = {k: [] for k in kinds}
    delays: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for r in range(setup.rounds):
            schedule = _schedule(r, conversations)
            order = kinds if r % 2 == 0 else kinds[::-1]
            for k, kind in enumerate(order):
                tag = f"{config.namespace}-hand-{r}-{k}"
                sample = functools.partial(
                    _round, kind, config, pusher, raw, tag, schedule
                )
                got, delay = resilient(sample)
                late[kind].append(got)
                delays[kind].extend(delay)
    finally:
        raw.close()
        pusher.close()

    base = late[POLLING]
    for kind in (SYNC, ASYNC):
        ours = late[kind]
        table.add(_p50(kind, ours, base))
        table.add(_pooled(kind, "p99", ours, base, delays[kind]))
        table.add(_pooled(kind, "max", ours, base, None))


def _p50(kind: str, ours: list[list[float]], base: list[list[float]]) -> Figure:
    mine = [statistics.median(r) for r in ours]
    theirs = [statistics.median(r) for r in base]
    low, value, high = quantiles(mine)
    return Figure(
        name=f"handover p50, {kind}",
        unit="ms",
        value=value,
        spread=(low, high),
        baseline_name=POLLING,
        baseline=statistics.median(theirs),
        ratio=statistics.median(a / b for a, b in zip(mine, theirs) if b),
        goal="(none set)",
    )


def _pooled(
    kind: str,
    which: str,
    ours: list[list[float]],
    base: list[list[float]],
    delays: list[float] | None,
) -> Figure:
    mine = [x for r in ours for x in r]
    theirs = [x for r in base for x in r]
    stat: Callable[[Sequence[float]], float] = max
    if which == "p99":
        stat = functools.partial(percentile, p=99)
        spread = bootstrap(mine, stat)
    else:
        low, _, high = quantiles([max(r) for r in ours])
        spread = (low, high)
    value = stat(mine)
    note = ""
    if delays is not None:
        note = (
            f"{len(mine)} batches; the claim itself came"
            f" p50 {percentile(delays, 50):.1f} / p99 {percentile(delays, 99):.1f}"
            " ms after the deadline (server clock)"
        )
    return Figure(
        name=f"handover {which}, {kind}",
        unit="ms",
        value=value,
        spread=spread,
        baseline_name=POLLING,
        baseline=stat(theirs),
        ratio=value / stat(theirs),
        goal=f"< {GOAL_P99_MS:g} ms" if which == "p99" else "(none set)",
        met=value < GOAL_P99_MS if which == "p99" else None,
        note=note,
    )
