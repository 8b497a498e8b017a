"""Three ``rapidfire worker`` processes share one namespace of the cluster.

A producer pushes bursts to a hundred conversations whose shards fall on all
three primaries; the workers, started as a deployment starts them (the
cluster's URL and the namespace in the environment), split the batches between
them. What a user relies on: each batch handled once (a second delivery only
after a lease ran out, and then as the same batch with a higher attempt),
every message delivered, each conversation's batches one after the other and
in push order, and every process doing its share. One worker is killed
halfway, as a crashed host is: only the batch it had in hand is delivered
again, to another process, once its lease has run out.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from rapidfire import Batcher, BatchPolicy, RedisConfig
from rapidfire._keys import Layout, shard_tag
from tests.cluster.conftest import namespace_keys_per_node
from tests.faults.conftest import Worker, start_worker, wait_until

__all__ = ["start_worker"]  # a fixture, imported to be used here

pytestmark = pytest.mark.timeout(90)

SEED = 7
CONVERSATIONS = 100
ROUNDS = 4  # bursts per conversation, most of them a batch of their own
BURST = (2, 5)  # messages per burst
WORKERS = 3
DEBOUNCE, MAX_WAIT, LEASE = 0.15, 1.0, 2.0
POLICY = BatchPolicy(debounce=DEBOUNCE, max_wait=MAX_WAIT, lease=LEASE)
POLICY_ENV = {
    "RAPIDFIRE_DEBOUNCE": str(DEBOUNCE),
    "RAPIDFIRE_MAX_WAIT": str(MAX_WAIT),
    "RAPIDFIRE_LEASE": str(LEASE),
    "RAPIDFIRE_MAX_ATTEMPTS": "5",
}
HANDLING = 0.02  # seconds each handler call takes
DOOMED_HANDLING = 0.3  # in the worker that is killed: it is caught mid-batch
BOUND = 30.0


def primaries_by_slot(config: RedisConfig) -> Callable[[int], str]:
    """The ``host:port`` of the primary serving a slot, from the client's map."""
    client = config.client()
    assert isinstance(client, RedisCluster)
    owners = {
        slot: client.nodes_manager.get_node_from_slot(slot).name
        for slot in range(16384)
    }
    client.close()
    return owners.__getitem__


def spread_conversations(config: RedisConfig) -> tuple[list[str], dict[str, str]]:
    """CONVERSATIONS ids and the primary each one's keys live on."""
    layout = Layout(config.namespace, config.shards or 1)
    owner = primaries_by_slot(config)
    conversations = [f"4477{i:08d}" for i in range(CONVERSATIONS)]
    where = {
        c: owner(key_slot(shard_tag(layout.shards, layout.shard_of(c)).encode()))
        for c in conversations
    }
    return conversations, where


def test_three_worker_processes_share_a_namespace_spread_over_the_primaries(
    cluster_config: RedisConfig,
    start_worker: Callable[..., Worker],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first worker is slow and is killed (SIGKILL) with a batch in hand
    halfway through: that batch, and only it, comes back after its lease."""
    rng = random.Random(SEED)
    conversations, where = spread_conversations(cluster_config)
    primaries = sorted(set(where.values()))
    assert len(primaries) == 3, where  # the suite's cluster has three primaries
    workers = [
        start_worker(
            cluster_config.url,
            cluster_config.namespace,
            "handle",
            SLOW=str(DOOMED_HANDLING if i == 0 else HANDLING),
            **POLICY_ENV,
        )
        for i in range(WORKERS)
    ]
    doomed = workers[0]
    pushed: dict[str, list[str]] = defaultdict(list)
    with Batcher(cluster_config, POLICY) as producer:
        # Wait until every worker is up (heartbeats) before any work exists.
        wait_until(
            lambda: (
                len({p.pid for p in producer.peers() if p.role == "worker"}) >= WORKERS
            ),
            timeout=BOUND,
            what="three workers seen",
        )
        keys_during_run: dict[str, int] = {}
        for round_ in range(ROUNDS):
            order = conversations[:]
            rng.shuffle(order)
            for conversation in order:
                for _ in range(rng.randint(*BURST)):
                    n = len(pushed[conversation])
                    text = f"{conversation}#{n}"
                    dedupe = f"wamid.{conversation}.{n}" if n % 2 else None
                    receipt = producer.push(conversation, text, dedupe_id=dedupe)
                    assert not receipt.duplicate
                    pushed[conversation].append(text)
            if round_ == 0:
                keys_during_run = {
                    node: len(keys)
                    for node, keys in namespace_keys_per_node(cluster_config).items()
                }
            if round_ == ROUNDS // 2:
                wait_until(
                    lambda: len(doomed.events("start")) > len(doomed.events("done")),
                    timeout=BOUND,
                    what="the slow worker in the middle of a batch",
                )
                doomed.process.send_signal(signal.SIGKILL)
            time.sleep(DEBOUNCE * 3)  # quiet: the bursts become batches
        total = sum(len(texts) for texts in pushed.values())

        def handled() -> int:
            return sum(len(e["messages"]) for w in workers for e in w.events("done"))

        wait_until(lambda: handled() >= total, timeout=BOUND, what="every message")
        stats = wait_until(
            lambda: (s := producer.stats()).stored_messages == 0 and s,
            timeout=BOUND,
            what="every batch acknowledged",
        )
        peers = {p.pid: p.config for p in producer.peers() if p.role == "worker"}
    for worker in workers[1:]:
        worker.process.send_signal(signal.SIGTERM)
    codes = [worker.wait() for worker in workers]

    # -- what each process handled ---------------------------------------------
    starts = [e for w in workers for e in w.events("start", timed=True)]
    dones = [e for w in workers for e in w.events("done", timed=True)]
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sorted(starts, key=lambda e: e["claimed_at"]):
        by_id[event["id"]].append(event)
    redelivered = [e for events in by_id.values() for e in events[1:]]
    finished = {(e["id"], e["attempt"]) for e in dones}
    orphans = [
        e
        for e in doomed.events("start", timed=True)
        if (e["id"], e["attempt"]) not in finished
    ]
    per_process = {w.process.pid: len(w.events("done")) for w in workers}
    figures = (
        f"figures: pushed={total} batches={len(by_id)} handled={len(dones)}"
        f" redelivered={len(redelivered)} killed_in_hand={len(orphans)}"
        f" per_process={sorted(per_process.values())}"
        f" keys_per_primary={sorted(keys_during_run.values())}"
    )
    with capsys.disabled():
        print(f"\n{figures}")

    assert codes == [-signal.SIGKILL] + [0] * (WORKERS - 1), [
        w.output()[-2000:] for w in workers
    ]

    # Each batch handled once, or again only after its lease ran out: here,
    # exactly the batch the killed worker had in hand.
    assert len(orphans) == 1, figures
    assert [(e["id"], e["attempt"]) for e in redelivered] == [
        (e["id"], e["attempt"] + 1) for e in orphans
    ], figures
    for events in by_id.values():
        first, *again = events
        assert first["attempt"] == 1, first
        for previous, event in zip(events, again):
            assert event["reason"] == "lease_expired", events
            assert event["messages"] == first["messages"], events
            assert event["pid"] != doomed.process.pid, events
            assert event["claimed_at"] >= previous["claimed_at"] + LEASE - 0.1
    assert Counter((e["id"], e["attempt"]) for e in dones) == Counter(
        (e["id"], e["attempt"]) for e in starts if e not in orphans
    ), "a handler started and never finished"

    # Every message, in one batch only, each conversation's batches in order
    # and never two of them at once.
    batches_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for events in by_id.values():
        batches_of[events[0]["conversation"]].append(events[0])
    assert set(batches_of) == set(conversations)
    done_at = {e["id"]: e["at"] for e in dones}
    for conversation, batches in batches_of.items():
        batches.sort(key=lambda e: e["claimed_at"])
        delivered = [text for b in batches for text in b["messages"]]
        assert delivered == pushed[conversation], conversation
        for earlier, later in pairwise(batches):
            assert done_at[earlier["id"]] <= later["at"], (earlier, later)
    assert len(by_id) >= CONVERSATIONS * ROUNDS / 2, figures  # bursts batched

    # The work was split, and the namespace spread over the primaries.
    assert all(count > 0 for count in per_process.values()), figures
    assert set(per_process) <= set(peers), (peers, per_process)
    for config in peers.values():  # each read the cluster URL as a cluster
        assert config == cluster_config.describe(), config
    assert sorted(keys_during_run) == primaries, keys_during_run
    assert all(count > 0 for count in keys_during_run.values()), keys_during_run

    assert (stats.expired_batches, stats.dead, stats.pending) == (0, 0, 0), stats
    assert (stats.in_flight, stats.stored_messages) == (0, 0), stats
    assert stats.pushed == total, stats
    assert stats.acked == len(by_id), stats
    assert stats.claimed == len(starts), stats
