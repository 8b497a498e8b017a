"""Several producers and several workers, some of them crashing, at once.

Producers push numbered messages to a few conversations from threads; workers
claim from threads, and some "crash" (drop a claimed batch without acking it,
as a killed process would). At the end every message has been acknowledged
exactly once, in push order per conversation, or sits in the dead letters.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

from rapidfire import Batch, Batcher, BatchPolicy, RedisConfig

PRODUCERS, PER_PRODUCER, WORKERS, CONVERSATIONS = 4, 150, 4, 12
POLICY = BatchPolicy(
    debounce=0.03,
    max_wait=0.15,
    max_size=6,
    lease=0.25,
    max_attempts=20,
    retry_backoff=0.01,
    retry_backoff_max=0.05,
)


def test_every_message_is_acked_exactly_once_in_order(config: RedisConfig):
    batcher = Batcher(config, POLICY)
    lock = threading.Lock()
    pushed: dict[str, list[int]] = defaultdict(list)
    acked: dict[str, list[int]] = defaultdict(list)
    crashes = 0
    producing = threading.Event()
    producing.set()
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        rng = random.Random(p)
        try:
            for i in range(PER_PRODUCER):
                conversation = f"1555000{rng.randrange(CONVERSATIONS):04d}"
                n = p * PER_PRODUCER + i
                with lock:  # push and record in one step, so the order matches
                    batcher.push(conversation, n, dedupe_id=f"m{n}")
                    pushed[conversation].append(n)
                time.sleep(rng.uniform(0, 0.003))
        except BaseException as exc:
            errors.append(exc)

    def work(w: int) -> None:
        nonlocal crashes
        rng = random.Random(100 + w)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                batches = batcher.claim(limit=3)
                for batch in batches:
                    if rng.random() < 0.15:
                        with lock:
                            crashes += 1
                        continue  # crashed: never acked, the lease runs out
                    settle(batch)
                if not batches:
                    if not producing.is_set() and idle():
                        return
                    time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    def settle(batch: Batch) -> None:
        with lock:
            if batcher.ack(batch):
                acked[batch.conversation].extend(batch.messages)

    def idle() -> bool:
        stats = batcher.stats()
        return stats.stored_messages == 0 and stats.in_flight == 0

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    workers = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
    for thread in producers + workers:
        thread.start()
    for thread in producers:
        thread.join(timeout=60)
    producing.clear()
    for thread in workers:
        thread.join(timeout=90)
    dead = batcher.dead_letters(1000)
    stats = batcher.stats()
    batcher.close()

    assert errors == []
    assert not any(t.is_alive() for t in producers + workers)
    assert crashes > 0, "the test must exercise crashed workers"
    dead_messages = [m for letter in dead for m in letter.messages]
    everything = [n for ns in acked.values() for n in ns] + dead_messages
    assert sorted(everything) == list(range(PRODUCERS * PER_PRODUCER))
    for conversation, numbers in acked.items():
        alive = [n for n in pushed[conversation] if n not in set(dead_messages)]
        assert numbers == alive, f"order broken in {conversation}"
    assert stats.stored_messages == 0
    assert stats.ready_reasons["lease_expired"] > 0
