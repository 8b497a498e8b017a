"""A network between rapidfire and Redis that cuts, stalls or loses replies,
played by a TCP proxy on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rapidfire import (
    Batch,
    Batcher,
    BatchPolicy,
    RedisConfig,
    RedisUnavailableError,
)

from ..conftest import unique_namespace
from .conftest import RedisServer, TcpProxy, drain_in_thread, wait_until

pytestmark = pytest.mark.timeout(60)

ALICE = "15550000001"
BOB = "15550000002"
CAROL = "15550000003"
TIMEOUT = 0.5
# A failing push takes at most (retries + 1) x (connect + command timeout) plus
# the retry backoff, about 2.2 s here. With the 5 s defaults it would be over
# 10 s: the bound is loose for a slow machine yet fails a timeout not applied.
FAIL_BOUND = 6.0
POLICY = BatchPolicy(
    debounce=0.05, max_wait=0.2, lease=0.6, retry_backoff=0.05, retry_backoff_max=0.2
)


@pytest.fixture
def network(
    redis_server: Callable[..., RedisServer], proxy: Callable[[int], TcpProxy]
) -> tuple[RedisServer, TcpProxy]:
    """A Redis of the test's own and a proxy in front of it."""
    server = redis_server()
    return server, proxy(server.port)


@pytest.fixture
def make_batcher() -> Iterator[Callable[..., Batcher]]:
    """Batchers of one namespace: through the proxy, or straight to Redis."""
    namespace = unique_namespace("net")
    made: list[Batcher] = []

    def make(url: str, retries: int = 1) -> Batcher:
        config = RedisConfig.from_url(
            url,
            namespace=namespace,
            connect_timeout=TIMEOUT,
            command_timeout=TIMEOUT,
            retries=retries,
        )
        made.append(Batcher(config, POLICY))
        return made[-1]

    yield make
    for batcher in made:
        batcher.close()


def take_all(batcher: Batcher, *conversations: str) -> dict[str, list[Any]]:
    """Each conversation's messages, claimed and acknowledged until nothing is
    stored; a message acknowledged twice would show twice."""
    taken: dict[str, list[Any]] = {c: [] for c in conversations}
    for conversation in conversations:
        batcher.flush(conversation)
    deadline = time.monotonic() + 10
    while batcher.stats().stored_messages and time.monotonic() < deadline:
        for batch in batcher.claim():
            if batcher.ack(batch):
                taken[batch.conversation] += batch.messages
        time.sleep(0.02)
    return taken


def timed_push(batcher: Batcher, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """The push's receipt or the exception it raised, and its duration."""
    start = time.monotonic()
    try:
        outcome: Any = batcher.push(*args, **kwargs)
    except RedisUnavailableError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_pushes_fail_in_time_naming_the_server_and_succeed_after_the_outage(
    network: tuple[RedisServer, TcpProxy],
    make_batcher: Callable[..., Batcher],
    fault: str,
    figures: dict[str, Any],
):
    server, proxy = network
    batcher = make_batcher(proxy.url())
    direct = make_batcher(server.url)
    batcher.push(ALICE, "before", dedupe_id="wamid.0")
    getattr(proxy, fault)()
    # The first push goes out on the pooled connection; the others need a new one.
    bare, bare_took = timed_push(batcher, BOB, "no dedupe id")
    failed = [
        timed_push(batcher, ALICE, f"during {i}", dedupe_id=f"wamid.{i}")
        for i in (1, 2, 3)
    ]
    proxy.heal()
    if fault == "stall":  # the bare push was held by the network, not lost
        wait_until(lambda: direct.inspect(BOB).stored_messages, what="late push")
    again = [
        batcher.push(ALICE, f"during {i}", dedupe_id=f"wamid.{i}") for i in (1, 2, 3)
    ]
    after = batcher.push(ALICE, "after", dedupe_id="wamid.4")
    taken = take_all(direct, ALICE, BOB)
    alice, bob = taken[ALICE], taken[BOB]
    errors = [bare, *(outcome for outcome, _ in failed)]
    figures.update(
        pushed=6,
        refused=len(errors),
        slowest_refusal=f"{max(bare_took, *(took for _, took in failed)):.2f}s",
        delivered=len(alice) + len(bob),
        duplicates=len(alice) - len(set(alice)),
        lost=5 - len(alice),
    )

    assert all(isinstance(e, RedisUnavailableError) for e in errors), errors
    assert all(e.where == proxy.where for e in errors)
    assert all(f"Redis at {proxy.where} is unreachable" in str(e) for e in errors)
    assert max(bare_took, *(took for _, took in failed)) < FAIL_BOUND
    assert [r.duplicate for r in again] == [False, False, False]
    assert not after.duplicate
    assert alice == ["before", "during 1", "during 2", "during 3", "after"]
    # Without a dedupe id rapidfire does not retry: a stalled push that
    # raised was still stored once, a cut one never reached Redis.
    assert bob == (["no dedupe id"] if fault == "stall" else [])


def test_a_push_whose_reply_is_lost_is_stored_once(
    network: tuple[RedisServer, TcpProxy],
    make_batcher: Callable[..., Batcher],
    figures: dict[str, Any],
):
    server, proxy = network
    batcher = make_batcher(proxy.url())
    direct = make_batcher(server.url)
    batcher.push(BOB, "warm up")
    proxy.lose_replies()  # rapidfire's own retry goes out on a new connection
    by_rapidfire = batcher.push(ALICE, "retried by rapidfire", dedupe_id="wamid.1")
    proxy.heal()
    batcher.push(BOB, "warm up")
    proxy.lose_replies(everywhere=True)  # every retry of rapidfire fails too
    refused, _ = timed_push(
        batcher, ALICE, "retried by the caller", dedupe_id="wamid.2"
    )
    proxy.heal()
    by_caller = batcher.push(ALICE, "retried by the caller", dedupe_id="wamid.2")
    proxy.lose_replies()
    bare, _ = timed_push(batcher, ALICE, "no dedupe id")
    proxy.heal()
    alice = take_all(direct, ALICE, BOB)[ALICE]
    figures.update(
        pushed=3,
        replies_lost=3,
        delivered=len(alice),
        duplicates=len(alice) - len(set(alice)),
        lost=3 - len(set(alice)),
        receipt_duplicate_flags=f"{by_rapidfire.duplicate}/{by_caller.duplicate}",
    )

    assert isinstance(refused, RedisUnavailableError)
    assert isinstance(bare, RedisUnavailableError)
    assert by_caller.duplicate
    assert by_rapidfire.batch_id == by_caller.batch_id
    # The push without a dedupe id raised, yet was stored, once: rapidfire did
    # not send it again on the new connection that would have worked.
    assert alice == ["retried by rapidfire", "retried by the caller", "no dedupe id"]


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_drain_worker_resumes_by_itself_after_an_outage(
    network: tuple[RedisServer, TcpProxy],
    make_batcher: Callable[..., Batcher],
    fault: str,
    figures: dict[str, Any],
):
    server, proxy = network
    worker = make_batcher(proxy.url())
    producer = make_batcher(server.url)
    handled: list[tuple[str, tuple[Any, ...], int]] = []

    def handler(batch: Batch) -> None:
        handled.append((batch.conversation, batch.messages, batch.attempt))

    with drain_in_thread(worker, handler, grace=2.0) as running:
        producer.push(ALICE, "before")
        wait_until(lambda: producer.stats().acked == 1, what="the ack before")
        getattr(proxy, fault)()
        for i, conversation in enumerate((ALICE, BOB, CAROL)):
            producer.push(conversation, f"during {i}", dedupe_id=f"wamid.{i}")
        time.sleep(1.5)  # the outage outlasts the timeouts and the batches' windows
        mid_outage = list(handled)
        proxy.heal()
        wait_until(
            lambda: producer.stats().acked == 4, timeout=20, what="the outage's work"
        )
    stats = producer.stats()
    report = running["report"]
    figures.update(
        pushed=4,
        delivered=sum(len(m) for _, m, _ in handled),
        lease_redeliveries=sum(a > 1 for _, _, a in handled),
        lost=stats.stored_messages,
    )

    # A claim sent into the stall runs once the stall ends, and its reply goes
    # nowhere: its batch comes back after the lease with attempt 2. So the
    # attempts are not asserted here; each message is handled once.
    assert mid_outage == [(ALICE, ("before",), 1)]
    assert sorted((c, m) for c, m, _ in handled) == [
        (ALICE, ("before",)),
        (ALICE, ("during 0",)),
        (BOB, ("during 1",)),
        (CAROL, ("during 2",)),
    ]
    assert (report.handled, report.lost) == (4, 0)
    assert not running["alive"]
    assert (stats.stored_messages, stats.in_flight) == (0, 0)


def test_a_handler_cut_off_longer_than_its_lease_loses_it_to_another_worker(
    network: tuple[RedisServer, TcpProxy],
    make_batcher: Callable[..., Batcher],
    figures: dict[str, Any],
):
    server, proxy = network
    cut_off = make_batcher(proxy.url())
    other = make_batcher(server.url)
    go_on = threading.Event()
    started: list[tuple[str, int]] = []
    owned: list[tuple[str, int, bool]] = []

    def handler(name: str, batcher: Batcher) -> Callable[[Batch], None]:
        def handle(batch: Batch) -> None:
            started.append((name, batch.attempt))
            if name == "cut off":
                go_on.wait(timeout=15)
            owned.append((name, batch.attempt, batcher.owns(batch)))

        return handle

    options: dict[str, Any] = {"grace": 2.0}
    with drain_in_thread(cut_off, handler("cut off", cut_off), **options) as first:
        other.push(ALICE, "hi")
        wait_until(lambda: started, what="the first delivery")
        proxy.cut()
        with drain_in_thread(other, handler("other", other), **options) as second:
            wait_until(lambda: owned, what="the redelivery")
        proxy.heal()
        go_on.set()
        wait_until(lambda: len(owned) == 2, what="the cut-off handler's end")
    stats = other.stats()
    figures.update(pushed=1, handled=2, lease_redeliveries=1, lost=0)

    assert started == [("cut off", 1), ("other", 2)]
    assert owned == [("other", 2, True), ("cut off", 1, False)]
    assert (first["report"].handled, first["report"].lost) == (0, 1)
    assert (second["report"].handled, second["report"].lost) == (1, 0)
    assert (stats.stored_messages, stats.claimed, stats.acked) == (0, 2, 1)


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_is_how_often_a_failed_push_is_sent_again(
    network: tuple[RedisServer, TcpProxy],
    make_batcher: Callable[..., Batcher],
    retries: int,
):
    _, proxy = network
    batcher = make_batcher(proxy.url(), retries=retries)
    batcher.push(ALICE, "warm up")
    connections = proxy.accepted
    proxy.stall()  # each try times out, and each retry needs a new connection
    outcome, _ = timed_push(batcher, ALICE, "held", dedupe_id="wamid.1")
    proxy.heal()

    assert isinstance(outcome, RedisUnavailableError)
    assert proxy.accepted - connections == retries


def test_an_ack_waits_out_a_short_outage_instead_of_giving_the_batch_away(
    network: tuple[RedisServer, TcpProxy], make_batcher: Callable[..., Batcher]
):
    server, proxy = network
    batcher = make_batcher(proxy.url(), retries=0)
    direct = make_batcher(server.url)
    direct.push("15550000009", "answer me once")
    handled: list[int] = []

    def handler(batch):
        handled.append(batch.attempt)
        if len(handled) == 1:  # Redis vanishes as the handler finishes, for
            proxy.cut()  # less than the lease (0.6 s) that remains
            threading.Timer(0.3, proxy.heal).start()

    report = batcher.drain(handler, until_idle=True)
    stats = direct.stats()

    assert handled == [1]
    assert report.handled == 1
    assert report.lost == 0
    assert (stats.acked, stats.stored_messages, stats.in_flight) == (1, 0, 0)
