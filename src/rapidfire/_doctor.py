"""``rapidfire doctor``: find out why producers and workers do not meet.

The outage rapidfire was born from was silent: the webhook stored messages in
one database, the batch processor looked in another, and each logged that all
was well. The doctor looks at the namespace from the configured database and
from the others of the same server, and says where the batches really are.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ._config import RedisConfig
from ._errors import LayoutMismatchError, RapidfireError, translate
from ._executor import SyncExecutor
from ._keys import Layout
from ._policy import BatchPolicy
from ._protocol import Protocol, decode_counters, stored_messages

__all__ = ["Diagnosis", "Finding", "diagnose"]

Level = Literal["ok", "warning", "error"]
LIVE = 60.0  # a peer whose last heartbeat is younger than this is alive
MAX_DATABASES = 64


@dataclass(frozen=True)
class Finding:
    """One thing the doctor checked, and what it found."""

    level: Level
    check: str
    message: str


@dataclass
class Diagnosis:
    """Everything the doctor found; healthy when nothing is an error."""

    config: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(f.level != "error" for f in self.findings)

    def add(self, level: Level, check: str, message: str) -> None:
        self.findings.append(Finding(level, check, message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "healthy": self.healthy,
            "findings": [asdict(f) for f in self.findings],
        }

    def render(self) -> str:
        lines = [f"rapidfire doctor: {self.config}"]
        for f in self.findings:
            lines.append(f"  {f.level:<8} {f.check:<12} {f.message}")
        lines.append("healthy" if self.healthy else "problems found")
        return "\n".join(lines)


def diagnose(config: RedisConfig, policy: BatchPolicy | None = None) -> Diagnosis:
    """Check the server, the namespace, its peers and the other databases.

    Reads only: running the doctor against the wrong database leaves no trace
    there.
    """
    report = Diagnosis(config.describe())
    try:
        config = config.detect()
    except RapidfireError as exc:
        report.add("error", "connection", str(exc))
        return report
    report.config = config.describe()
    client = config.client()
    try:
        _check(client, Protocol(config, policy or BatchPolicy()), report)
    except RapidfireError as exc:
        report.add("error", "connection", str(exc))
    finally:
        client.close()
    return report


def _spread(client: Any, layout: Layout) -> tuple[Level, str, str]:
    """How the namespace's shards fall on the cluster's primaries: a warning
    when a primary holds none, or one holds 15% more than the mean."""
    counts = {node.name: 0 for node in client.get_primaries()}
    for shard in layout.all_shards():
        node = client.nodes_manager.get_node_from_slot(shard.slot)
        counts[node.name] = counts.get(node.name, 0) + 1
    spread = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    busiest, mean = max(counts.values()), layout.shards / len(counts)
    text = (
        f"{layout.shards} shard(s) on {sum(1 for n in counts.values() if n)} of"
        f" {len(counts)} primaries ({spread})"
    )
    if min(counts.values()) == 0 or busiest > mean * 1.15:
        return (
            "warning",
            "cluster",
            f"{text}: the busiest primary serves {busiest / mean:.2f}x its share;"
            " more shards (RAPIDFIRE_SHARDS, in a new namespace) spread the load",
        )
    return "ok", "cluster", text


def _check(client: Any, protocol: Protocol, report: Diagnosis) -> None:
    config = protocol.config
    executor = SyncExecutor(client, config.where, 0, cluster=bool(config.cluster))
    with translate(config.where):
        start = time.perf_counter()
        client.ping()
        rtt = (time.perf_counter() - start) * 1000
    info = _info(client, "server")
    cluster = _info(client, "cluster").get("cluster_enabled") in (1, "1")
    version = info.get("redis_version", "unknown")
    kind = "cluster" if cluster else "standalone"
    report.add("ok", "connection", f"Redis {version} answered in {rtt:.1f} ms ({kind})")
    if cluster and not config.cluster:
        report.add(
            "error",
            "cluster",
            f"{config.where} is a node of a Redis Cluster, but cluster=False is"
            " configured: this process sees only that node's slots; set"
            " RAPIDFIRE_REDIS_CLUSTER=1 (or leave it unset to ask the server)",
        )
        return

    try:
        risks = protocol.decode_server_check(
            executor.run_on_primaries(protocol.server_check_calls())
        )
    except RapidfireError as exc:  # CONFIG is disabled on some managed servers
        risks = [protocol.unreadable_settings(exc)]
    for risk in risks:
        level: Level = "error" if "has maxmemory-policy" in risk else "warning"
        check = (
            "eviction"
            if level == "error"
            else ("persistence" if "persistence off" in risk else "server")
        )
        report.add(level, check, risk)
    if not risks:
        report.add("ok", "server", "no eviction of rapidfire's keys; persistence on")

    layout = protocol.layout
    replies = executor.run_many(protocol.layout_calls()[1:2])
    if replies[0] is None:
        report.add(
            "warning",
            "layout",
            f"namespace {config.namespace!r} has never been used in db {config.db}",
        )
    else:
        try:
            protocol.check_layout([None, replies[0]])
            report.add("ok", "layout", f"{config.shards} shard(s), as recorded")
            if cluster and config.cluster:
                report.add(*_spread(client, layout))
        except LayoutMismatchError as exc:
            report.add("error", "layout", str(exc))
            return

    now_ms = protocol.decode_time(executor.run(protocol.time_call()))
    stats = protocol.decode_stats(
        now_ms, executor.run_many(protocol.stats_calls(now_ms))
    )
    peers = protocol.decode_peers(executor.run_many(protocol.peers_calls()))
    workers = [p for p in peers if p.role == "worker" and p.age < LIVE]
    producers = [p for p in peers if p.role == "producer" and p.age < LIVE]
    last_worker = min((p.age for p in peers if p.role == "worker"), default=None)
    report.add(
        "ok" if workers else "warning",
        "peers",
        f"{len(workers)} live worker(s), {len(producers)} live producer(s)"
        + (
            ""
            if workers
            else (
                "; no worker was ever seen"
                if last_worker is None
                else f"; the last worker was seen {last_worker:.0f}s ago"
            )
        ),
    )
    for peer in workers + producers:
        if peer.config and peer.config != config.describe():
            report.add(
                "warning",
                "peers",
                f"{peer.role} {peer.id} runs with {peer.config!r}",
            )
    report.add(
        "ok",
        "batches",
        f"{stats.pending} pending ({stats.overdue} overdue), {stats.in_flight} in"
        f" flight, {stats.dead} dead, {stats.stored_messages} message(s) stored",
    )
    if stats.overdue and not workers:
        oldest = stats.oldest_overdue or 0.0
        seen = (
            "no worker has ever been seen"
            if last_worker is None
            else f"no worker has been seen for {last_worker:.0f}s"
        )
        report.add(
            "error",
            "workers",
            f"{stats.overdue} batch(es) are waiting past their deadline (the oldest"
            f" for {oldest:.0f}s) and {seen}",
        )
    if stats.expired_batches:
        report.add(
            "warning",
            "expired",
            f"{stats.expired_batches} batch(es) ({stats.expired_messages} messages)"
            " expired before any worker claimed them",
        )
    if not cluster:
        _probe_other_databases(config, layout, report)


def _probe_other_databases(
    config: RedisConfig, layout: Layout, report: Diagnosis
) -> None:
    """The origin incident: is this namespace alive in another database?"""
    ours = config.db or 0
    count = _database_count(config)
    found = []
    unreadable = []
    for db in range(min(count, MAX_DATABASES)):
        if db == ours:
            continue
        try:
            seen = _namespace_in(config, db, layout)
        except Exception as exc:
            unreadable.append(f"db {db} ({type(exc).__name__})")
            continue
        if seen is not None:
            found.append((db, *seen))
    if unreadable:
        report.add(
            "warning",
            "databases",
            "could not look into "
            + ", ".join(unreadable[:5])
            + (" and more" if len(unreadable) > 5 else ""),
        )
    for db, pending, stored, peers in found:
        what = []
        if pending:
            what.append(f"{pending} pending batch(es)")
        if stored:
            what.append(f"{stored} stored message(s)")
        if peers:
            what.append(f"{peers} worker/producer heartbeat(s)")
        detail = ", ".join(what) or "its layout record"
        report.add(
            "error" if pending or stored or peers else "warning",
            "databases",
            f"namespace {config.namespace!r} is also in db {db} ({detail}); this"
            f" process is configured for db {ours}: producers and workers that use"
            " different databases never see each other's batches",
        )
    if not found:
        report.add(
            "ok",
            "databases",
            f"namespace {config.namespace!r} is in no other database of this server"
            f" (checked {min(count, MAX_DATABASES) - 1})",
        )


def _namespace_in(
    config: RedisConfig, db: int, layout: Layout
) -> tuple[int, int, int] | None:
    """(pending, stored messages, peers) of the namespace in ``db``, or None."""
    client = dataclasses.replace(config, db=db).client()
    try:
        record = client.get(layout.layout_key)
        peers = client.zcard(layout.peers_seen_key)
        if record is None and not peers:
            return None
        shards = _recorded_shards(record) or layout.shards
        other = Layout(config.namespace, shards)
        pending = stored = 0
        for shard in other.all_shards():
            for index in (shard.ready, shard.leased):
                pending += client.zcount(index, "-inf", "(+inf")  # no sentinel
            stored += stored_messages(decode_counters(client.hgetall(shard.stats)))
        return pending, max(0, stored), int(peers)
    finally:
        client.close()


def _recorded_shards(record: Any) -> int | None:
    import json

    try:
        return int(json.loads(record)["shards"])
    except (TypeError, ValueError, KeyError):
        return None


def _database_count(config: RedisConfig) -> int:
    client = config.client()
    try:
        reply: dict[Any, Any] = client.config_get("databases")
        return int(reply.get("databases", 16))
    except Exception:  # CONFIG may be disabled (managed Redis): assume the default
        return 16
    finally:
        client.close()


def _info(client: Any, section: str) -> dict[str, Any]:
    try:
        return dict(client.info(section))
    except Exception:
        return {}
