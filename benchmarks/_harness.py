"""Interleaved rounds, medians and spreads; the table; a private Redis server.

Every comparison runs its contenders in alternating rounds (A, B, A, B, ...),
so that a slow moment of the machine hits both alike, and reports the median
of each with its interquartile spread, and the median of the per-round ratios.

The heavy figures (a million pending conversations, memory deltas, an idle
worker's commands) run on a :class:`PrivateRedis`: a ``redis-server`` started
on a free loopback port for this run and stopped at its end, so that nobody
else's traffic or keys enter those figures and nobody else is disturbed.
"""

from __future__ import annotations

import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rapidfire import RedisConfig

__all__ = [
    "Figure",
    "PrivateRedis",
    "Setup",
    "Table",
    "aresilient",
    "bootstrap",
    "clock_offset",
    "compare",
    "interleaved",
    "num",
    "percentile",
    "quantiles",
    "rate",
    "ratio_figure",
    "resilient",
    "wipe",
]

T = TypeVar("T")


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p25, median, p75) of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bootstrap(
    values: Sequence[float], stat: Callable[[Sequence[float]], float], n: int = 200
) -> tuple[float, float]:
    """(p25, p75) of ``stat`` over ``n`` resamples of ``values`` (fixed seed)."""
    rng = random.Random(1)
    k = len(values)
    estimates = [stat([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n)]
    low, _, high = quantiles(estimates)
    return low, high


def num(x: float | None) -> str:
    """A figure with three or four significant digits."""
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    return f"{x:.3f}"


@dataclass
class Figure:
    """One measured figure with its baseline and goal.

    ``ratio`` is always ours / baseline (for a rate, higher is better; for a
    time, a size or a command count, lower is better); ``goal`` says which.
    """

    name: str
    unit: str
    value: float
    spread: tuple[float, float]
    baseline_name: str = ""
    baseline: float | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = (
    f"{'figure':<46} {'value':>9} {'unit':<9} {'[p25-p75]':<19}"
    f" {'baseline':<38} {'ratio':>7}  goal"
)


@dataclass
class Table:
    """The figures of one run, printed as they come and written as JSON."""

    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(render_row(figure), flush=True)
        return figure

    def skip(self, name: str, why: str) -> None:
        """A figure that could not be measured in this run, and why."""
        self.add(
            Figure(name, "", 0.0, (0.0, 0.0), note=f"not measured: {why}", skipped=True)
        )


def render_row(f: Figure) -> str:
    if f.skipped:
        return f"{f.name:<46} {'-':>9} {'':<9} {'':<19} {f.note}"
    base = (
        f"{f.baseline_name} {num(f.baseline)} {f.unit}"
        if f.baseline is not None
        else "-"
    )
    ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
    verdict = {True: "met", False: "NOT MET", None: ""}[f.met]
    low, high = f.spread
    spread = f"[{num(low)}-{num(high)}]"
    line = (
        f"{f.name:<46} {num(f.value):>9} {f.unit:<9} {spread:<19}"
        f" {base:<38} {ratio:>7}  {f.goal} {verdict}"
    )
    return line.rstrip() + (f"\n{'':<4}({f.note})" if f.note else "")


@dataclass
class Setup:
    """What every suite gets from the runner.

    ``config`` is the benchmark database (``RAPIDFIRE_BENCH_REDIS_URL``) with
    this run's namespace, or None in a run of suites that need no shared
    server; ``namespace`` is this run's namespace either way (suites on
    servers of their own name theirs after it); ``private`` is the run's own
    ``redis-server`` (None when it could not be started), for the heavy
    suites.
    """

    config: RedisConfig | None
    rounds: int
    scale: float
    quick: bool
    private: PrivateRedis | None = None
    namespace: str = ""

    def __post_init__(self) -> None:
        if not self.namespace:
            if self.config is None:
                raise ValueError("Setup needs a config or a namespace")
            self.namespace = self.config.namespace

    def private_config(self, db: int, namespace: str) -> RedisConfig:
        """A config for database ``db`` of the private server."""
        assert self.private is not None
        return RedisConfig.from_url(
            f"redis://127.0.0.1:{self.private.port}/{db}",
            namespace=f"{self.namespace}-{namespace}",
        )


def interleaved(
    contenders: dict[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Run each contender once per round, alternating; each returns a figure."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(rounds):
        names = list(contenders)
        if i % 2:
            names.reverse()
        for name in names:
            results[name].append(contenders[name]())
    return results


def resilient(
    sample: Callable[[], T],
    reset: Callable[[], None] | None = None,
    tries: int = 3,
) -> T:
    """Run one sample; repeat it when another client flushed the script cache.

    A shared server may see ``SCRIPT FLUSH`` from someone else's tests; when
    one lands between rapidfire's reload and its retry, the call fails with
    NOSCRIPT. Such a sample says nothing about rapidfire's speed: ``reset``
    clears what it left behind, and it runs again.
    """
    for attempt in range(tries):
        try:
            return sample()
        except Exception as exc:
            if attempt == tries - 1 or "No matching script" not in str(exc):
                raise
            print("  (script cache flushed by another client: sample repeated)")
            if reset is not None:
                reset()
    raise AssertionError("unreachable")


async def aresilient(
    sample: Callable[[], Awaitable[T]],
    reset: Callable[[], None] | None = None,
    tries: int = 3,
) -> T:
    """:func:`resilient` for a sample that is a coroutine function."""
    for attempt in range(tries):
        try:
            return await sample()
        except Exception as exc:
            if attempt == tries - 1 or "No matching script" not in str(exc):
                raise
            print("  (script cache flushed by another client: sample repeated)")
            if reset is not None:
                reset()
    raise AssertionError("unreachable")


def rate(operations: int, run: Callable[..., object], *args: Any) -> float:
    """Operations per second of one call of ``run(*args)``."""
    start = time.perf_counter()
    run(*args)
    return operations / (time.perf_counter() - start)


def compare(
    name: str,
    unit: str,
    ours: Sequence[float],
    baseline: Sequence[float] | None,
    baseline_name: str,
    *,
    goal: str = "",
    met: Callable[[float, float], bool] | None = None,
    note: str = "",
) -> Figure:
    """Our per-round values beside the baseline's, measured in the same rounds.

    ``met`` gets our median and the median per-round ratio (ours / baseline).
    """
    low, mine, high = quantiles(ours)
    theirs = r = None
    if baseline:
        _, theirs, _ = quantiles(baseline)
        ratios = [a / b for a, b in zip(ours, baseline) if b]
        r = statistics.median(ratios) if ratios else None
    return Figure(
        name=name,
        unit=unit,
        value=mine,
        spread=(low, high),
        baseline_name=baseline_name,
        baseline=theirs,
        ratio=r,
        goal=goal,
        met=met(mine, r if r is not None else float("nan")) if met else None,
        note=note,
    )


def ratio_figure(
    name: str,
    unit: str,
    samples: dict[str, list[float]],
    ours: str,
    baseline: str,
    goal: float,
    note: str = "",
) -> Figure:
    """A rate beside the baseline's; the goal is a floor on the median ratio."""
    return compare(
        name,
        unit,
        samples[ours],
        samples[baseline],
        baseline,
        goal=f">= {goal:g}x",
        met=lambda _, r: r >= goal,
        note=note,
    )


def clock_offset(client: Any, samples: int = 5) -> float:
    """Seconds to add to ``time.time()`` to get the Redis server's clock.

    TIME is read ``samples`` times; the reading with the shortest round trip
    is compared with the midpoint of its local send and receive times.
    """
    best: tuple[float, float] | None = None
    for _ in range(samples):
        before = time.time()
        secs, micros = client.time()
        after = time.time()
        rtt = after - before
        offset = secs + micros / 1e6 - (before + after) / 2
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    assert best is not None
    return best[1]


def wipe(client: Any, pattern: str) -> int:
    """Delete every key matching ``pattern`` (SCAN + UNLINK); returns how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


class PrivateRedis:
    """A ``redis-server`` of this run's own, on a free loopback port.

    No persistence, no other clients. Started by :meth:`start`, stopped (and
    its data discarded) by :meth:`stop`; use it as a context manager.
    """

    def __init__(self, binary: str = "redis-server") -> None:
        self.binary = binary
        self.port = 0
        self.version = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @staticmethod
    def available(binary: str = "redis-server") -> str | None:
        """The binary's path, or None when it is not installed."""
        return shutil.which(binary)

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        import redis

        self._dir = tempfile.mkdtemp(prefix="rapidfire-bench-")
        for _ in range(5):  # the free port may be taken before we bind it
            self.port = _free_port()
            log = Path(self._dir) / "redis.log"
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    self._dir,
                    "--logfile",
                    str(log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline and self._process.poll() is None:
                    try:
                        self.version = client.info("server")["redis_version"]
                        return self
                    except redis.ConnectionError:
                        time.sleep(0.05)
            finally:
                client.close()
            self._halt()
        self.stop()
        raise RuntimeError(f"could not start {self.binary} on a loopback port")

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(port=self.port, db=db, socket_timeout=60)

    def describe(self) -> str:
        return f"private redis-server {self.version} on 127.0.0.1:{self.port}"

    def _halt(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        self._halt()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
