"""A busy slot migrated between primaries while producers push and workers claim.

The slot is moved the way ``redis-cli --cluster reshard`` moves one: IMPORTING
on the target, MIGRATING on the source, then GETKEYSINSLOT and MIGRATE (without
REPLACE) until the slot is empty on the source, then SETSLOT NODE on every
primary; and moved back and forth several times while the load runs. What a
user relies on through it: every message pushed is delivered, in push order,
each in one batch only (a redelivered batch is the same batch, and only a
lease that ran out brings one back), nothing counted as expired, nothing left
pending, and the keys where the cluster says the slot is.

Two more tests take one step at a time while the slot is MIGRATING: an ack
of a conversation's only batch, and a claim in a shard whose claims the
cluster lets run mid-migration.

These tests start a cluster of their own (in a temporary directory) and kill
it afterwards, so that the shared cluster of the suite never has a slot moved
under it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from rapidfire import Batch, Batcher, BatchPolicy, Observer, RedisConfig
from rapidfire._errors import RedisUnavailableError
from rapidfire._keys import Layout, ShardKeys, shard_tag
from tests.conftest import IN_CI, unique_namespace
from tests.redis_cluster import Cluster, start_cluster
from tests.servers import redis_server_binary

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SEED = 20240611
# (keys per MIGRATE, seconds the slot stays half moved) of each round: source
# -> target, back, ...; an odd count ends on the target. A window of 0 is as
# fast as redis-cli on a small slot; a refused request is resent for 3.5 s at
# least, so the longer windows stay well below that.
ROUNDS = [(10, 0.0), (2, 1.5), (10, 0.0), (1, 1.5), (10, 0.0)]
PAUSE = 0.7  # seconds of load on the new owner between two rounds
MIGRATE_TIMEOUT_MS = 5000
ROUND_BOUND = 5.0  # seconds one round may take
MAX_MIGRATE_CALLS = 500  # per round
DRAIN_BOUND = 25.0  # seconds to deliver what is left once the producers stop
BUSY_CONVERSATIONS = 6  # in the migrated shard; the first SPARSE go quiet often
SPARSE = 2
LEASE = 3.0
POLICY = BatchPolicy(debounce=0.05, max_wait=0.3, max_size=4, lease=LEASE)
HANDLING = 0.01  # seconds a handler takes, so that leases are held mid-move
RAW = {"NEVER_DECODE": True}  # redis-py option: the reply as Redis sent it


# -- the cluster of this module ---------------------------------------------------


def _need_redis_cli() -> None:
    if shutil.which("redis-cli") is None:
        if IN_CI:
            pytest.fail("redis-cli is not on PATH; CI must run this test")
        pytest.skip("redis-cli is not on PATH: this test creates its own cluster")


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-primary cluster of this module alone, killed afterwards."""
    redis_server_binary()
    _need_redis_cli()
    cluster = start_cluster(tmp_path_factory.mktemp("migration") / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Node:
    host: str
    port: int
    id: str
    client: redis.Redis

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, *args: Any) -> Any:
        return self.client.execute_command(*args)


@pytest.fixture
def nodes(own_cluster: Cluster) -> Iterator[list[Node]]:
    """A plain client on each primary of the module's cluster, whose slots
    are all settled (a test that failed mid-migration would leave one open)."""
    found = []
    try:
        for port in own_cluster.ports:
            client = redis.Redis("127.0.0.1", port, socket_timeout=10)
            found.append(Node("127.0.0.1", port, "", client))
            found[-1].id = client.execute_command("CLUSTER", "MYID").decode()
            # a slot being moved shows as [slot->-id] or [slot-<-id]
            assert b"[" not in client.execute_command("CLUSTER", "NODES", **RAW)
        yield found
    finally:
        for node in found:
            node.client.close()


def owner_seen_by(node: Node, slot: int) -> str:
    """The id of the primary that ``node`` says serves ``slot``."""
    for start, end, primary, *_ in node.command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return str(primary[2].decode())
    raise AssertionError(f"{node.name} says no primary serves slot {slot}")


def topology(nodes: list[Node]) -> str:
    """What each node says of the cluster, for a failure message."""
    views = []
    for node in nodes:
        try:
            view = node.client.execute_command("CLUSTER", "NODES", **RAW).decode()
        except redis.RedisError as exc:
            view = repr(exc)
        views.append(f"{node.name} ({node.id[:8]}) says:\n{view}")
    return "\n".join(views)


def layout_of(config: RedisConfig) -> Layout:
    """The namespace's key layout (a cluster's default shard count)."""
    assert config.shards is not None
    return Layout(config.namespace, config.shards)


def begin_migration(slot: int, source: Node, target: Node) -> None:
    target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
    source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)


def move_keys(
    slot: int, source: Node, target: Node, pipeline: int = 10, window: float = 0.0
) -> int:
    """MIGRATE the slot's keys, ``pipeline`` at a time, without REPLACE, until
    none is left on the source; returns how many moved.

    ``window`` spreads the calls over about that many seconds, as a slot of
    many keys or a slow link does: the slot stays half moved that long, longer
    than redis-py's own retries of TRYAGAIN last.
    """
    calls = -(-int(source.command("CLUSTER", "COUNTKEYSINSLOT", slot)) // pipeline)
    pause = min(0.25, window / max(calls, 1))
    moved = 0
    deadline = time.monotonic() + ROUND_BOUND
    for _ in range(MAX_MIGRATE_CALLS):
        keys = source.command("CLUSTER", "GETKEYSINSLOT", slot, pipeline)
        if not keys:
            return moved
        if time.monotonic() > deadline:
            raise AssertionError(
                f"slot {slot} still holds keys on {source.name} after"
                f" {ROUND_BOUND:g}s of MIGRATE"
            )
        try:
            source.command(
                "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS,
                "KEYS", *keys,
            )  # fmt: skip
        except redis.ResponseError as exc:
            if "BUSYKEY" not in str(exc):
                raise
            raise AssertionError(  # a finding: redis-cli reshard stops here
                f"MIGRATE of slot {slot} from {source.name} to {target.name}"
                f" failed with {exc}: keys {keys!r}; on the source:"
                f" {_types(source, keys)}; on the target: {_types(target, keys)}"
            ) from exc
        moved += len(keys)
        time.sleep(pause)
    raise AssertionError(f"slot {slot} did not empty in {MAX_MIGRATE_CALLS} calls")


def end_migration(slot: int, source: Node, target: Node, everyone: list[Node]) -> None:
    others = [n for n in everyone if n.id not in (source.id, target.id)]
    for node in [target, source, *others]:
        node.command("CLUSTER", "SETSLOT", slot, "NODE", target.id)


def migrate_slot(
    slot: int,
    source: Node,
    target: Node,
    everyone: list[Node],
    *,
    pipeline: int = 10,
    window: float = 0.0,
) -> int:
    """Move ``slot`` from ``source`` to ``target`` as ``redis-cli --cluster
    reshard`` does; returns how many keys moved."""
    begin_migration(slot, source, target)
    moved = move_keys(slot, source, target, pipeline, window)
    end_migration(slot, source, target, everyone)
    return moved


def refusals(nodes: list[Node]) -> dict[str, int]:
    """TRYAGAIN and ASK replies the nodes sent (their INFO errorstats)."""
    out = {"TRYAGAIN": 0, "ASK": 0}
    for node in nodes:
        for name, value in node.client.info("errorstats").items():
            kind = name.removeprefix("errorstat_")
            if kind in out:
                out[kind] += int(value["count"])
    return out


def _types(node: Node, keys: list[bytes]) -> dict[bytes, str]:
    out = {}
    for key in keys:
        with contextlib.suppress(redis.RedisError):  # an ASK reply: not here
            out[key] = node.command("TYPE", key).decode()
    return out


@dataclass(frozen=True)
class Shard:
    """The shard whose slot moves, its conversations, and where it is."""

    keys: ShardKeys
    slot: int
    conversations: list[str]
    source: Node
    target: Node


def shard_of(layout: Layout, nodes: list[Node]) -> Shard:
    """The shard of the first candidate conversation, and a dozen more of its
    conversations; the slot's owner is the source, another primary the
    target."""
    candidates = [f"1555{i:07d}" for i in range(3000)]
    index = layout.shard_of(candidates[0])
    slot = key_slot(shard_tag(layout.shards, index).encode())
    mine = [c for c in candidates if layout.shard_of(c) == index]
    owner = owner_seen_by(nodes[0], slot)
    source = next(n for n in nodes if n.id == owner)
    target = next(n for n in nodes if n.id != owner)
    return Shard(layout.shard(index), slot, mine[:12], source, target)


def others_of(layout: Layout, shard: int) -> list[str]:
    """One conversation in each of a few other shards, spread over the slots."""
    wanted = [(shard + 13 * k) % layout.shards for k in range(1, 5)]
    found: dict[int, str] = {}
    for i in range(5000):
        conversation = f"1666{i:07d}"
        where = layout.shard_of(conversation)
        if where in wanted:
            found.setdefault(where, conversation)
    return [found[w] for w in wanted]


def wait_for(condition: Callable[[], Any], bound: float, what: str) -> Any:
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {bound:g}s")
        time.sleep(0.05)


def season(
    batcher: Callable[[BatchPolicy], Batcher],
    shard: Shard,
    layout: Layout,
    poison: str,
    lapsed: str,
    *,
    lapsed_while: str,
) -> None:
    """Give the shard a dead letter and a conversation within the grace of
    its missing index, as a shard in production may have: through the API,
    but for one DEL standing in for the ttl that expired the lapsed
    conversation's messages while it was ``"ready"`` or ``"leased"``."""
    once = batcher(replace(POLICY, max_attempts=1, lease=0.2))
    once.push(poison, "poison")
    once.flush(poison)
    (batch,) = wait_for(
        lambda: once.claim_shard(shard.keys.index, 1).batches, 5, "the poison batch"
    )
    assert once.nack(batch, error="poison") == "dead"
    once.push(lapsed, "lapsed")
    once.flush(lapsed)
    if lapsed_while == "leased":
        wait_for(
            lambda: once.claim_shard(shard.keys.index, 1).batches, 5, "lapsed batch"
        )
    # The message list expires first: it has the shortest ttl of the keys.
    assert shard.source.command("DEL", layout.conversation(lapsed).messages)
    time.sleep(0.25)  # the lease, if any, runs out
    assert once.claim_shard(shard.keys.index, 10).batches == []
    # "(+inf": a shard's sorted sets hold a sentinel member at +inf.
    assert shard.source.command("ZCOUNT", shard.keys.missing, "-inf", "(+inf") == 1
    assert shard.source.command("ZCOUNT", shard.keys.dead, "-inf", "(+inf") == 1
    index = shard.keys.leased if lapsed_while == "leased" else shard.keys.ready
    assert shard.source.command("ZSCORE", index, lapsed) is not None


# -- the load --------------------------------------------------------------------


class Heard(logging.Handler):
    """Counts, per thread, the calls rapidfire sent again after a refusal,
    and keeps what rapidfire warned about."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = defaultdict(int)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.warnings.append(f"{record.name}: {text}")
        elif "trying again" in text:
            self.counts[record.threadName or ""] += 1


@contextlib.contextmanager
def listening() -> Iterator[Heard]:
    heard = Heard()
    root, redis_log = (
        logging.getLogger("rapidfire"),
        logging.getLogger("rapidfire.redis"),
    )
    level = redis_log.level
    redis_log.setLevel(logging.INFO)
    root.addHandler(heard)
    try:
        yield heard
    finally:
        root.removeHandler(heard)
        redis_log.setLevel(level)


@dataclass
class Delivery:
    consumer: str
    id: str
    conversation: str
    attempt: int
    reason: str
    token: int
    ready_at: float
    claimed_at: float
    messages: tuple[Any, ...]


@dataclass
class Load:
    """What the threads did, written under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pushed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    uncertain: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    deliveries: list[Delivery] = field(default_factory=list)
    lost: list[tuple[str, int, str]] = field(default_factory=list)  # id, token, how
    push_errors: list[str] = field(default_factory=list)
    retried_pushes: int = 0
    redundant_pushes: int = 0
    missed_duplicates: list[str] = field(default_factory=list)
    store_errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def record(self, consumer: str, batch: Batch) -> None:
        with self.lock:
            self.deliveries.append(
                Delivery(
                    consumer,
                    batch.id,
                    batch.conversation,
                    batch.attempt,
                    str(batch.reason),
                    batch.token,
                    batch.ready_at,
                    batch.claimed_at,
                    tuple(batch.messages),
                )
            )

    def lose(self, batch: Batch, how: str) -> None:
        with self.lock:
            self.lost.append((batch.id, batch.token, how))


class Settlements(Observer):
    """Hears the batches drain could not acknowledge because it lost them."""

    def __init__(self, load: Load) -> None:
        self.load = load

    def settled(self, batch: Batch, outcome: str, seconds: float) -> None:
        if outcome == "lost":
            self.load.lose(batch, "drain: lost before its ack")


def message(conversation: str, n: int) -> str:
    return f"{conversation}#{n}"


def number(text: str) -> tuple[str, int]:
    conversation, _, n = text.rpartition("#")
    return conversation, int(n)


def produce(
    batcher: Batcher,
    conversations: list[str],
    sparse: set[str],
    load: Load,
    heard: Heard,
    stop: threading.Event,
    rng: random.Random,
) -> None:
    """Push numbered messages round robin, to a ``sparse`` conversation only
    now and then; every third without a dedupe id, and now and then a dedupe
    id again, as a redelivered webhook does."""
    me = threading.current_thread().name
    numbers = dict.fromkeys(conversations, 0)
    try:
        while not stop.is_set():
            for conversation in conversations:
                if conversation in sparse and rng.random() > 0.04:
                    continue
                numbers[conversation] = n = numbers[conversation] + 1
                dedupe = f"wamid.{conversation}.{n}" if n % 3 else None
                text = message(conversation, n)
                before = heard.counts[me]
                try:
                    batcher.push(conversation, text, dedupe_id=dedupe)
                except RedisUnavailableError as exc:
                    with load.lock:
                        load.push_errors.append(f"{text}: {exc}")
                        if dedupe is None:  # stored or not: nobody can tell
                            load.uncertain[conversation].add(n)
                    if dedupe is None:
                        continue
                    # what a webhook does when its push failed: push again
                    batcher.push(conversation, text, dedupe_id=dedupe)
                with load.lock:
                    load.pushed[conversation].append(n)
                    load.retried_pushes += heard.counts[me] > before
                if dedupe is not None and rng.random() < 0.2:
                    again = batcher.push(conversation, text, dedupe_id=dedupe)
                    with load.lock:
                        load.redundant_pushes += 1
                        if not again.duplicate:
                            load.missed_duplicates.append(dedupe)
            time.sleep(0.005)
    except Exception as exc:  # reported by the test, not lost in the thread
        with load.lock:
            load.unexpected.append(f"producer {me}: {exc!r}")


def consume_by_hand(batcher: Batcher, load: Load, stop: threading.Event) -> None:
    """claim, handle, ack: what a hand-written worker loop does."""
    me = threading.current_thread().name
    try:
        while not stop.is_set():
            try:
                batches = batcher.claim(limit=8)
            except RedisUnavailableError as exc:
                with load.lock:
                    load.store_errors.append(f"{me} claim: {exc}")
                time.sleep(0.05)
                continue
            for batch in batches:
                load.record(me, batch)
                time.sleep(HANDLING)
                try:
                    if not batcher.ack(batch):
                        load.lose(batch, "ack returned False")
                except RedisUnavailableError as exc:
                    with load.lock:
                        load.store_errors.append(f"{me} ack: {exc}")
                    if exc.refused:  # not run: it comes back after its lease
                        load.lose(batch, "ack refused")
            if not batches:
                time.sleep(0.005)
    except Exception as exc:
        with load.lock:
            load.unexpected.append(f"consumer {me}: {exc!r}")


def consume_by_drain(batcher: Batcher, load: Load, stop: threading.Event) -> None:
    me = threading.current_thread().name

    def handle(batch: Batch) -> None:
        load.record(me, batch)
        time.sleep(HANDLING)

    try:
        batcher.drain(handle, concurrency=2, stop=stop, grace=5)
    except Exception as exc:
        with load.lock:
            load.unexpected.append(f"drain {me}: {exc!r}")


# -- the tests -------------------------------------------------------------------


@pytest.mark.parametrize("history", ["fresh", "seasoned"])
def test_a_busy_slot_migrated_back_and_forth_loses_and_reorders_nothing(
    own_cluster: Cluster,
    nodes: list[Node],
    history: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``fresh``: the shard has no dead letters and no missing index, so the
    cluster refuses its claims while the slot is half moved (claim declares
    both keys). ``seasoned``: it has both, as a shard in production may, so
    claims run on either node while the slot is half moved."""
    rng = random.Random(SEED)
    config = RedisConfig.from_url(
        own_cluster.url, namespace=unique_namespace("mig"), cluster=True
    )
    layout = layout_of(config)
    shard = shard_of(layout, nodes)
    busy = shard.conversations[:BUSY_CONVERSATIONS]
    poison, lapsed = shard.conversations[BUSY_CONVERSATIONS:][:2]
    everyone = busy + others_of(layout, shard.keys.index)
    load = Load()
    batchers: list[Batcher] = []
    threads: list[threading.Thread] = []
    stop_producers, stop_consumers = threading.Event(), threading.Event()
    rounds, keys_moved = 0, 0
    leftover = 0  # the lapsed conversation waits out its grace: one message
    seasoning = 0  # messages pushed to season the shard
    refused_before = refusals(nodes)

    def batcher(policy: BatchPolicy = POLICY, **options: Any) -> Batcher:
        batchers.append(Batcher(config, policy, **options))
        return batchers[-1]

    def spawn(name: str, run: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=run, args=args, name=name, daemon=True)
        threads.append(thread)
        thread.start()

    with listening() as heard:
        try:
            if history == "seasoned":
                season(batcher, shard, layout, poison, lapsed, lapsed_while="ready")
                leftover, seasoning = 1, 2
            # Keys of every conversation exist before the slot first moves.
            primer = batcher()
            for conversation in everyone:
                primer.push(conversation, message(conversation, 0))
                load.pushed[conversation].append(0)

            spawn("consumer-1", consume_by_hand, batcher(), load, stop_consumers)
            drainer = batcher(observer=Settlements(load))
            spawn("consumer-2", consume_by_drain, drainer, load, stop_consumers)
            halves = [everyone[0::2], everyone[1::2]]
            for i, mine in enumerate(halves):
                sparse = set(busy[:SPARSE])
                spawn(f"producer-{i}", produce, batcher(), mine, sparse, load,
                      heard, stop_producers, random.Random(rng.random()))  # fmt: skip
            time.sleep(PAUSE)

            here, there = shard.source, shard.target
            for pipeline, window in ROUNDS:
                count = int(here.command("CLUSTER", "COUNTKEYSINSLOT", shard.slot))
                assert count > 0, f"slot {shard.slot}: {topology(nodes)}"
                keys_moved += migrate_slot(
                    shard.slot, here, there, nodes, pipeline=pipeline, window=window
                )
                rounds += 1
                here, there = there, here
                time.sleep(PAUSE)
            final = here

            stop_producers.set()
            for thread in threads:
                if thread.name.startswith("producer"):
                    thread.join(timeout=15)
                    assert not thread.is_alive(), f"{thread.name} did not stop"
            with load.lock:
                pushed = {c: list(ns) for c, ns in load.pushed.items()}
            watcher = batcher()
            stats = wait_for(
                lambda: (
                    (s := watcher.stats()).stored_messages == leftover
                    and s.pending == leftover
                    and s.in_flight == 0
                    and s
                ),
                DRAIN_BOUND,
                "every message acknowledged",
            )
        finally:
            stop_producers.set()
            stop_consumers.set()
            for thread in threads:
                thread.join(timeout=15)
            for each in batchers:
                each.close()

    # -- what the handlers saw ------------------------------------------------
    refused = {k: n - refused_before[k] for k, n in refusals(nodes).items()}
    batches: dict[str, Delivery] = {}
    redelivered = []
    for d in load.deliveries:
        first = batches.setdefault(d.id, d)
        if first is not d:
            redelivered.append(d)
    total_pushed = sum(len(ns) for ns in pushed.values())
    delivered = sum(len(b.messages) for b in batches.values())
    late = [b for b in batches.values() if b.attempt != 1]
    longest = max(d.claimed_at - d.ready_at for d in load.deliveries)
    warned = sorted({w for w in heard.warnings if "persistence off" not in w})
    figures = (
        f"figures[{history}]: pushed={total_pushed} delivered={delivered}"
        f" batches={len(batches)} redelivered={len(redelivered)}"
        f" first_seen_at_attempt>1={len(late)} lost_acks={len(load.lost)}"
        f" pushes_retried={load.retried_pushes}"
        f" duplicate_pushes={load.redundant_pushes}"
        f" push_errors={len(load.push_errors)} rounds={rounds}"
        f" keys_moved={keys_moved} slot={shard.slot}"
        f" store_errors={len(load.store_errors)}"
        f" tryagain_replies={refused['TRYAGAIN']} ask_replies={refused['ASK']}"
        f" longest_handover={longest:.2f}s"
    )
    with capsys.disabled():
        print(f"\n{figures}")
        for line in [*load.store_errors[:3], *warned[:6]]:
            print(f"  {line[:300]}")

    assert load.unexpected == [], figures
    assert load.push_errors == [], figures
    assert load.missed_duplicates == [], figures
    assert rounds == len(ROUNDS)
    # The load did meet the slot half moved, long enough to need resending.
    assert refused["TRYAGAIN"] > 0, figures
    assert load.retried_pushes > 0, figures
    assert sum(len(pushed[c]) for c in busy[SPARSE:]) > 20 * len(busy), figures

    for d in redelivered:  # the same batch, delivered again after its lease
        assert (d.conversation, d.messages) == (
            batches[d.id].conversation,
            batches[d.id].messages,
        ), d
        assert d.attempt > 1, d
    assert {b.conversation for b in batches.values()} == set(everyone)
    in_batches: dict[tuple[str, int], set[str]] = defaultdict(set)
    for b in batches.values():
        for text in b.messages:
            conversation, n = number(text)
            assert conversation == b.conversation, b
            in_batches[conversation, n].add(b.id)
    twice = {m: ids for m, ids in in_batches.items() if len(ids) > 1}
    assert twice == {}, "messages delivered in two different batches"
    for conversation in everyone:
        mine = sorted(
            (b for b in batches.values() if b.conversation == conversation),
            key=lambda b: b.claimed_at,
        )
        seen = [number(text)[1] for b in mine for text in b.messages]
        expected = [
            n
            for n in sorted(set(pushed[conversation]) | load.uncertain[conversation])
            if n in pushed[conversation] or (conversation, n) in in_batches
        ]
        assert seen == expected, f"{conversation}: delivered out of push order"
        assert all(len(b.messages) <= POLICY.max_size for b in mine)

    # Only a lease that ran out under a handler brings a batch back: a claim
    # leases nothing it does not return, an ack that says the lease was lost
    # left the batch to come back.
    assert [(b.id, b.attempt, b.reason) for b in late] == [], figures
    for batch_id, token, how in load.lost:
        again = [d for d in load.deliveries if d.id == batch_id and d.token > token]
        # False means "changed nothing": nobody else held it, so it is still
        # there and must come back.
        assert again, f"batch {batch_id}: {how}, but it never came back; {figures}"

    assert (stats.expired_batches, stats.expired_messages) == (0, 0), stats
    assert (stats.pending, stats.in_flight) == (leftover, 0), stats
    assert stats.stored_messages == leftover, stats
    assert stats.dead == (1 if history == "seasoned" else 0), stats
    assert stats.pushed == total_pushed + seasoning, stats

    # -- where the slot ended up -------------------------------------------------
    assert final.id == shard.target.id
    for node in nodes:
        assert owner_seen_by(node, shard.slot) == shard.target.id, node.name
        count = int(node.command("CLUSTER", "COUNTKEYSINSLOT", shard.slot))
        if node.id == shard.target.id:
            assert count > 0
        else:
            assert count == 0, node.name
    waiting = shard.target.command("ZRANGEBYSCORE", shard.keys.ready, "-inf", "(+inf")
    assert [w.decode() for w in waiting] == ([lapsed] if leftover else [])


# -- one step at a time, while the slot is MIGRATING -----------------------------


@contextlib.contextmanager
def finished_meanwhile(
    slot: int, source: Node, target: Node, everyone: list[Node], delay: float = 1.0
) -> Iterator[None]:
    """Move the slot's keys and end its migration ``delay`` seconds after the
    block starts (well within the time a refused request is resent for); the
    block's end waits for it."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            time.sleep(delay)
            move_keys(slot, source, target)
            end_migration(slot, source, target, everyone)
        except BaseException as exc:  # raised in the test below
            failed.append(exc)

    thread = threading.Thread(target=run, name="migration", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=ROUND_BOUND + 5)
    assert not thread.is_alive(), "the migration did not finish"
    if failed:
        raise failed[0]


def test_an_ack_while_its_slot_is_migrating_reports_what_it_did(
    own_cluster: Cluster, nodes: list[Node]
) -> None:
    """The conversation's only batch is acknowledged while its slot is
    MIGRATING (no key moved yet): the caller holds the lease, so the ack
    succeeds, says so, and the batch never comes back."""
    config = RedisConfig.from_url(
        own_cluster.url, namespace=unique_namespace("mig"), cluster=True
    )
    layout = layout_of(config)
    shard = shard_of(layout, nodes)
    alice, bob = shard.conversations[:2]
    with Batcher(config, replace(POLICY, lease=30)) as batcher:
        batcher.push(alice, "hi")
        batcher.flush(alice)
        (batch,) = batcher.claim_shard(shard.keys.index, 10).batches
        batcher.push(bob, "waits in the ready index")
        begin_migration(shard.slot, shard.source, shard.target)
        with finished_meanwhile(shard.slot, shard.source, shard.target, nodes):
            acked = batcher.ack(batch)
        alice_now = batcher.inspect(alice)
        stats = batcher.stats()

    assert acked is True
    assert (alice_now.stored_messages, alice_now.in_flight) == (0, False)
    assert (stats.acked, stats.in_flight) == (1, 0)


def test_a_claim_while_its_slot_is_migrating_leases_only_what_it_hands_over(
    own_cluster: Cluster, nodes: list[Node]
) -> None:
    """In a shard with a dead letter and a lapsed conversation in flight (so
    that the cluster lets claim run on the source mid-migration), a claim of
    the one ready batch while the slot is MIGRATING either hands the batch
    over or leaves it claimable: it never leases a batch to nobody."""
    config = RedisConfig.from_url(
        own_cluster.url, namespace=unique_namespace("mig"), cluster=True
    )
    layout = layout_of(config)
    shard = shard_of(layout, nodes)
    alice, poison, lapsed = shard.conversations[:3]
    made: list[Batcher] = []

    def batcher(policy: BatchPolicy = POLICY) -> Batcher:
        made.append(Batcher(config, policy))
        return made[-1]

    try:
        season(batcher, shard, layout, poison, lapsed, lapsed_while="leased")
        claimer = batcher(replace(POLICY, lease=30))
        claimer.push(alice, "hi")
        claimer.flush(alice)
        begin_migration(shard.slot, shard.source, shard.target)
        got: list[Batch] = []
        # a claim may fail: then it must not have leased anything
        with (
            finished_meanwhile(shard.slot, shard.source, shard.target, nodes),
            contextlib.suppress(RedisUnavailableError),
        ):
            got += claimer.claim_shard(shard.keys.index, 10).batches
        deadline = time.monotonic() + 3  # far less than the 30 s lease
        while not got and time.monotonic() < deadline:
            got += claimer.claim_shard(shard.keys.index, 10).batches
            time.sleep(0.05)
        alice_now = claimer.inspect(alice)
    finally:
        for each in made:
            each.close()

    assert [(b.conversation, b.attempt, b.messages) for b in got] == [
        (alice, 1, ("hi",))
    ], alice_now


def test_a_slot_stuck_mid_migration_holds_up_no_other_shard(
    own_cluster: Cluster, nodes: list[Node]
) -> None:
    """An interrupted reshard leaves a slot half moved: one conversation's
    messages on the target, the rest on the source. That shard's claims fail
    until the move is finished; a worker's drain serves every other shard
    meanwhile, and dead-letters nothing."""
    config = RedisConfig.from_url(
        own_cluster.url, namespace=unique_namespace("mig"), cluster=True
    )
    layout = layout_of(config)
    shard = shard_of(layout, nodes)
    stuck = shard.conversations[0]
    others = [f"1777{i:07d}" for i in range(200)]
    others = [c for c in others if layout.shard_of(c) != shard.keys.index][:60]
    handled: dict[str, float] = {}
    stop = threading.Event()
    policy = replace(POLICY, lease=2.0, max_attempts=2)
    with Batcher(config, policy) as producer, Batcher(config, policy) as worker:
        assert worker.claim_shard(shard.keys.index, 1).batches == []  # sentinels
        producer.push(stuck, "held up")
        producer.flush(stuck)
        begin_migration(shard.slot, shard.source, shard.target)
        key = layout.conversation(stuck).messages
        shard.source.command(
            "MIGRATE", shard.target.host, shard.target.port, "", 0, 5000, "KEYS", key
        )
        try:
            for conversation in others:
                producer.push(conversation, "hi")

            def handle(batch: Batch) -> None:
                handled[batch.conversation] = time.monotonic()
                if all(c in handled for c in others):
                    stop.set()

            started = time.monotonic()
            thread = threading.Thread(
                target=worker.drain, args=(handle,), kwargs={"stop": stop}
            )
            thread.start()
            stop.wait(20)
            stop.set()
            thread.join(20)
            took = max(handled.values(), default=started) - started
            meanwhile = set(handled)
            during = producer.stats()
        finally:
            move_keys(shard.slot, shard.source, shard.target)
            end_migration(shard.slot, shard.source, shard.target, nodes)
        report = worker.drain(
            lambda b: handled.setdefault(b.conversation, 0.0), until_idle=True
        )
        after = producer.stats()

    assert sorted(meanwhile) == sorted(others)
    assert took < 10.0, f"{took:.1f}s for the other shards"
    assert during.dead == 0
    assert stuck in handled
    assert report.handled >= 1
    assert (after.dead, after.pending, after.in_flight) == (0, 0, 0)
