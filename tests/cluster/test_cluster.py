"""One namespace across the primaries of a real Redis Cluster."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from rapidfire import (
    Batch,
    Batcher,
    BatchPolicy,
    LayoutMismatchError,
    RedisConfig,
    RedisUnavailableError,
)
from rapidfire._config import CLUSTER_SHARDS
from rapidfire._executor import SyncExecutor
from rapidfire._keys import Layout
from tests.conftest import FakeClock, unique_namespace
from tests.faults.conftest import TcpProxy

from .conftest import (
    cluster_url,
    delete_cluster_namespace,
    namespace_keys_per_node,
    primaries,
)

pytestmark = pytest.mark.timeout(60)

POLICY = BatchPolicy(debounce=1.0, max_wait=5.0, lease=10.0, max_attempts=2)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def batcher(cluster_config: RedisConfig, clock: FakeClock) -> Iterator[Batcher]:
    with Batcher(cluster_config, POLICY, clock=clock) as b:
        yield b


def slot_of(node: redis.Redis, key: str | bytes) -> int:
    return int(node.execute_command("CLUSTER", "KEYSLOT", key))


def test_the_cycle_runs_with_conversations_on_every_primary(
    batcher: Batcher, cluster_config: RedisConfig, clock: FakeClock
):
    conversations = [f"4477009{i:05d}" for i in range(60)]
    for conversation in conversations:
        batcher.push(conversation, f"{conversation}:1")
        batcher.push(conversation, f"{conversation}:2", dedupe_id="wamid.2")
        batcher.push(conversation, f"{conversation}:2", dedupe_id="wamid.2")

    per_node = namespace_keys_per_node(cluster_config)
    node = primaries(cluster_config)[0]
    layout = Layout(cluster_config.namespace, batcher.protocol.shard_count)
    wrong_slot = [
        c
        for c in conversations
        for key in (layout.conversation(c).messages, layout.conversation(c).batches)
        if slot_of(node, key) != slot_of(node, layout.conversation(c).shard.ready)
    ]
    sizes = {name: node.dbsize() for name, node in _nodes(cluster_config)}

    assert batcher.protocol.shard_count == CLUSTER_SHARDS == 256
    assert len(per_node) == 3
    assert all(len(keys) > 10 for keys in per_node.values())
    assert all(size > 0 for size in sizes.values())
    assert wrong_slot == []
    assert batcher.claim(100) == []  # the quiet window has not passed

    clock.advance(1.1)
    first = batcher.claim(100)
    assert sorted(b.conversation for b in first) == sorted(conversations)
    assert all(
        b.messages == (f"{b.conversation}:1", f"{b.conversation}:2") for b in first
    )
    kept, dropped = first[:20], first[20:]
    assert all(batcher.ack(b) for b in kept)

    # The others' holder went away: their leases run out and they come back.
    clock.advance(10.1)
    again = batcher.claim(100)
    assert {b.id for b in again} == {b.id for b in dropped}
    assert {(b.attempt, b.reason) for b in again} == {(2, "lease_expired")}
    assert not any(batcher.ack(b) for b in dropped)  # fenced off

    # Half fail twice more: max_attempts=2 sends them to the dead letters.
    failing, fine = again[:10], again[10:]
    assert all(batcher.ack(b) for b in fine)
    assert {batcher.nack(b, error="send failed") for b in failing} == {"dead"}
    dead = batcher.dead_letters()
    assert sorted(d.id for d in dead) == sorted(b.id for b in failing)
    assert {d.error for d in dead} == {"send failed"}

    # A flush makes an open batch ready at once, on whichever node it lives.
    batcher.push(conversations[0], "late")
    assert batcher.flush(conversations[0]) == 1
    (late,) = batcher.claim(10)
    assert late.messages == ("late",)
    assert late.reason == "flush"
    assert batcher.ack(late)

    assert batcher.requeue(dead[0]) == 2
    report = batcher.drain(lambda batch: None, until_idle=True)
    stats = batcher.stats()
    assert report.handled == 1
    assert (stats.pending, stats.in_flight, stats.stored_messages) == (0, 0, 0)
    assert (stats.pushed, stats.duplicates, stats.dead) == (121, 60, 9)
    assert stats.acked == 20 + 30 + 1 + 1


def _nodes(config: RedisConfig) -> list[tuple[str, redis.Redis]]:
    out = []
    for node in primaries(config):
        kwargs = node.connection_pool.connection_kwargs
        out.append((f"{kwargs['host']}:{kwargs['port']}", node))
    return out


ATTACKS = ["{a}", "x{a}y", "}{", "{}", "{", "}", "{{a}}", "a}{b", "ünï{cødé}", "😀{😀}"]


def test_braces_in_conversation_ids_steer_no_key(
    batcher: Batcher, cluster_config: RedisConfig, clock: FakeClock
):
    for i, conversation in enumerate(ATTACKS):
        batcher.push(conversation, i)
        batcher.push("a", "plain")  # what "{a}" would collide with if tags leaked
    node = primaries(cluster_config)[0]
    layout = Layout(cluster_config.namespace, batcher.protocol.shard_count)
    slots = {
        c: {
            slot_of(node, key)
            for key in (
                layout.conversation(c).messages,
                layout.conversation(c).batches,
                layout.conversation(c).shard.ready,
            )
        }
        for c in [*ATTACKS, "a"]
    }
    keys = [layout.conversation(c).messages for c in [*ATTACKS, "a"]]

    clock.advance(1.1)
    got = {b.conversation: b.messages for b in batcher.claim(100)}

    assert all(len(s) == 1 for s in slots.values()), slots
    assert len(set(keys)) == len(keys)
    assert got == {**{c: (i,) for i, c in enumerate(ATTACKS)}, "a": ("plain",) * 10}


def test_a_different_shard_count_is_refused_by_name(
    cluster_config: RedisConfig, clock: FakeClock
):
    with Batcher(cluster_config, POLICY, clock=clock) as first:
        first.push("447700900001", "hi")
    other = RedisConfig.from_url(
        cluster_config.url, namespace=cluster_config.namespace, shards=8
    )
    with Batcher(other, POLICY, clock=clock) as second:
        with pytest.raises(LayoutMismatchError) as refused:
            second.push("447700900001", "hi again")
        message = str(refused.value)
        assert '"shards": 256' in message
        assert '"shards": 8' in message
        assert cluster_config.namespace in message


def test_cluster_mode_is_detected_from_one_seed_node():
    seed = cluster_url().split("://", 1)[1].split(",")[0]
    config = RedisConfig.from_url(f"redis://{seed}", namespace="detect-only")

    resolved = config.detect()

    assert (config.cluster, config.shards) == (None, None)
    assert (resolved.cluster, resolved.shards) == (True, CLUSTER_SHARDS)
    assert "(cluster)" in resolved.describe()
    client = resolved.client()
    assert isinstance(client, RedisCluster)
    assert len(client.get_primaries()) == 3
    client.close()


def test_a_database_other_than_0_is_refused_on_a_cluster():
    seed = cluster_url().split("://", 1)[1].split(",")[0]
    with pytest.raises(ValueError, match=r"database 0 only.*db=2"):
        RedisConfig.from_url(f"redis://{seed}/2").detect()
    with pytest.raises(ValueError, match="db must be 0 on a Redis Cluster, got 2"):
        RedisConfig.from_url(cluster_url(), db=2)


def test_scripts_are_reloaded_on_each_node_after_noscript(
    batcher: Batcher, cluster_config: RedisConfig, clock: FakeClock
):
    conversations = [f"4477008{i:05d}" for i in range(30)]
    for conversation in conversations:
        batcher.push(conversation, 1)
    for node in primaries(cluster_config):
        node.script_flush()
        node.close()

    batcher.push_many([(c, 2) for c in conversations])
    clock.advance(1.1)
    claimed = batcher.claim(100)
    for node in primaries(cluster_config):
        node.script_flush()
        node.close()
    acked = [batcher.ack(b) for b in claimed]

    assert sorted(b.conversation for b in claimed) == sorted(conversations)
    assert all(b.messages == (1, 2) for b in claimed)
    assert all(acked)


def test_an_idle_worker_hears_deadlines_of_every_node(cluster_config: RedisConfig):
    """Wakes go out with PUBLISH, which a cluster passes to every node."""
    policy = BatchPolicy(debounce=0.3, max_wait=2.0, lease=10.0)
    handled: list[tuple[Batch, float]] = []
    done = threading.Event()
    conversations = [f"4477007{i:05d}" for i in range(12)]
    with (
        Batcher(cluster_config, policy) as worker,
        Batcher(cluster_config, policy) as producer,
    ):

        def handle(batch: Batch) -> None:
            handled.append((batch, time.monotonic()))
            if len(handled) == len(conversations):
                done.set()

        thread = threading.Thread(
            target=worker.drain, args=(handle,), kwargs={"stop": done}, daemon=True
        )
        thread.start()
        time.sleep(1.0)  # the worker has claimed nothing and sleeps
        pushed_at = time.monotonic()
        for conversation in conversations:
            producer.push(conversation, "hi")
        assert done.wait(10), f"{len(handled)} of {len(conversations)} handled"
        thread.join(10)

    nodes = Counter(
        Layout(cluster_config.namespace, CLUSTER_SHARDS)
        .conversation(b.conversation)
        .shard.index
        for b, _ in handled
    )
    latest = max(at for _, at in handled) - pushed_at
    assert len(nodes) > 3
    # Without wakes the worker would wait for its 30 s resync.
    assert latest < 5.0


def test_a_worker_given_one_seed_node_serves_every_shard():
    """With cluster mode left to detection, the first call may be drain()."""
    seed = cluster_url().split("://", 1)[1].split(",")[0]
    config = RedisConfig.from_url(f"redis://{seed}", namespace=unique_namespace("c"))
    policy = BatchPolicy(debounce=0.05, max_wait=1.0, lease=10.0)
    conversations = [f"4477005{i:05d}" for i in range(40)]
    try:
        with Batcher(config, policy) as producer:
            for conversation in conversations:
                producer.push(conversation, "hi")
        handled: list[str] = []
        with Batcher(config, policy) as worker:
            report = worker.drain(
                lambda b: handled.append(b.conversation), until_idle=True
            )

        assert report.handled == len(conversations)
        assert sorted(handled) == sorted(conversations)
    finally:
        delete_cluster_namespace(
            RedisConfig.from_url(cluster_url(), namespace=config.namespace)
        )


def test_a_pipelined_push_whose_reply_is_lost_is_not_sent_again(
    cluster_config: RedisConfig,
):
    """redis-py's sync cluster pipeline resends, by itself, a command whose
    reply a connection error took away: a push without a dedupe id would then
    be stored twice. rapidfire's executor sends it once and reports the error."""
    conversation = "447700900777"
    layout = Layout(cluster_config.namespace, CLUSTER_SHARDS)
    ready_key = layout.conversation(conversation).shard.ready
    with Batcher(cluster_config, POLICY) as batcher:
        batcher.stats()  # the layout is recorded, the scripts are loaded
        plain = cluster_config.client()
        assert isinstance(plain, RedisCluster)
        owner = plain.get_node_from_key(ready_key)
        nodes = [(n.host, n.port) for n in plain.get_primaries()]
        plain.close()

        proxies = {node: TcpProxy(node[1]) for node in nodes}
        options = dataclasses.replace(
            cluster_config, command_timeout=0.5
        )._cluster_options()
        client = RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", proxies[nodes[0]].port)],
            address_remap=lambda address: (
                ("127.0.0.1", proxies[address].port) if address in proxies else address
            ),
            **options,
        )
        executor = SyncExecutor(client, "proxied", retries=0, cluster=True)
        calls, _ = batcher.protocol.push_calls(
            [(conversation, "once"), ("447700900778", "too")]
        )
        try:
            client.ping(target_nodes=client.get_node_from_key(ready_key))
            # The pooled connection to the owner loses its replies; a new one
            # would not, as after a connection that died after the request.
            proxies[(owner.host, owner.port)].lose_replies()
            with pytest.raises(RedisUnavailableError):
                executor.run_many(calls)
        finally:
            client.close()
            for proxy in proxies.values():
                proxy.close()
        time.sleep(0.3)
        state = batcher.inspect(conversation)

    assert state.stored_messages == 1


def test_claim_peeks_at_every_shard_once_and_claims_where_there_is_work(
    batcher: Batcher, cluster_config: RedisConfig, clock: FakeClock
):
    conversations = [f"4477003{i:05d}" for i in range(5)]
    batcher.push("447700300999", "warm-up")
    clock.advance(1.1)
    (warm,) = batcher.claim(10)  # every node has loaded the scripts now
    assert batcher.ack(warm)
    for conversation in conversations:
        batcher.push(conversation, "hi")
    clock.advance(1.1)
    nodes = primaries(cluster_config)

    def scripts_run() -> int:
        return sum(
            int(n.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
            for n in nodes
        )

    before = scripts_run()
    claimed = batcher.claim(10)
    calls = scripts_run() - before
    empty_before = scripts_run()
    nothing = batcher.claim(10)
    empty_calls = scripts_run() - empty_before
    for node in nodes:
        node.close()

    assert sorted(b.conversation for b in claimed) == sorted(conversations)
    assert nothing == []
    # One peek per shard, then one claim per shard that had work; none then.
    shards = {batcher.protocol.layout.shard_of(c) for c in conversations}
    assert calls == CLUSTER_SHARDS + len(shards)
    assert empty_calls == CLUSTER_SHARDS


def test_cluster_false_on_a_cluster_node_is_named_not_a_raw_redirect(
    cluster_config: RedisConfig,
):
    from rapidfire import RedisCommandError
    from rapidfire._doctor import diagnose

    seed = cluster_url().split("://", 1)[1].split(",")[0]
    wrong = RedisConfig.from_url(
        f"redis://{seed}", namespace=cluster_config.namespace, cluster=False
    )
    conversations = [f"4477001{i:05d}" for i in range(20)]  # some slots elsewhere
    batcher = Batcher(wrong, POLICY)
    try:
        with pytest.raises(RedisCommandError) as refused:
            batcher.push_many([(c, "hi") for c in conversations])
    finally:
        batcher.close()
    report = diagnose(wrong)

    assert "is a node of a Redis Cluster" in str(refused.value)
    assert "RAPIDFIRE_REDIS_CLUSTER=1" in str(refused.value)
    assert not report.healthy
    assert any(
        f.check == "cluster" and "cluster=False" in f.message for f in report.findings
    )


def test_the_doctor_warns_when_few_shards_leave_primaries_idle(
    cluster_config: RedisConfig,
):
    from rapidfire._doctor import diagnose

    few = dataclasses.replace(
        cluster_config, shards=2, namespace=f"{cluster_config.namespace}-few"
    )
    try:
        for config in (few, cluster_config):
            with Batcher(config, POLICY) as batcher:
                batcher.push("447700900123", "hi")
        report = diagnose(few)
        full = diagnose(cluster_config)
    finally:
        delete_cluster_namespace(few)
    (spread,) = [f for f in report.findings if f.check == "cluster"]
    (even,) = [f for f in full.findings if f.check == "cluster"]

    assert spread.level == "warning"
    assert "on 1 of 3 primaries" in spread.message or "on 2 of 3" in spread.message
    assert even.level == "ok"
    assert f"{CLUSTER_SHARDS} shard(s) on 3 of 3 primaries" in even.message
