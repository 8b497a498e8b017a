"""``rapidfire worker`` processes killed or stopped while a handler runs."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rapidfire import Batcher, BatchPolicy, RedisConfig

from .conftest import Worker, wait_until

pytestmark = pytest.mark.timeout(60)

ALICE = "15550000001"
BOB = "15550000002"
LEASE = 1.0
POLICY_ENV = {
    "RAPIDFIRE_DEBOUNCE": "0.1",
    "RAPIDFIRE_MAX_WAIT": "1",
    "RAPIDFIRE_LEASE": str(LEASE),
}
StartWorker = Callable[..., Worker]
KINDS = ["handle", "handle_async"]


@pytest.fixture
def producer(real_config: RedisConfig) -> Iterator[Batcher]:
    batcher = Batcher(real_config, BatchPolicy(debounce=0.1, max_wait=1, lease=LEASE))
    yield batcher
    batcher.close()


def started(
    start_worker: StartWorker, config: RedisConfig, handler: str = "handle", **env: Any
) -> Worker:
    return start_worker(config.url, config.namespace, handler, **POLICY_ENV, **env)


def settled(producer: Batcher) -> Any:
    """The namespace's stats once nothing is stored any more."""
    return wait_until(
        lambda: (stats := producer.stats()).stored_messages == 0 and stats,
        what="every message acknowledged",
    )


def test_a_batch_whose_worker_is_killed_comes_back_once_after_its_lease(
    real_config: RedisConfig,
    start_worker: StartWorker,
    producer: Batcher,
    figures: dict[str, Any],
):
    doomed = started(start_worker, real_config, SLOW="30")
    producer.push(ALICE, "hi", dedupe_id="wamid.1")
    producer.push(ALICE, "are you there?", dedupe_id="wamid.2")
    (first,) = doomed.wait_for("start")
    doomed.process.send_signal(signal.SIGKILL)
    doomed.wait()
    heir = started(start_worker, real_config)
    (again,) = heir.wait_for("done")
    stats = settled(producer)
    heir.process.send_signal(signal.SIGTERM)
    code = heir.wait()
    figures.update(pushed=2, delivered=2, lease_redeliveries=1, lost=0)

    assert doomed.events("done") == []
    assert first["attempt"] == 1
    assert (again["id"], again["attempt"], again["reason"]) == (
        first["id"],
        2,
        "lease_expired",
    )
    assert again["messages"] == ["hi", "are you there?"]
    assert heir.events("start") == [{**again, "event": "start"}]
    assert (stats.claimed, stats.acked, stats.in_flight, stats.pending) == (2, 1, 0, 0)
    assert code == 0, heir.output()


@pytest.mark.parametrize(
    ("signum", "handler"),
    [
        (signal.SIGTERM, "handle"),
        (signal.SIGINT, "handle"),
        (signal.SIGTERM, "handle_async"),
    ],
    ids=["SIGTERM", "SIGINT", "SIGTERM-async"],
)
def test_a_stopped_worker_finishes_the_batch_in_hand_and_claims_no_other(
    real_config: RedisConfig,
    start_worker: StartWorker,
    producer: Batcher,
    signum: signal.Signals,
    handler: str,
    figures: dict[str, Any],
):
    worker = started(start_worker, real_config, handler, SLOW="1.5")
    producer.push(ALICE, "slow one")
    worker.wait_for("start")
    producer.push(BOB, "waits for the next worker")
    producer.flush(BOB)
    worker.process.send_signal(signum)
    code = worker.wait()
    alice = producer.inspect(ALICE)
    bob = producer.inspect(BOB)
    stats = producer.stats()
    figures.update(pushed=2, delivered=1, left_pending=1, lost=0)

    assert code == 0, worker.output()
    assert [(e["event"], e["messages"]) for e in worker.events()] == [
        ("start", ["slow one"]),
        ("done", ["slow one"]),
    ]
    assert (alice.stored_messages, alice.in_flight) == (0, False)
    assert [(b.size, b.attempt) for b in bob.batches] == [(1, 0)]
    assert (stats.claimed, stats.acked, stats.released) == (1, 1, 0)
    assert signum.name in worker.output()


@pytest.mark.parametrize("handler", KINDS)
def test_a_batch_that_outlasts_the_grace_period_is_given_back_unpenalised(
    real_config: RedisConfig,
    start_worker: StartWorker,
    producer: Batcher,
    handler: str,
    figures: dict[str, Any],
):
    stopping = started(
        start_worker, real_config, handler, SLOW="30", RAPIDFIRE_SHUTDOWN_GRACE="0.5"
    )
    producer.push(ALICE, "long job", dedupe_id="wamid.1")
    (first,) = stopping.wait_for("start")
    stopping.process.send_signal(signal.SIGTERM)
    wait_until(lambda: producer.stats().released == 1, what="the batch given back")
    heir = started(start_worker, real_config, handler)
    (again,) = heir.wait_for("done")
    stats = settled(producer)
    figures.update(pushed=1, delivered=1, given_back=1, lost=0)

    assert (again["id"], again["messages"]) == (first["id"], ["long job"])
    assert (first["attempt"], again["attempt"], again["reason"]) == (1, 1, "retry")
    assert (stats.claimed, stats.released, stats.retried, stats.acked) == (2, 1, 0, 1)
    assert "gave back 1 unfinished batch" in stopping.output()


@pytest.mark.parametrize(
    "handler",
    [
        "handle",
        "handle_async",
    ],
)
def test_a_worker_exits_soon_after_the_grace_period_even_if_a_handler_runs_on(
    real_config: RedisConfig,
    start_worker: StartWorker,
    producer: Batcher,
    handler: str,
):
    worker = started(
        start_worker, real_config, handler, SLOW="30", RAPIDFIRE_SHUTDOWN_GRACE="0.5"
    )
    producer.push(ALICE, "long job")
    worker.wait_for("start")
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=10)

    assert code == 0, worker.output()
    assert worker.events("done") == []
    assert producer.stats().released == 1


def test_a_second_signal_exits_at_once_and_the_batch_comes_back_after_its_lease(
    real_config: RedisConfig,
    start_worker: StartWorker,
    producer: Batcher,
    figures: dict[str, Any],
):
    impatient = started(start_worker, real_config, SLOW="30")
    producer.push(ALICE, "hi")
    (first,) = impatient.wait_for("start")
    impatient.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM" in impatient.output(), what="the first SIGTERM")
    impatient.process.send_signal(signal.SIGTERM)
    code = impatient.wait()
    heir = started(start_worker, real_config)
    (again,) = heir.wait_for("done")
    stats = settled(producer)
    figures.update(pushed=1, delivered=1, lease_redeliveries=1, lost=0)

    assert code == 128 + signal.SIGTERM
    assert impatient.events("done") == []
    assert (again["id"], again["attempt"], again["reason"]) == (
        first["id"],
        2,
        "lease_expired",
    )
    assert (stats.claimed, stats.released, stats.acked) == (2, 0, 1)
