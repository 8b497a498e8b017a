"""Claim cost against how much is waiting, and the SCAN design it replaces.

On the private server: database 0 holds a reference namespace with 1k
pending conversations; database 1 holds the namespace under test, filled to
100k, then 1M pending conversations, then 1M pending conversations beside 1M
unrelated string keys. Pending means an open batch (one 100-byte message)
whose deadline is an hour away: nothing a claim may take. Each sample pushes
10 ready conversations (untimed) and times ``claim(10)``, which takes exactly
those 10; the server's own time for that claim (INFO commandstats, EVALSHA
usec) is read around it. Reference and test namespace alternate sample by
sample, so each level's figure sits beside the 1k figure of the same rounds.

The baseline is what the original bot did: walk the keyspace with ``SCAN
MATCH <prefix>m:* COUNT 1000`` to find the pending lists. One pass, counted
until the cursor returns to 0 (without even reading the lists), is timed on
the same data in the same rounds; it grows with every key in the database.

The pending conversations are pushed with ``push_many`` from three processes
at once, 2000 conversations a call.
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rapidfire import Batcher, BatchPolicy, RedisConfig

from ._harness import Figure, Setup, Table, compare, quantiles

PENDING = BatchPolicy(debounce=3600, max_wait=7200)
READY = BatchPolicy(debounce=0, max_wait=1, lease=60)
MESSAGE = {"text": "x" * 100}
REFERENCE = 1000
CLAIM = 10
FILL_PROCESSES = 3
FILL_CHUNK = 50_000
UNRELATED = """
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('SET', ARGV[1] .. i, ARGV[4])
end
return 1
"""


def _fill_range(url: str, namespace: str, start: int, stop: int) -> int:
    """Push one pending message into conversations ``start`` to ``stop - 1``."""
    logging.getLogger("rapidfire").setLevel(logging.ERROR)
    config = RedisConfig.from_url(url, namespace=namespace)
    with Batcher(config, PENDING) as batcher:
        for i in range(start, stop, 2000):
            batcher.push_many(
                [(f"p{j:08d}", MESSAGE) for j in range(i, min(stop, i + 2000))]
            )
    return stop - start


def _fill(config: RedisConfig, url: str, start: int, stop: int) -> None:
    """Fill conversations ``start`` to ``stop - 1``."""
    if stop - start <= FILL_CHUNK:
        _fill_range(url, config.namespace, start, stop)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(FILL_PROCESSES, mp_context=context) as pool:
        jobs = [
            pool.submit(
                _fill_range, url, config.namespace, i, min(stop, i + FILL_CHUNK)
            )
            for i in range(start, stop, FILL_CHUNK)
        ]
        filled = sum(job.result(timeout=600) for job in jobs)
    assert filled == stop - start


class _Side:
    """One namespace: its batcher, raw client and SCAN pattern."""

    def __init__(self, config: RedisConfig, url: str) -> None:
        self.config = config
        self.url = url
        self.batcher = Batcher(config, READY)
        self.raw = config.client()
        self.pattern = self.batcher.protocol.layout.shard(0).prefix + "m:*"
        self.pending = 0
        self.serial = 0
        self.batcher.ping()

    def claim_sample(self) -> tuple[float, float]:
        """Time one claim(10) of 10 fresh ready batches: (client ms, server us)."""
        self.serial += 1
        names = [f"ready-{self.serial}-{i}" for i in range(CLAIM)]
        self.batcher.push_many([(n, MESSAGE) for n in names])
        usec = _evalsha_usec(self.raw)
        start = time.perf_counter()
        got = self.batcher.claim(CLAIM)
        elapsed = time.perf_counter() - start
        server = _evalsha_usec(self.raw) - usec
        if sorted(b.conversation for b in got) != sorted(names):
            raise RuntimeError("claim did not take exactly the ready batches")
        for batch in got:
            self.batcher.ack(batch)
        return elapsed * 1000, server

    def scan_pass(self) -> float:
        """ms of one SCAN MATCH pass over the whole database."""
        start = time.perf_counter()
        found = sum(1 for _ in self.raw.scan_iter(match=self.pattern, count=1000))
        elapsed = time.perf_counter() - start
        if found != self.pending:
            raise RuntimeError(f"SCAN found {found} lists, expected {self.pending}")
        return elapsed * 1000

    def close(self) -> None:
        self.batcher.close()
        self.raw.close()


def _evalsha_usec(raw: Any) -> float:
    stats = raw.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0))


def run(setup: Setup, table: Table) -> None:
    assert setup.private is not None
    port = setup.private.port
    ref_url, big_url = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    ref = _Side(setup.private_config(0, "scale-ref"), ref_url)
    big = _Side(setup.private_config(1, "scale-big"), big_url)
    levels: list[tuple[str, int, int]] = [("100k pending", 100_000, 0)]
    if not setup.quick:
        levels += [
            ("1M pending", 1_000_000, 0),
            ("1M pending + 1M other keys", 1_000_000, 1_000_000),
        ]
    samples = max(5, int(20 * setup.scale))
    ref_claims: list[float] = []
    ref_scans: list[float] = []
    try:
        _fill(ref.config, ref.url, 0, REFERENCE)
        ref.pending = REFERENCE
        unrelated = 0
        for label, pending, extra in levels:
            began = time.perf_counter()
            _fill(big.config, big.url, big.pending, pending)
            big.pending = pending
            if extra > unrelated:
                _add_unrelated(big, unrelated, extra)
                unrelated = extra
            keys = big.raw.dbsize()
            print(
                f"  ({label}: filled in {time.perf_counter() - began:.0f}s;"
                f" database 1 holds {keys:,} keys,"
                f" used_memory {big.raw.info('memory')['used_memory_human']})"
            )
            ref_ms, big_ms, scans, scan = _level(
                ref, big, setup.rounds, samples, label, keys
            )
            ref_claims += ref_ms
            ref_scans += scans
            table.add(_growth(f"claim({CLAIM}), {label}", big_ms, ref_ms))
            table.add(scan)
        table.add(_reference(ref_claims, ref_scans))
    finally:
        ref.close()
        big.close()
        for db in (0, 1):
            client = setup.private.client(db)
            client.flushdb()
            client.close()


def _add_unrelated(side: _Side, start: int, stop: int) -> None:
    prefix = f"{side.config.namespace}:unrelated:"
    script = side.raw.register_script(UNRELATED)
    for i in range(start, stop, 100_000):
        script(args=[prefix, i, min(stop, i + 100_000) - 1, "v" * 20])


def _level(
    ref: _Side, big: _Side, rounds: int, samples: int, label: str, keys: int
) -> tuple[list[float], list[float], list[float], Figure]:
    """Per-round claim ms (reference, test), reference SCANs, the SCAN figure."""
    ref_ms: list[float] = []
    big_ms: list[float] = []
    big_us: list[float] = []
    ref_scan: list[float] = []
    big_scan: list[float] = []
    scan_rounds = rounds if keys <= 500_000 else min(rounds, 3)
    for r in range(rounds):
        mine: list[float] = []
        theirs: list[float] = []
        for s in range(samples):
            order = [(ref, theirs), (big, mine)]
            if (r + s) % 2:
                order.reverse()
            for side, out in order:
                ms, us = side.claim_sample()
                out.append(ms)
                if side is big:
                    big_us.append(us)
        ref_ms.append(statistics.median(theirs))
        big_ms.append(statistics.median(mine))
        if r < scan_rounds:
            pair = [(ref, ref_scan), (big, big_scan)]
            for side, out in pair if r % 2 == 0 else pair[::-1]:
                out.append(side.scan_pass())
    claim_ms = statistics.median(big_ms)
    scan_ms = statistics.median(big_scan)
    scan = compare(
        f"SCAN baseline, {label}",
        "ms",
        big_scan,
        ref_scan,
        "SCAN, 1k pending",
        goal="(grows with keys)",
        note=(
            f"{keys:,} keys, {scan_rounds} round(s); claim on the same data is"
            f" {scan_ms / claim_ms:,.0f}x cheaper; server time of that claim:"
            f" {statistics.median(big_us):.0f} us"
        ),
    )
    return ref_ms, big_ms, ref_scan, scan


def _growth(name: str, ours: list[float], reference: list[float]) -> Figure:
    return compare(
        name,
        "ms",
        ours,
        reference,
        f"claim({CLAIM}), 1k",
        goal="<= 1.5x",
        met=lambda _, r: r <= 1.5,
    )


def _reference(claims: list[float], scans: list[float]) -> Figure:
    low, value, high = quantiles(claims)
    scan = statistics.median(scans)
    return Figure(
        name=f"claim({CLAIM}), 1k pending (reference)",
        unit="ms",
        value=value,
        spread=(low, high),
        baseline_name="SCAN, 1k pending",
        baseline=scan,
        ratio=value / scan,
        goal="(reference)",
    )
