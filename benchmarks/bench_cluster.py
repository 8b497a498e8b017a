"""Redis Cluster: how the work spreads over the primaries, the hottest keys,
and claim cost against how much is waiting.

The suite starts a 3-primary cluster of its own on free loopback ports
(``start_cluster`` of ``tests/redis_cluster.py``, no persistence, no replicas) and
stops it at the end, also after an error; it uses no other server.

Load spread. A producer thread and a ``Batcher.drain`` worker (4 handler
threads, as ``rapidfire worker`` runs it) share a namespace of 256 shards
(the cluster default).
The producer plays a chat platform's traffic for ``conversations``
conversations: bursts of 1 to 8 messages, 100 conversations talking at once,
70% of the messages with a platform message id (``dedupe_id``), 3% of those
delivered a second time, 35% of the messages arriving in webhook batches of
10-50 (``push_many``), the rest one ``push`` each. The worker claims and acks
until every message stored has been handled. ``INFO commandstats`` of each
primary, reset before (``CONFIG RESETSTAT``; the cluster is ours), gives the
script calls (EVALSHA, EVAL) and all calls each primary ran; INFO counts the
commands a script runs inside Redis too. Goal: each primary within 15% of the
mean.

Hottest keys. While the mix runs (from a quarter of its deliveries on), a
``MONITOR`` connection to every primary records a few seconds of it (4 s, 2 s
with ``--quick``). Each client command is read for the keys it names
(EVALSHA: numkeys, then the keys; other commands: the key positions of
``COMMAND``), and so is each command the scripts run inside Redis (MONITOR
shows those as client ``lua``). A key's share is the number of commands
naming it over all commands in the sample, over the whole cluster: once over
client commands, once over all commands executed. Goal: no key above 1%. The
same sample gives the client commands each primary received, which INFO
cannot tell apart from the commands scripts run; among them are the
``COMMAND GETKEYS`` that redis-py's cluster pipeline sends to one node to
route each pipelined EVALSHA. As a check on the sample, the push calls of
the whole mix are also counted per shard from the key layout.

Claim cost. As in ``bench_scale``: a reference namespace holds 1k pending
conversations, the namespace under test 1M (100k with ``--quick``); both are
filled with ``bench_scale``'s loader (``push_many`` of 2000 conversations
from three processes; on a cluster each call's scripts go to their shards'
primaries in one cluster pipeline). Each sample pushes 10 ready conversations
(untimed) and times ``claim(10)``, which must take exactly those, then acks
them, so the pending count stays put; the two namespaces alternate sample by
sample. ``INFO commandstats`` of every primary, read around each claim, tells
how many scripts it ran (one peek per shard, then one claim per shard with
work) and their server time.
"""

from __future__ import annotations

import heapq
import random
import re
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot
from tests.redis_cluster import start_cluster

from rapidfire import Batch, Batcher, BatchPolicy, RedisConfig
from rapidfire._config import CLUSTER_SHARDS
from rapidfire._keys import Layout, shard_tag
from rapidfire._scripts import SCRIPT_NAMES, script

from ._harness import Figure, Setup, Table, bootstrap, compare, percentile, quantiles
from .bench_scale import _fill

PRIMARIES = 3
SPREAD_GOAL = 0.15
HOT_KEY_GOAL = 0.01
MIX_POLICY = BatchPolicy(debounce=0.3, max_wait=2, lease=30)
READY = BatchPolicy(debounce=0, max_wait=1, lease=60)
BURSTS = (1, 2, 3, 5, 8)
BURST_WEIGHTS = (40, 25, 15, 10, 10)
TALKING = 100  # conversations with a burst under way at any moment
WITH_ID = 0.70
REDELIVERED = 0.03
IN_WEBHOOK = 0.35  # of the messages
WEBHOOK = (10, 50)  # messages per push_many
REFERENCE = 1000
CLAIM = 10
MONITOR_MAX_BYTES = 400_000_000  # per primary, so that the sample stays bounded
# Commands the benchmark itself sends to read the counters.
OWN_COMMANDS = {"cmdstat_info", "cmdstat_config|resetstat", "cmdstat_monitor"}
MONITOR_LINE = re.compile(rb"^\+?(\d+\.\d+) \[\d+ ([^\]]+)\] (.*)$")
QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def missing() -> str | None:
    """Why the suite cannot run here, or None."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            return f"needs {binary} on PATH to start a cluster"
    return None


def run(setup: Setup, table: Table) -> None:
    with tempfile.TemporaryDirectory(prefix="rapidfire-bench-cluster-") as tmp:
        cluster = start_cluster(Path(tmp) / "cluster", primaries=PRIMARIES)
        nodes: _Nodes | None = None
        try:
            nodes = _Nodes(cluster.ports[:PRIMARIES])
            print(
                f"  (cluster: {PRIMARIES} primaries, Redis {nodes.version}, on"
                f" {cluster.url}, no persistence, stopped at the end of the suite;"
                f" shards per primary {nodes.shards_per_node()})"
            )
            _spread(setup, table, cluster.url, nodes, Path(tmp))
            _claims(setup, table, cluster.url, nodes)
        finally:
            if nodes is not None:
                nodes.close()
            cluster.stop()


# -- the primaries --------------------------------------------------------------


class _Nodes:
    """A plain client per primary, for the counters and MONITOR."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.clients = {
            port: redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
            for port in self.ports
        }
        roles = {port: c.execute_command("ROLE")[0] for port, c in self.items()}
        if any(role not in (b"master", "master") for role in roles.values()):
            raise RuntimeError(f"expected {PRIMARIES} primaries, got roles {roles}")
        self.version = self.clients[self.ports[0]].info("server")["redis_version"]
        self.slots: list[tuple[int, int, int]] = []
        for low, high, owner, *_ in self.clients[self.ports[0]].execute_command(
            "CLUSTER", "SLOTS"
        ):
            self.slots.append((int(low), int(high), int(owner[1])))
        self._commands: dict[str, dict[str, Any]] | None = None

    def items(self) -> Iterable[tuple[int, Any]]:
        return self.clients.items()

    def owner(self, key: str) -> int:
        """The port of the primary serving ``key`` (or a hash tag)."""
        slot = key_slot(key.encode())
        for low, high, port in self.slots:
            if low <= slot <= high:
                return port
        raise RuntimeError(f"no primary serves slot {slot}")

    def shards_per_node(self) -> str:
        """How many of a namespace's shards each primary serves (a
        shard's slot depends on its tag only, not on the namespace)."""
        owners = Counter(
            self.owner(shard_tag(CLUSTER_SHARDS, i)) for i in range(CLUSTER_SHARDS)
        )
        return "/".join(str(owners[p]) for p in self.ports)

    def reset(self) -> None:
        for _, client in self.items():
            client.config_resetstat()

    def commandstats(self) -> dict[int, dict[str, dict[str, float]]]:
        return {port: client.info("commandstats") for port, client in self.items()}

    def scripts(self) -> tuple[int, float]:
        """EVALSHA + EVAL calls and their server time (us), all primaries."""
        calls, usec = 0, 0.0
        for stats in self.commandstats().values():
            for name in ("cmdstat_evalsha", "cmdstat_eval"):
                calls += int(stats.get(name, {}).get("calls", 0))
                usec += float(stats.get(name, {}).get("usec", 0))
        return calls, usec

    def key_positions(self) -> dict[str, dict[str, Any]]:
        """COMMAND's key positions (first, last, step) by command name."""
        if self._commands is None:
            self._commands = self.clients[self.ports[0]].command()
        return self._commands

    def memory(self) -> tuple[int, list[str]]:
        """Keys on all primaries, and each one's used_memory."""
        keys = sum(int(c.dbsize()) for _, c in self.items())
        used = [c.info("memory")["used_memory_human"] for _, c in self.items()]
        return keys, used

    def close(self) -> None:
        for _, client in self.items():
            client.close()


# -- load spread ------------------------------------------------------------------

Item = tuple[str, dict[str, Any], str | None]


def _plan(conversations: int, rng: random.Random) -> list[list[Item]]:
    """The producer's deliveries: one item is a push, several a push_many."""
    bursts = rng.choices(BURSTS, BURST_WEIGHTS, k=conversations)
    talking: list[list[Any]] = []  # [conversation, messages left, next serial]
    started = 0
    events: list[Item] = []
    # Redeliveries: (due at this many events, serial, the item), a heap.
    again: list[tuple[int, int, Item]] = []
    while (talking or started < conversations) and len(events) < 100 * conversations:
        while len(talking) < TALKING and started < conversations:
            talking.append([f"+4917{started:08d}", bursts[started], 0])
            started += 1
        i = rng.randrange(len(talking))
        conversation, left, serial = talking[i]
        text = "".join(rng.choices("abcdefghij klmnop", k=rng.randint(20, 160)))
        message = {"from": conversation, "type": "text", "text": text}
        dedupe = None
        if rng.random() < WITH_ID:
            dedupe = f"wamid.{conversation[1:]}.{serial}"
            if rng.random() < REDELIVERED:
                due = len(events) + rng.randint(5, 300)
                item = (conversation, message, dedupe)
                heapq.heappush(again, (due, len(events), item))
        events.append((conversation, message, dedupe))
        while again and again[0][0] <= len(events):
            events.append(heapq.heappop(again)[2])
        if left == 1:
            talking[i] = talking[-1]
            talking.pop()
        else:
            talking[i] = [conversation, left - 1, serial + 1]
    events += [item for _, _, item in sorted(again, key=lambda a: a[:2])]
    # The share of deliveries that are webhooks, for IN_WEBHOOK of the messages.
    mean = sum(WEBHOOK) / 2
    webhook = IN_WEBHOOK / (mean * (1 - IN_WEBHOOK) + IN_WEBHOOK)
    deliveries: list[list[Item]] = []
    i = 0
    while i < len(events):
        size = rng.randint(*WEBHOOK) if rng.random() < webhook else 1
        deliveries.append(events[i : i + size])
        i += size
    return deliveries


class _Counting:
    """The worker's handler: counts the messages it was given."""

    def __init__(self) -> None:
        self.messages = 0
        self.batches = 0
        self._lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        with self._lock:
            self.messages += len(batch.messages)
            self.batches += 1


def _spread(setup: Setup, table: Table, url: str, nodes: _Nodes, tmp: Path) -> None:
    conversations = max(1000, int(10_000 * setup.scale))
    deliveries = _plan(conversations, random.Random(7))
    window = 2.0 if setup.quick else 4.0
    config = RedisConfig.from_url(url, namespace=f"{setup.namespace}-mix", cluster=True)
    nodes.reset()
    producer = Batcher(config, MIX_POLICY)
    worker = Batcher(config, MIX_POLICY)
    handler = _Counting()
    stop = threading.Event()
    failed: list[BaseException] = []

    def work() -> None:
        try:
            worker.drain(handler, concurrency=4, stop=stop, grace=10)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    thread = threading.Thread(target=work, name="bench-cluster-worker", daemon=True)
    monitor = _Monitor(nodes.ports, tmp, window)
    stored = duplicates = singles = webhooks = 0
    began = time.perf_counter()
    thread.start()
    try:
        for n, delivery in enumerate(deliveries):
            if n == len(deliveries) // 4:
                monitor.start()
            if len(delivery) == 1:
                conversation, message, dedupe = delivery[0]
                receipts = [producer.push(conversation, message, dedupe_id=dedupe)]
                singles += 1
            else:
                receipts = producer.push_many(delivery)
                webhooks += 1
            for receipt in receipts:
                duplicates += receipt.duplicate
                stored += not receipt.duplicate
            if failed:
                raise RuntimeError("the worker failed") from failed[0]
        pushed_in = time.perf_counter() - began
        deadline = time.monotonic() + 120
        while handler.messages < stored and time.monotonic() < deadline:
            if failed:
                raise RuntimeError("the worker failed") from failed[0]
            time.sleep(0.02)
        drained_in = time.perf_counter() - began
    finally:
        stop.set()
        thread.join(timeout=30)
        monitor.join()
        producer.close()
        worker.close()
    stats = nodes.commandstats()
    if handler.messages != stored:
        raise RuntimeError(
            f"the worker handled {handler.messages} of {stored} stored messages"
        )
    messages = stored + duplicates
    print(
        f"  (mix: {conversations:,} conversations, {messages:,} messages"
        f" ({duplicates} redelivered duplicates) in {singles:,} push and"
        f" {webhooks:,} push_many calls, pushed in {pushed_in:.1f}s; all"
        f" {handler.batches:,} batches handled after {drained_in:.1f}s)"
    )
    table.add(_per_node("cluster EVALSHA per primary, busiest", stats, nodes, True))
    table.add(_per_node("cluster commands per primary, busiest", stats, nodes, False))
    sample = _Sample(monitor, nodes)
    table.add(sample.per_node())
    table.add(sample.hottest(client=True, layout=_push_calls(deliveries, config)))
    table.add(sample.hottest(client=False))


def _push_calls(deliveries: list[list[Item]], config: RedisConfig) -> str:
    """The whole mix's push calls per shard, counted from the key layout."""
    layout = Layout(config.namespace, config.shards or CLUSTER_SHARDS)
    calls: Counter[int] = Counter()
    for delivery in deliveries:
        # push_many sends one call per shard (past 256 messages, more).
        calls.update({layout.shard_of(conversation) for conversation, *_ in delivery})
    shard, busiest = calls.most_common(1)[0]
    total = sum(calls.values())
    return (
        f"by the layout, over the whole mix the busiest shard ({shard}) gets"
        f" {100 * busiest / total:.2f}% of the {total:,} push calls (even:"
        f" {100 / layout.shards:.2f}%)"
    )


def _per_node(
    name: str,
    stats: dict[int, dict[str, dict[str, float]]],
    nodes: _Nodes,
    scripts: bool,
) -> Figure:
    counts: dict[int, int] = {}
    getkeys: dict[int, int] = {}
    for port, entries in stats.items():
        wanted = (
            {"cmdstat_evalsha", "cmdstat_eval"}
            if scripts
            else set(entries) - OWN_COMMANDS
        )
        counts[port] = sum(int(entries.get(e, {}).get("calls", 0)) for e in wanted)
        getkeys[port] = int(entries.get("cmdstat_command|getkeys", {}).get("calls", 0))
    what = (
        "EVALSHA/EVAL calls"
        if scripts
        else "calls of all commands (incl. inside scripts)"
    )
    note = f"{what}: " + _deviations(counts)
    if not scripts:
        note += "; of them COMMAND GETKEYS: " + ", ".join(
            f":{port} {getkeys[port]:,}" for port in nodes.ports
        )
    return _balance(name, "calls", counts, note)


def _deviations(counts: dict[int, int]) -> str:
    mean = statistics.mean(counts.values())
    return ", ".join(
        f":{port} {count:,} ({100 * (count - mean) / mean:+.1f}%)"
        for port, count in counts.items()
    )


def _balance(name: str, unit: str, counts: dict[int, int], note: str) -> Figure:
    """The busiest primary against the mean; met when every one is within
    SPREAD_GOAL of the mean."""
    mean = statistics.mean(counts.values())
    busiest, quietest = max(counts.values()), min(counts.values())
    worst = max(abs(c - mean) / mean for c in counts.values()) if mean else 0.0
    return Figure(
        name=name,
        unit=unit,
        value=busiest,
        spread=(quietest, busiest),
        baseline_name=f"mean of {len(counts)}",
        baseline=mean,
        ratio=busiest / mean if mean else None,
        goal=f"each within {100 * SPREAD_GOAL:g}% of mean",
        met=bool(mean) and worst <= SPREAD_GOAL,
        note=f"worst deviation {100 * worst:.1f}%; {note}",
    )


class _Monitor:
    """MONITOR on every primary for ``window`` seconds, raw lines to files.

    A thread per primary only copies bytes (parsing comes after the window,
    so that it takes no CPU from the traffic it watches), and stops at the
    end of the window or after MONITOR_MAX_BYTES.
    """

    def __init__(self, ports: Sequence[int], directory: Path, window: float) -> None:
        self.ports = list(ports)
        self.window = window
        self.files = {port: directory / f"monitor-{port}.txt" for port in self.ports}
        self.truncated: set[int] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for port in self.ports:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"MONITOR\r\n")
            if not sock.recv(5).startswith(b"+OK"):
                sock.close()
                raise RuntimeError(f"MONITOR refused on :{port}")
            thread = threading.Thread(
                target=self._copy, args=(port, sock), name=f"bench-monitor-{port}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _copy(self, port: int, sock: socket.socket) -> None:
        deadline = time.monotonic() + self.window
        written = 0
        sock.settimeout(0.1)
        try:
            with self.files[port].open("wb") as out:
                while time.monotonic() < deadline:
                    try:
                        chunk = sock.recv(1 << 20)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
                    if written >= MONITOR_MAX_BYTES:
                        self.truncated.add(port)
                        break
        finally:
            sock.close()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self.window + 30)

    @property
    def started(self) -> bool:
        return bool(self._threads)


def _unquote(raw: bytes) -> bytes:
    """An argument as MONITOR shows it (sdscatrepr) back to its bytes."""
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i : i + 1]
        if c == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1 : i + 2]
            if nxt == b"x" and i + 3 < len(raw):
                out += bytes([int(raw[i + 2 : i + 4], 16)])
                i += 4
                continue
            out += ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += c
        i += 1
    return bytes(out)


class _Sample:
    """What the MONITOR sample says: commands per primary, commands per key."""

    def __init__(self, monitor: _Monitor, nodes: _Nodes) -> None:
        positions = nodes.key_positions()
        shas = {script(name).sha.encode(): name for name in SCRIPT_NAMES}
        self.client_per_node: Counter[int] = Counter()
        self.all_per_node: Counter[int] = Counter()
        self.client_keys: Counter[bytes] = Counter()
        self.all_keys: Counter[bytes] = Counter()
        self.naming: dict[bytes, Counter[str]] = {}  # key -> client command kinds
        self.kinds: Counter[str] = Counter()
        self.getkeys: Counter[int] = Counter()
        self.first = float("inf")
        self.last = 0.0
        self.truncated = monitor.truncated
        if not monitor.started:
            raise RuntimeError("the MONITOR sample never started")
        for port, path in monitor.files.items():
            with path.open("rb") as lines:
                for line in lines:
                    self._read(port, line.rstrip(b"\r\n"), positions, shas)

    def _read(
        self,
        port: int,
        line: bytes,
        positions: dict[str, dict[str, Any]],
        shas: dict[bytes, str],
    ) -> None:
        match = MONITOR_LINE.match(line)
        if match is None:
            return  # the +OK, or a line cut at the end of the window
        stamp, who, rest = match.groups()
        args = [_unquote(a) for a in QUOTED.findall(rest)]
        if not args:
            return
        self.first = min(self.first, float(stamp))
        self.last = max(self.last, float(stamp))
        command = args[0].decode(errors="replace").lower()
        if command in ("evalsha", "eval") and len(args) > 2:
            keys = args[3 : 3 + int(args[2])]
            kind = shas.get(args[1], "script") if command == "evalsha" else "eval"
        elif command == "command" and len(args) > 1:
            keys = []
            kind = "COMMAND " + args[1].decode(errors="replace").upper()
        else:
            spec = positions.get(command, {})
            first = int(spec.get("first_key_pos", 0))
            last = int(spec.get("last_key_pos", 0))
            step = int(spec.get("step_count", 0)) or 1
            if last < 0:
                last = len(args) + last
            keys = args[first : last + 1 : step] if first > 0 else []
            kind = command
        client = who != b"lua"
        if client and kind == "COMMAND GETKEYS":
            self.getkeys[port] += 1
        self.all_per_node[port] += 1
        for key in set(keys):
            self.all_keys[key] += 1
        if client:
            self.client_per_node[port] += 1
            self.kinds[kind] += 1
            for key in set(keys):
                self.client_keys[key] += 1
                self.naming.setdefault(key, Counter())[kind] += 1

    @property
    def seconds(self) -> float:
        return max(0.0, self.last - self.first)

    def per_node(self) -> Figure:
        counts = {
            port: self.client_per_node[port] for port in sorted(self.client_per_node)
        }
        seen = ", ".join(f"{k} {c:,}" for k, c in self.kinds.most_common(6))
        rest = {port: count - self.getkeys[port] for port, count in counts.items()}
        mean = statistics.mean(rest.values())
        worst = max(abs(c - mean) / mean for c in rest.values()) if mean else 0.0
        return _balance(
            "cluster client commands per primary (MONITOR)",
            "commands",
            counts,
            f"{sum(counts.values()):,} client commands in {self.seconds:.1f}s: "
            + _deviations(counts)
            + f"; by kind: {seen}; without redis-py's COMMAND GETKEYS: "
            + _deviations(rest)
            + f" (worst {100 * worst:.1f}%)",
        )

    def hottest(self, *, client: bool, layout: str = "") -> Figure:
        keys = self.client_keys if client else self.all_keys
        total = sum((self.client_per_node if client else self.all_per_node).values())
        top = keys.most_common(3)
        if not top or not total:
            raise RuntimeError("the MONITOR sample holds no command naming a key")
        hottest_key, hottest = top[0]
        share = hottest / total
        conversation = [
            (k, c) for k, c in keys.most_common() if _kind(k) == "conversation"
        ][:1]
        note = ", ".join(f"{_short(k)} {100 * c / total:.2f}%" for k, c in top)
        if client:
            naming = self.naming.get(hottest_key, Counter())
            scripts = sum(c for k, c in self.kinds.items() if k in SCRIPT_NAMES)
            note += (
                f"; {_short(hottest_key)} named by "
                + ", ".join(f"{k} x{c}" for k, c in naming.most_common())
                + f" = {100 * hottest / scripts:.2f}% of the {scripts:,} script calls"
            )
        if conversation:
            k, c = conversation[0]
            note += f"; hottest conversation key {_short(k)} {100 * c / total:.3f}%"
        if layout:
            note += f"; {layout}"
        note += (
            f"; {total:,} {'client' if client else 'executed'} commands in"
            f" {self.seconds:.1f}s"
        )
        if self.truncated:
            cut = len(self.truncated)
            note += f" (sample cut at {MONITOR_MAX_BYTES:,} B on {cut} node(s))"
        return Figure(
            name=(
                "cluster hottest key, share of client commands"
                if client
                else "cluster hottest key, share of all commands"
            ),
            unit="%",
            value=100 * share,
            spread=(100 * share, 100 * share),
            goal=f"<= {100 * HOT_KEY_GOAL:g}%",
            met=share <= HOT_KEY_GOAL,
            note=note,
        )


def _kind(key: bytes) -> str:
    tail = key.rsplit(b"}:", 1)[-1]
    return "conversation" if tail[:2] in (b"m:", b"b:", b"c:", b"d:") else "shard"


def _short(key: bytes) -> str:
    """The key without its namespace: ``{<tag>}:ready``."""
    text = key.decode(errors="replace")
    return text[text.find("{") :] if "{" in text else text


# -- claim cost -------------------------------------------------------------------


class _ClaimSide:
    """One namespace of the claim figures: its batcher and its samples."""

    def __init__(self, url: str, namespace: str, nodes: _Nodes) -> None:
        self.url = url
        self.config = RedisConfig.from_url(url, namespace=namespace, cluster=True)
        self.batcher = Batcher(self.config, READY)
        self.nodes = nodes
        self.serial = 0
        self.ms: list[float] = []
        self.usec: list[float] = []
        self.walked: list[int] = []
        self.batcher.ping()

    def sample(self) -> float:
        """ms of one claim(10) of 10 fresh ready batches."""
        self.serial += 1
        names = [f"ready-{self.serial}-{i}" for i in range(CLAIM)]
        self.batcher.push_many([(n, {"text": "x" * 100}) for n in names])
        calls, usec = self.nodes.scripts()
        start = time.perf_counter()
        got = self.batcher.claim(CLAIM)
        elapsed = (time.perf_counter() - start) * 1000
        calls_after, usec_after = self.nodes.scripts()
        if sorted(b.conversation for b in got) != sorted(names):
            raise RuntimeError("claim did not take exactly the ready batches")
        for batch in got:
            self.batcher.ack(batch)
        self.ms.append(elapsed)
        self.usec.append(usec_after - usec)
        self.walked.append(calls_after - calls)
        return elapsed

    def close(self) -> None:
        self.batcher.close()


def _claims(setup: Setup, table: Table, url: str, nodes: _Nodes) -> None:
    pending, label = (100_000, "100k") if setup.quick else (1_000_000, "1M")
    rounds = setup.rounds
    samples = max(5, int(30 * setup.scale))
    ref = _ClaimSide(url, f"{setup.namespace}-cl-ref", nodes)
    big = _ClaimSide(url, f"{setup.namespace}-cl-big", nodes)
    try:
        _fill(ref.config, url, 0, REFERENCE)
        began = time.perf_counter()
        _fill(big.config, url, 0, pending)
        keys, used = nodes.memory()
        print(
            f"  ({label} pending: filled in {time.perf_counter() - began:.0f}s;"
            f" the primaries hold {keys:,} keys, used_memory {' / '.join(used)})"
        )
        ref_rounds: list[float] = []
        big_rounds: list[float] = []
        for r in range(rounds):
            mine: list[float] = []
            theirs: list[float] = []
            for s in range(samples):
                order = [(ref, theirs), (big, mine)]
                for side, out in order if (r + s) % 2 == 0 else order[::-1]:
                    out.append(side.sample())
            ref_rounds.append(statistics.median(theirs))
            big_rounds.append(statistics.median(mine))
    finally:
        ref.close()
        big.close()
    table.add(
        compare(
            f"cluster claim({CLAIM}) p50, {label} pending",
            "ms",
            big_rounds,
            ref_rounds,
            f"claim({CLAIM}) p50, 1k",
            goal="<= 1.5x",
            met=lambda _, r: r <= 1.5,
            note=_walk_note(big, ref, rounds, samples),
        )
    )
    table.add(_p99(f"cluster claim({CLAIM}) p99, {label} pending", big.ms, ref.ms))
    low, value, high = quantiles(ref_rounds)
    table.add(
        Figure(
            name=f"cluster claim({CLAIM}) p50, 1k pending (reference)",
            unit="ms",
            value=value,
            spread=(low, high),
            goal="(reference)",
            note=(
                f"p99 {percentile(ref.ms, 99):.2f} ms; a claim peeks at all"
                f" {CLUSTER_SHARDS} shards in one round trip, then claims where"
                f" there is work in a second: median"
                f" {statistics.median(ref.walked):.0f} scripts here"
            ),
        )
    )


def _walk_note(big: _ClaimSide, ref: _ClaimSide, rounds: int, samples: int) -> str:
    per_walk_big = [u / w for u, w in zip(big.usec, big.walked) if w]
    per_walk_ref = [u / w for u, w in zip(ref.usec, ref.walked) if w]
    walked, walked_ref = statistics.median(big.walked), statistics.median(ref.walked)
    return (
        f"{rounds} x {samples} claims per side; scripts run per claim, median"
        f" {walked:.0f} (1k: {walked_ref:.0f});"
        f" server time of the claim {statistics.median(big.usec):.0f} us"
        f" (1k: {statistics.median(ref.usec):.0f} us), per script"
        f" {statistics.median(per_walk_big):.1f} us (1k:"
        f" {statistics.median(per_walk_ref):.1f} us)"
    )


def _p99(name: str, ours: list[float], reference: list[float]) -> Figure:
    mine, theirs = percentile(ours, 99), percentile(reference, 99)
    return Figure(
        name=name,
        unit="ms",
        value=mine,
        spread=bootstrap(ours, lambda v: percentile(v, 99)),
        baseline_name=f"claim({CLAIM}) p99, 1k",
        baseline=theirs,
        ratio=mine / theirs if theirs else None,
        goal="<= 1.5x",
        met=bool(theirs) and mine / theirs <= 1.5,
        note=f"{len(ours)} claims per side; spread: bootstrap of the p99",
    )
