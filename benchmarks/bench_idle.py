"""An idle worker's cost: commands per second it sends, and CPU it burns.

Three workers run at once, each in its own process against its own database
of the private server, with nothing pending: ``Batcher.drain`` and
``AsyncBatcher.drain`` (``concurrency=4`` and a stop event, as ``rapidfire
worker`` runs them), and the baseline, a loop that calls ``claim(10)`` every
100 ms. After a 2 s warm-up, a ``MONITOR`` connection counts for ``window``
seconds every command each database receives from a client (commands that
scripts run inside Redis are not counted), while each worker process
measures its own CPU time (``getrusage``: user + system, every thread) and
voluntary context switches (how often it woke up).

The default window is 30 s, one full resync period: an idle worker claims
each shard once per resync period in case it missed a wake message, and
beats its heartbeat every 15 s; a shorter window can miss those.

Run one worker alone with ``python -m benchmarks.bench_idle child KIND URL
NAMESPACE``; it waits for ``go SECONDS`` on stdin and prints its figures as
JSON.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anyio

from rapidfire import AsyncBatcher, Batcher, BatchPolicy, RedisConfig

from ._harness import Figure, Setup, Table, quantiles

POLICY = BatchPolicy(debounce=1, max_wait=5)
KINDS = {"sync": "Batcher.drain", "async": "AsyncBatcher.drain", "poll": "polling"}
DATABASES = {"sync": 3, "async": 4, "poll": 5}
WARMUP = 2.0
BUCKET = 5.0
GOAL = 1.0
MONITOR_LINE = re.compile(rb'^\+(\d+\.\d+) \[(\d+) ([^\]]+)\] "([^"]*)"')


def run(setup: Setup, table: Table) -> None:
    assert setup.private is not None
    window = 10.0 if setup.quick else 30.0
    port = setup.private.port
    namespace = f"{setup.namespace}-idle"
    root = Path(__file__).resolve().parent.parent
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for kind, db in DATABASES.items():
            children[kind] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_idle",
                    "child",
                    kind,
                    f"redis://127.0.0.1:{port}/{db}",
                    namespace,
                ],
                cwd=root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        for kind, child in children.items():
            if _line(child, 30.0) != "ready":
                raise RuntimeError(f"idle worker {kind} did not start")
        monitor = _Monitor(port, window)
        monitor.start()
        for child in children.values():
            assert child.stdin is not None
            child.stdin.write(f"go {window}\n".encode())
            child.stdin.flush()
        monitor.join(window + 10)
        usage = {
            kind: json.loads(_line(child, window + 30.0))
            for kind, child in children.items()
        }
    finally:
        for child in children.values():
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
        for db in DATABASES.values():
            client = setup.private.client(db)
            client.flushdb()
            client.close()

    rates = {kind: monitor.rates(db) for kind, db in DATABASES.items()}
    for kind in ("sync", "async"):
        table.add(_commands(kind, rates, monitor, window))
        table.add(_cpu(kind, usage))


def _commands(
    kind: str, rates: dict[str, list[float]], monitor: _Monitor, window: float
) -> Figure:
    db = DATABASES[kind]
    total = sum(monitor.commands[db].values())
    value = total / window
    baseline = sum(monitor.commands[DATABASES["poll"]].values()) / window
    low, _, high = quantiles(rates[kind])
    seen = ", ".join(f"{n} x{c}" for n, c in monitor.commands[db].most_common())
    return Figure(
        name=f"idle commands/s, {KINDS[kind]}",
        unit="cmd/s",
        value=value,
        spread=(low, high),
        baseline_name="polling 100 ms",
        baseline=baseline,
        ratio=value / baseline if baseline else None,
        goal=f"< {GOAL:g}/s",
        met=value < GOAL,
        note=(
            f"{total} commands in {window:g} s ({seen or 'none'});"
            f" spread over {BUCKET:g} s buckets"
        ),
    )


def _cpu(kind: str, usage: dict[str, dict[str, Any]]) -> Figure:
    mine, theirs = usage[kind], usage["poll"]

    def percent(u: dict[str, Any]) -> float:
        return 100 * u["cpu"] / u["wall"]

    low, _, high = quantiles(mine["buckets"])
    return Figure(
        name=f"idle CPU, {KINDS[kind]}",
        unit="% core",
        value=percent(mine),
        spread=(low, high),
        baseline_name="polling 100 ms",
        baseline=percent(theirs),
        ratio=percent(mine) / percent(theirs) if theirs["cpu"] else None,
        goal="(none set)",
        note=(
            f"{mine['cpu'] * 1000:.0f} ms CPU in {mine['wall']:.0f} s;"
            f" {mine['switches'] / mine['wall']:.1f} wake-ups/s"
            f" (polling: {theirs['switches'] / theirs['wall']:.1f}/s)"
        ),
    )


def _line(child: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's next line of output, waiting at most ``timeout`` seconds."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError("idle worker did not answer in time")
    return child.stdout.readline().decode().strip()


class _Monitor(threading.Thread):
    """Counts, per database, the commands that clients send (MONITOR)."""

    def __init__(self, port: int, window: float) -> None:
        super().__init__(name="bench-monitor", daemon=True)
        self.port = port
        self.window = window
        self.commands: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.times: defaultdict[int, list[float]] = defaultdict(list)
        self.started = 0.0
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        if not self._sock.recv(5).startswith(b"+OK"):
            raise RuntimeError("MONITOR refused")

    def run(self) -> None:
        self.started = time.time()
        deadline = time.monotonic() + self.window
        buffer = b""
        self._sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self._sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    self._count(line)
        finally:
            self._sock.close()

    def _count(self, line: bytes) -> None:
        match = MONITOR_LINE.match(line)
        if match is None or match.group(3) == b"lua":
            return
        db = int(match.group(2))
        self.commands[db][match.group(4).decode().upper()] += 1
        self.times[db].append(float(match.group(1)))

    def rates(self, db: int) -> list[float]:
        """Commands per second in each BUCKET-second slice of the window."""
        buckets = max(1, int(self.window // BUCKET))
        counts = [0] * buckets
        for t in self.times.get(db, []):
            i = int((t - self.started) // BUCKET)
            if 0 <= i < buckets:
                counts[i] += 1
        return [c / BUCKET for c in counts]


# -- the worker process -------------------------------------------------------


def child(kind: str, url: str, namespace: str) -> None:
    logging.basicConfig()
    logging.getLogger("rapidfire").setLevel(logging.ERROR)
    config = RedisConfig.from_url(url, namespace=namespace)
    stop = threading.Event()
    worker = threading.Thread(target=_worker, args=(kind, config, stop), daemon=True)
    worker.start()
    time.sleep(WARMUP)
    print("ready", flush=True)
    window = float(sys.stdin.readline().split()[1])
    marks = [(time.monotonic(), resource.getrusage(resource.RUSAGE_SELF))]
    end = marks[0][0] + window
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(BUCKET, left))
        marks.append((time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)))
    (started, before), (ended, after) = marks[0], marks[-1]
    figures = {
        "cpu": _cpu_seconds(before, after),
        "wall": ended - started,
        "switches": after.ru_nvcsw - before.ru_nvcsw,
        "buckets": [
            100 * _cpu_seconds(r0, r1) / (t1 - t0)
            for (t0, r0), (t1, r1) in itertools.pairwise(marks)
        ],
    }
    print(json.dumps(figures), flush=True)
    stop.set()
    worker.join(timeout=10)


def _cpu_seconds(before: Any, after: Any) -> float:
    used: float = after.ru_utime + after.ru_stime
    return used - (before.ru_utime + before.ru_stime)


def _worker(kind: str, config: RedisConfig, stop: threading.Event) -> None:
    def handler(batch: Any) -> None:
        raise AssertionError("nothing should be pending")

    if kind == "sync":
        with Batcher(config, POLICY) as batcher:
            batcher.drain(handler, concurrency=4, stop=stop, grace=1)
    elif kind == "async":

        async def main() -> None:
            async with AsyncBatcher(config, POLICY) as batcher:
                await batcher.drain(handler, concurrency=4, stop=stop, grace=1)

        anyio.run(main)
    else:
        with Batcher(config, POLICY) as batcher:
            while not stop.is_set():
                if not batcher.claim(10):
                    stop.wait(0.1)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "child":
        sys.exit("usage: python -m benchmarks.bench_idle child KIND URL NAMESPACE")
    child(*sys.argv[2:])
