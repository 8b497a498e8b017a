"""Handlers slower than the lease, with and without drain's lease renewal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rapidfire import Batch, Batcher, BatchPolicy, RedisConfig

from .conftest import drain_in_thread, wait_until

pytestmark = pytest.mark.timeout(60)

ALICE = "15550000001"
LEASE = 0.5
SLOW = 3 * LEASE  # drain renews every LEASE / 3


@pytest.fixture
def pair(real_config: RedisConfig) -> Iterator[tuple[Batcher, Batcher]]:
    """Two workers' batchers on one namespace."""
    policy = BatchPolicy(
        debounce=0.05,
        max_wait=0.2,
        lease=LEASE,
        retry_backoff=0.05,
        retry_backoff_max=0.2,
    )
    first, second = Batcher(real_config, policy), Batcher(real_config, policy)
    yield first, second
    first.close()
    second.close()


class Recorder:
    """A handler per worker that is slow on the first delivery and notes each
    call: worker, batch id, attempt, and whether it still held the batch
    when it would have sent the reply."""

    def __init__(self, owner: Batcher) -> None:
        self.owner = owner
        self.calls: list[tuple[str, str, int, bool]] = []
        self.lock = threading.Lock()

    def handler(self, worker: str, batcher: Batcher) -> Callable[[Batch], None]:
        def handle(batch: Batch) -> None:
            if batch.attempt == 1:
                time.sleep(SLOW)
            owns = batcher.owns(batch)
            with self.lock:
                self.calls.append((worker, batch.id, batch.attempt, owns))

        return handle


def test_drain_renews_the_lease_so_a_slow_handler_stays_the_only_one(
    pair: tuple[Batcher, Batcher], figures: dict[str, Any]
):
    first, second = pair
    receipt = first.push(ALICE, "needs a long think")
    recorder = Recorder(first)
    options: dict[str, Any] = {"grace": 5.0}

    with (
        drain_in_thread(first, recorder.handler("first", first), **options) as one,
        drain_in_thread(second, recorder.handler("second", second), **options) as two,
    ):
        wait_until(lambda: first.stats().stored_messages == 0, what="the ack")
    stats = first.stats()
    reports = [one["report"], two["report"]]
    figures.update(pushed=1, delivered=1, lease_redeliveries=0, lost=0)

    assert [(c[1], c[2], c[3]) for c in recorder.calls] == [(receipt.batch_id, 1, True)]
    assert sum(r.handled for r in reports) == 1
    assert sum(r.lost for r in reports) == 0
    assert (stats.claimed, stats.acked, stats.ready_reasons["lease_expired"]) == (
        1,
        1,
        0,
    )


def test_without_renewal_the_old_holder_is_refused_and_the_duplicate_shows(
    pair: tuple[Batcher, Batcher], figures: dict[str, Any]
):
    first, second = pair
    receipt = first.push(ALICE, "needs a long think")
    recorder = Recorder(first)
    options: dict[str, Any] = {"grace": 5.0, "renew": False}

    with (
        drain_in_thread(first, recorder.handler("first", first), **options) as one,
        drain_in_thread(second, recorder.handler("second", second), **options) as two,
    ):
        wait_until(lambda: len(recorder.calls) == 2, what="two deliveries")
        wait_until(lambda: first.stats().stored_messages == 0, what="the ack")
    stats = first.stats()
    by_worker = {"first": one["report"], "second": two["report"]}
    slow, fast = sorted(recorder.calls, key=lambda call: call[2])
    figures.update(pushed=1, handled=2, lease_redeliveries=1, lost=0)

    assert (slow[1], slow[2], slow[3]) == (receipt.batch_id, 1, False)
    assert (fast[1], fast[2], fast[3]) == (receipt.batch_id, 2, True)
    assert slow[0] != fast[0]
    assert (by_worker[slow[0]].handled, by_worker[slow[0]].lost) == (0, 1)
    assert (by_worker[fast[0]].handled, by_worker[fast[0]].lost) == (1, 0)
    assert (stats.claimed, stats.acked, stats.ready_reasons["lease_expired"]) == (
        2,
        1,
        1,
    )
