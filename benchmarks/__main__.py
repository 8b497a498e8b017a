"""Run the benchmarks: ``python -m benchmarks`` or ``make bench``.

The suites on the shared server (``push``, ``claim``, ``handover``) need
``RAPIDFIRE_BENCH_REDIS_URL`` pointing at a real Redis (a database that
nothing else uses); the embedded server is refused, since its figures would
not be Redis figures. The heavy suites (``scale``, ``memory``, ``idle``) run
on a private ``redis-server`` that the runner starts on a free loopback port
and stops at the end; ``cluster`` starts and stops a Redis Cluster of its
own. They are skipped, and say so, when no ``redis-server`` is installed. A
run of heavy suites only does not touch the shared server. Prints a table and
writes ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rapidfire import RedisConfig

from . import (
    bench_claim,
    bench_cluster,
    bench_handover,
    bench_idle,
    bench_memory,
    bench_push,
    bench_scale,
)
from ._harness import COLUMNS, PrivateRedis, Setup, Table, wipe

SUITES: dict[str, Callable[[Setup, Table], None]] = {
    "push": bench_push.run,
    "claim": bench_claim.run,
    "handover": bench_handover.run,
    "scale": bench_scale.run,
    "memory": bench_memory.run,
    "idle": bench_idle.run,
    "cluster": bench_cluster.run,
}
# Suites on the shared server (RAPIDFIRE_BENCH_REDIS_URL).
SHARED = {"push", "claim", "handover"}
# Suites that fill Redis with millions of keys or read server-wide counters:
# they run on the private server only.
PRIVATE = {"scale", "memory", "idle"}
# Heavy suites that start servers of their own (and stop them).
OWN_SERVERS = {"cluster"}
RESULTS = Path(__file__).parent / "results"
ENV_URL = "RAPIDFIRE_BENCH_REDIS_URL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="rapidfire's figures beside their baselines (benchmarks/README.md)",
    )
    parser.add_argument(
        "suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)} (all)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="work per round (1.0 = default)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 rounds, scale 0.25, no million-key levels, a 10 s idle window",
    )
    parser.add_argument(
        "--redis-server",
        default="redis-server",
        help="binary for the private server of the heavy suites",
    )
    parser.add_argument(
        "--no-private-server",
        action="store_true",
        help="skip the suites that need a private server (or a cluster)",
    )
    parser.add_argument("--log-level", default="ERROR", help="rapidfire's log level")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}")
    args.suites = args.suites or list(SUITES)
    if args.quick:
        args.rounds = min(args.rounds, 3)
        args.scale = min(args.scale, 0.25)
    if args.rounds < 1 or args.scale <= 0:
        parser.error("--rounds must be >= 1 and --scale > 0")
    logging.basicConfig(format="  log %(levelname)s %(name)s: %(message)s")
    logging.getLogger("rapidfire").setLevel(args.log_level.upper())

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    config: RedisConfig | None = None
    version: str | None = None
    if SHARED & set(args.suites):
        url = os.environ.get(ENV_URL, "")
        if not url:
            print(
                f"set {ENV_URL} to a real Redis (e.g. redis://127.0.0.1:6379/10)",
                file=sys.stderr,
            )
            return 2
        config = RedisConfig.from_url(url, namespace=namespace)
        if config.is_memory:
            print(
                "refusing memory://: benchmark figures must come from a real Redis",
                file=sys.stderr,
            )
            return 2
        client = config.client()
        version = client.info("server")["redis_version"]
        client.close()
    where = (
        f"{config.describe()}, Redis {version}"
        if config is not None
        else f"servers of their own only (namespace {namespace})"
    )
    print(
        f"rapidfire benchmarks on {where},"
        f" Python {platform.python_version()}, {os.cpu_count()} cores,"
        f" {args.rounds} interleaved rounds, scale {args.scale:g}"
        + (" (--quick)" if args.quick else "")
    )
    setup = Setup(config, args.rounds, args.scale, args.quick, namespace=namespace)
    table = Table()
    started = time.time()
    private: PrivateRedis | None = None
    timings: dict[str, float] = {}
    try:
        if PRIVATE & set(args.suites) and not args.no_private_server:
            private = _start_private(args.redis_server)
            setup.private = private
        print(COLUMNS)
        for name in args.suites:
            if name in PRIVATE and private is None:
                table.skip(name, "needs a private redis-server (see --redis-server)")
                continue
            if name in OWN_SERVERS and (args.no_private_server or _cannot(name)):
                table.skip(name, _cannot(name) or "--no-private-server")
                continue
            began = time.perf_counter()
            SUITES[name](setup, table)
            timings[name] = time.perf_counter() - began
    finally:
        if private is not None:
            private.stop()
        if config is not None:
            _cleanup(config)
    seconds = time.time() - started
    _summary(table, timings, seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "started": started,
                "seconds": seconds,
                "suite_seconds": timings,
                "redis": version,
                "server": config.describe() if config is not None else None,
                "private_server": private.describe() if private else None,
                "python": platform.python_version(),
                "machine": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "rounds": args.rounds,
                "scale": args.scale,
                "quick": args.quick,
                "figures": [f.as_dict() for f in table.figures],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


def _cannot(suite: str) -> str | None:
    """Why a suite that starts its own servers cannot run here, or None."""
    if suite == "cluster":
        return bench_cluster.missing()
    return None


def _start_private(binary: str) -> PrivateRedis | None:
    if PrivateRedis.available(binary) is None:
        print(f"no {binary} on PATH: the heavy suites are skipped")
        return None
    private = PrivateRedis(binary).start()
    print(
        f"heavy suites (scale, memory, idle) run on a {private.describe()},"
        " no persistence, stopped at the end of the run"
    )
    return private


def _summary(table: Table, timings: dict[str, float], seconds: float) -> None:
    missed = [f for f in table.figures if f.met is False]
    skipped = [f for f in table.figures if f.skipped]
    met = sum(1 for f in table.figures if f.met)
    per_suite = ", ".join(f"{name} {t:.0f}s" for name, t in timings.items())
    print(f"total {seconds:.0f}s ({per_suite})")
    print(
        f"goals: {met} met, {len(missed)} not met"
        + (f", {len(skipped)} suite(s) skipped" if skipped else "")
    )
    for figure in missed:
        print(f"  NOT MET: {figure.name} (goal {figure.goal})")


def _cleanup(config: RedisConfig) -> None:
    client = config.client()
    try:
        wipe(client, f"{config.namespace}:*")
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
