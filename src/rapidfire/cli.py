"""The ``rapidfire`` command.

    rapidfire demo                      the whole flow on the embedded server
    rapidfire worker MODULE:CALLABLE    drain the namespace with a handler
    rapidfire stats [--json]            the namespace's counts and counters
    rapidfire doctor [--json]           why producers and workers may not meet
    rapidfire inspect CONVERSATION      everything stored for one conversation
    rapidfire dead list|show|requeue|purge   the dead letters
    rapidfire flush CONVERSATION        make a conversation's open batch ready

Every command but ``demo`` reads ``RAPIDFIRE_REDIS_URL`` and the other
``RAPIDFIRE_*`` variables (see :meth:`RedisConfig.from_env` and
:meth:`BatchPolicy.from_env`) and refuses to run without a URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._errors import RapidfireError

if TYPE_CHECKING:
    from ._config import RedisConfig

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
    from ._policy import BatchPolicy

    handler = _load_handler(args.handler)
    config = _config(args)
    policy = BatchPolicy.from_env()
    grace = _shutdown_grace()
    observer = None
    if args.metrics_port is not None:
        from .metrics import PrometheusObserver

        observer = PrometheusObserver()
        watcher = Batcher(config, policy)
        observer.watch(watcher)
        observer.serve(args.metrics_port, args.metrics_host)
        log.info(
            "metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port
        )
    stop = threading.Event()
    _install_stop(stop)
    log.info("worker starting: %s; %s", config.describe(), policy.describe())
    options = {
        "concurrency": args.concurrency,
        "until_idle": args.until_idle,
        "stop": stop,
        "grace": grace,
    }
    from ._workloop import is_async_handler

    if is_async_handler(handler):
        import anyio

        async def run() -> Any:
            async with AsyncBatcher(config, policy, observer=observer) as batcher:
                return await batcher.drain(handler, **options)

        report = anyio.run(run)
    else:
        with Batcher(config, policy, observer=observer) as batcher:
            report = batcher.drain(handler, **options)
    log.info("worker stopped: %s", report)
    if report.unfinished:
        # A handler thread outlived the grace period; its batch was given back.
        # Threads cannot be stopped, and Python would wait for it at exit.
        log.warning("a handler is still running after the grace period; exiting")
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ._config import RedisConfig
    from ._demo import run_demo

    # Always the embedded server, whatever RAPIDFIRE_REDIS_URL says: the demo
    # must never leave its users' batches where a real worker would take them.
    config = RedisConfig.from_url("memory://demo", namespace="rapidfire-demo")
    return run_demo(sys.stdout, config)


def _config(args: argparse.Namespace) -> RedisConfig:
    from ._config import RedisConfig

    options: dict[str, Any] = {}
    if getattr(args, "namespace", None):
        options["namespace"] = args.namespace
    if getattr(args, "url", None):
        env = {**os.environ, "RAPIDFIRE_REDIS_URL": args.url}
        return RedisConfig.from_env(env, **options)
    return RedisConfig.from_env(**options)


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, default=str))
        return
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"  {key:18} {value}")


def cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import diagnose

    report = diagnose(_config(args))
    print(json.dumps(report.as_dict()) if args.json else report.render())
    return 0 if report.healthy else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from ._batcher import Batcher

    with Batcher(_config(args), record_layout=False) as batcher:
        state = batcher.inspect(args.conversation)
    _print(dataclasses.asdict(state), args.json)
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    from ._batcher import Batcher

    with Batcher(_config(args), record_layout=False) as batcher:
        count = batcher.flush(args.conversation)
    print(f"flushed a batch of {count} message(s)" if count else "no open batch")
    return 0


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} refused: not a terminal; pass --yes", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_dead(args: argparse.Namespace) -> int:
    from ._batcher import Batcher

    with Batcher(_config(args), record_layout=False) as batcher:
        if args.action == "list":
            letters = batcher.dead_letters(args.limit)
            rows = [
                {
                    "id": d.id,
                    "conversation": d.conversation,
                    "messages": len(d.messages),
                    "attempts": d.attempts,
                    "error": d.error,
                    "dead_at": d.dead_at,
                }
                for d in letters
            ]
            if args.json:
                print(json.dumps(rows))
            else:
                for row in rows:
                    print(
                        f"{row['id']}  {row['conversation']}  {row['messages']} msg"
                        f"  {row['attempts']} attempts  {row['error']}"
                    )
                print(f"{len(rows)} dead letter(s)")
            return 0
        if not args.ids:
            print(
                f"rapidfire dead {args.action}: name at least one id", file=sys.stderr
            )
            return EXIT_USAGE
        code = 0
        for batch_id in args.ids:
            letter = batcher.dead_letter(batch_id)
            if letter is None:
                print(f"{batch_id}: no such dead letter", file=sys.stderr)
                code = 1
            elif args.action == "show":
                print(json.dumps(dataclasses.asdict(letter), default=str))
            elif args.action == "requeue":
                count = batcher.requeue(letter)
                print(f"{batch_id}: requeued {count} message(s)")
            elif _confirm(f"purge dead letter {batch_id} for good?", args.yes):
                batcher.purge(letter)
                print(f"{batch_id}: purged")
            else:
                code = 1
        return code


def cmd_stats(args: argparse.Namespace) -> int:
    from ._batcher import Batcher

    config = _config(args)
    with Batcher(config, record_layout=False) as batcher:
        stats = batcher.stats()
    if args.json:
        print(json.dumps({"config": config.describe(), **dataclasses.asdict(stats)}))
        return 0
    print(config.describe())
    _print(dataclasses.asdict(stats), False)
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
    worker.add_argument("--url", help="Redis URL (default: RAPIDFIRE_REDIS_URL)")
    worker.add_argument("--namespace", help="default: RAPIDFIRE_NAMESPACE")
    worker.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics"
    )
    worker.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port"
    )
    worker.set_defaults(run=cmd_worker)

    def target(command: argparse.ArgumentParser) -> None:
        command.add_argument("--url", help="Redis URL (default: RAPIDFIRE_REDIS_URL)")
        command.add_argument("--namespace", help="default: RAPIDFIRE_NAMESPACE")
        command.add_argument("--json", action="store_true", help="print JSON")

    stats = sub.add_parser("stats", help="the namespace's counts and counters")
    target(stats)
    stats.set_defaults(run=cmd_stats)

    doctor = sub.add_parser("doctor", help="why producers and workers may not meet")
    target(doctor)
    doctor.set_defaults(run=cmd_doctor)

    inspect_ = sub.add_parser("inspect", help="everything stored for a conversation")
    inspect_.add_argument("conversation")
    target(inspect_)
    inspect_.set_defaults(run=cmd_inspect)

    flush = sub.add_parser("flush", help="make a conversation's open batch ready")
    flush.add_argument("conversation")
    target(flush)
    flush.set_defaults(run=cmd_flush)

    dead = sub.add_parser("dead", help="list, show, requeue or purge dead letters")
    dead.add_argument("action", choices=["list", "show", "requeue", "purge"])
    dead.add_argument("ids", nargs="*", help="dead letter (batch) ids")
    dead.add_argument("--limit", type=int, default=100)
    dead.add_argument("--yes", action="store_true", help="do not ask before purging")
    target(dead)
    dead.set_defaults(run=cmd_dead)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rapidfire`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `dead purge --yes ID`: ids after an option land in `extra`; take them.
    if args.command == "dead" and extra and not any(e.startswith("-") for e in extra):
        args.ids = [*args.ids, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _configure_logging(args.verbose)
    try:
        code: int = args.run(args)
    except RapidfireError as exc:
        print(f"rapidfire {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
