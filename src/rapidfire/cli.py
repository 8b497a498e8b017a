"""The ``rapidfire`` command.

    rapidfire demo                      the whole flow on the embedded server
    rapidfire worker MODULE:CALLABLE    drain the namespace with a handler
    rapidfire stats [--json]            the namespace's counts and counters

Every command but ``demo`` reads ``RAPIDFIRE_REDIS_URL`` and the other
``RAPIDFIRE_*`` variables (see :meth:`RedisConfig.from_env` and
:meth:`BatchPolicy.from_env`) and refuses to run without a URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from ._errors import RapidfireError

__all__ = ["main"]

log = logging.getLogger("rapidfire.cli")

EXIT_USAGE = 2


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load_handler(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(
            f"rapidfire worker: handler must be MODULE:CALLABLE, got {spec!r}"
        )
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(
            f"rapidfire worker: cannot import {module_name!r}: {exc}"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise SystemExit(f"rapidfire worker: {module_name!r} has no {attr!r}")
    if not callable(target):
        raise SystemExit(f"rapidfire worker: {spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def _shutdown_grace() -> float:
    text = os.environ.get("RAPIDFIRE_SHUTDOWN_GRACE", "30")
    try:
        grace = float(text)
    except ValueError:
        raise SystemExit(
            f"RAPIDFIRE_SHUTDOWN_GRACE must be a number of seconds, got {text!r}"
        ) from None
    if grace < 0:
        raise SystemExit(f"RAPIDFIRE_SHUTDOWN_GRACE must be >= 0, got {text!r}")
    return grace


def _install_stop(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT: stop after the batches in hand. Second: exit now."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)
        log.info(
            "%s: finishing the batches in hand, then exiting",
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def cmd_worker(args: argparse.Namespace) -> int:
    from ._async_batcher import AsyncBatcher
    from ._batcher import Batcher
    from ._config import RedisConfig
    from ._policy import BatchPolicy

    handler = _load_handler(args.handler)
    config = RedisConfig.from_env()
    policy = BatchPolicy.from_env()
    grace = _shutdown_grace()
    stop = threading.Event()
    _install_stop(stop)
    log.info("worker starting: %s; %s", config.describe(), policy.describe())
    options = {
        "concurrency": args.concurrency,
        "until_idle": args.until_idle,
        "stop": stop,
        "grace": grace,
    }
    if inspect.iscoroutinefunction(handler):
        import anyio

        async def run() -> Any:
            async with AsyncBatcher(config, policy) as batcher:
                return await batcher.drain(handler, **options)

        report = anyio.run(run)
    else:
        with Batcher(config, policy) as batcher:
            report = batcher.drain(handler, **options)
    log.info("worker stopped: %s", report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ._config import RedisConfig
    from ._demo import run_demo

    config = RedisConfig.from_env(
        default_url="memory://demo",
        namespace=os.environ.get("RAPIDFIRE_NAMESPACE", "rapidfire-demo"),
    )
    return run_demo(sys.stdout, config)


def cmd_stats(args: argparse.Namespace) -> int:
    from ._batcher import Batcher
    from ._config import RedisConfig

    config = RedisConfig.from_env()
    with Batcher(config) as batcher:
        stats = batcher.stats()
    if args.json:
        print(json.dumps({"config": config.describe(), **dataclasses.asdict(stats)}))
        return 0
    print(config.describe())
    for field in dataclasses.fields(stats):
        value = getattr(stats, field.name)
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"  {field.name:18} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rapidfire", description="Batch bursts of chat messages on Redis."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole flow on the embedded server")
    demo.set_defaults(run=cmd_demo)

    worker = sub.add_parser("worker", help="drain the namespace with a handler")
    worker.add_argument("handler", help="MODULE:CALLABLE called with each Batch")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N")
    worker.add_argument(
        "--until-idle", action="store_true", help="exit once nothing is pending"
    )
    worker.set_defaults(run=cmd_worker)

    stats = sub.add_parser("stats", help="the namespace's counts and counters")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(run=cmd_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rapidfire`` console script."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        code: int = args.run(args)
    except RapidfireError as exc:
        print(f"rapidfire {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
