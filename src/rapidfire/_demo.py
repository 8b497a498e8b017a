"""``rapidfire demo``: the whole flow, on the embedded server, in a few seconds.

Three simulated users type bursts at human speed; a worker drains them and
prints each batch as it is handed over. It ends by itself once every message
has been answered.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ._batcher import Batcher
from ._config import RedisConfig
from ._models import Batch, ReadyReason
from ._policy import BatchPolicy

__all__ = ["run_demo"]

DEMO_POLICY = BatchPolicy(debounce=1.0, max_wait=3.0, max_size=4, lease=10.0)

_REASONS = {
    ReadyReason.QUIET: "quiet for {debounce:g}s",
    ReadyReason.MAX_WAIT: "max wait of {max_wait:g}s reached",
    ReadyReason.MAX_SIZE: "max size of {max_size} reached",
    ReadyReason.FLUSH: "flushed",
    ReadyReason.RETRY: "retry",
    ReadyReason.LEASE_EXPIRED: "lease expired",
    ReadyReason.REQUEUED: "requeued",
}


@dataclass(frozen=True)
class User:
    name: str
    phone: str
    burst: tuple[str, ...]
    spacing: float
    start: float


USERS = (
    User(
        "alice",
        "15550000001",
        ("hi", "are you there?", "I ordered a lamp last week", "it arrived broken"),
        0.35,
        0.0,
    ),
    User(
        "bob",
        "15550000002",
        (
            "hello",
            "one more thing",
            "actually two",
            "the invoice",
            "and the address",
            "sorry, three",
        ),
        0.7,
        0.4,
    ),
    User(
        "carol",
        "15550000003",
        ("can", "you", "help", "me", "please"),
        0.1,
        1.0,
    ),
)


def run_demo(out: TextIO, config: RedisConfig | None = None, seed: int = 7) -> int:
    """Run the demo, printing to ``out``. Returns the exit code."""
    config = config or RedisConfig.from_url("memory://demo", namespace="rapidfire-demo")
    rng = random.Random(seed)
    batcher = Batcher(config, DEMO_POLICY)
    t0 = time.monotonic()
    lock = threading.Lock()
    names = {u.phone: u.name for u in USERS}
    answered: list[str] = []

    def say(line: str) -> None:
        with lock:
            out.write(f"[{time.monotonic() - t0:5.2f}s] {line}\n")
            out.flush()

    where = (
        "the embedded in-process server (demo only; nothing leaves this process)"
        if config.is_memory
        else config.describe()
    )
    say(f"storage: {where}")
    say(f"policy: {DEMO_POLICY.describe()}")

    def handler(batch: Batch) -> None:
        reason = _REASONS[batch.reason].format(
            debounce=DEMO_POLICY.debounce,
            max_wait=DEMO_POLICY.max_wait,
            max_size=DEMO_POLICY.max_size,
        )
        texts = [m["text"] for m in batch.messages]
        say(
            f"batch for {names[batch.conversation]}: {batch.size} message(s),"
            f" ready because {reason}; waited {batch.waited:.2f}s since the first"
        )
        with lock:
            out.write("         reply: " + " / ".join(repr(t) for t in texts) + "\n")
        answered.extend(texts)

    def typist(user: User) -> Callable[[], None]:
        def run() -> None:
            time.sleep(user.start)
            for i, text in enumerate(user.burst):
                batcher.push(user.phone, {"text": text}, dedupe_id=f"{user.name}-{i}")
                say(f"{user.name} -> {text!r}")
                time.sleep(user.spacing * rng.uniform(0.8, 1.2))

        return run

    stop = threading.Event()
    worker = threading.Thread(
        target=batcher.drain, args=(handler,), kwargs={"stop": stop}, daemon=True
    )
    worker.start()
    typists = [threading.Thread(target=typist(u)) for u in USERS]
    for thread in typists:
        thread.start()
    for thread in typists:
        thread.join()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = batcher.stats()
        if stats.stored_messages == 0 and stats.in_flight == 0:
            break
        time.sleep(0.1)
    stop.set()
    worker.join(timeout=10)

    sent = sum(len(u.burst) for u in USERS)
    stats = batcher.stats()
    batcher.close()
    say(
        f"done: {sent} messages pushed, {len(answered)} answered in"
        f" {stats.acked} batches, {sent - len(answered)} lost"
    )
    return 0 if len(answered) == sent else 1
