"""Run the benchmarks: ``python -m benchmarks`` or ``make bench``.

Needs ``RAPIDFIRE_BENCH_REDIS_URL`` pointing at a real Redis (a database that
nothing else uses); the embedded server is refused, since its figures would
not be Redis figures. Prints a table and writes ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

from rapidfire import RedisConfig

from . import bench_push
from ._harness import Table

SUITES = {"push": bench_push.run}
RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="work per round (1.0 = default)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)

    url = os.environ.get("RAPIDFIRE_BENCH_REDIS_URL", "")
    if not url:
        print(
            "set RAPIDFIRE_BENCH_REDIS_URL to a real Redis (e.g. redis://127.0.0.1:6379/10)",
            file=sys.stderr,
        )
        return 2
    config = RedisConfig.from_url(url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
    if config.is_memory:
        print(
            "refusing memory://: benchmark figures must come from a real Redis",
            file=sys.stderr,
        )
        return 2
    client = config.client()
    server = client.info("server")
    client.close()
    print(
        f"rapidfire benchmarks on {config.describe()}, Redis {server['redis_version']},"
        f" Python {platform.python_version()}, {os.cpu_count()} cores,"
        f" {args.rounds} interleaved rounds"
    )
    table = Table()
    started = time.time()
    try:
        for name in args.suites:
            SUITES[name](config, table, rounds=args.rounds, scale=args.scale)
    finally:
        _cleanup(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "started": started,
                "seconds": time.time() - started,
                "redis": server["redis_version"],
                "python": platform.python_version(),
                "machine": platform.platform(),
                "cores": os.cpu_count(),
                "rounds": args.rounds,
                "figures": [f.as_dict() for f in table.figures],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


def _cleanup(config: RedisConfig) -> None:
    client = config.client()
    try:
        keys = list(client.scan_iter(match=f"{config.namespace}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
