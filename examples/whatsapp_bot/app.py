"""A WhatsApp bot that answers each burst of messages with ONE reply.

    python examples/whatsapp_bot/app.py [--role all|web|worker]

Role ``all`` (the default) runs, in one process and one event loop, the
webhook server (Starlette on uvicorn) and the worker (``AsyncBatcher.drain``).
Roles ``web`` and ``worker`` run one half each, in separate processes that
share the same Redis URL and namespace. Everything is configured by environment
variables: see ``settings.py`` and the README beside this file.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType

import anyio
import uvicorn
from starlette.applications import Starlette

from rapidfire import (
    AsyncBatcher,
    ConfigurationError,
    RapidfireError,
    RedisAuthenticationError,
)
from rapidfire.transports import TransportConfigError, WhatsAppWebhook

import settings as bot_settings
from settings import Settings, SettingsError
from web import create_app
from worker import Replier

log = logging.getLogger("whatsapp_bot")

GRACE = 10.0
"""Seconds a batch in hand gets to finish its reply after SIGTERM/SIGINT."""

STARTUP_PING_TIMEOUT = 5.0

EXIT_CONFIG = 2

# The adapters' argument names and the variables they are read from.
_VARIABLES = {
    "app_secret": "WHATSAPP_APP_SECRET",
    "verify_token": "WHATSAPP_VERIFY_TOKEN",
    "phone_number_ids": "WHATSAPP_PHONE_NUMBER_IDS",
    "access_token": "WHATSAPP_ACCESS_TOKEN",
    "api_url": "WHATSAPP_API_URL",
}


def main(argv: list[str] | None = None) -> int:
    """Run the bot; return the process exit code (2: cannot start)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--role",
        choices=bot_settings.ROLES,
        default="all",
        help="all: webhook server and worker in one process (default);"
        " web: only the webhook server; worker: only the worker",
    )
    args = parser.parse_args(argv)
    level = os.environ.get("BOT_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )

    try:
        config = bot_settings.load(args.role, os.environ)
        batcher = AsyncBatcher(config.redis, config.policy)
        webhook = _webhook(config) if config.serves_http else None
        replier = _replier(config, batcher) if config.sends_replies else None
    except SettingsError as error:
        print("whatsapp bot: cannot start:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)

        return EXIT_CONFIG

    log.info(
        "whatsapp bot starting: role=%s, redis %s, policy %s dedupe_window=%s",
        config.role,
        config.redis.describe(),
        config.policy.describe(),
        _duration(config.policy.ms("dedupe_window") / 1000),
    )
    if config.sends_replies:
        log.info(
            "worker: brain %s, replies via %s, concurrency %d",
            config.brain,
            config.api_url,
            config.concurrency,
        )

    if config.serves_http and config.verify_token is None:
        log.warning(
            "WHATSAPP_VERIFY_TOKEN is not set: Meta's verification GET will be refused"
        )

    if config.serves_http and config.phone_number_ids:
        log.info("serving %d business number(s) only", len(config.phone_number_ids))

    if webhook is None:
        assert replier is not None
        return anyio.run(_run_worker, config, batcher, replier)

    return anyio.run(_run_server, config, batcher, webhook, replier)


def _duration(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g}d" if days >= 1 and days.is_integer() else f"{seconds:g}s"


def _replier(config: Settings, batcher: AsyncBatcher) -> Replier:
    brain = bot_settings.load_brain(config.brain)
    try:
        return Replier(config, batcher, brain)
    except TransportConfigError as error:
        raise SettingsError([_variable_error(error)]) from None


def _webhook(config: Settings) -> WhatsAppWebhook:
    try:
        return WhatsAppWebhook(
            app_secret=config.app_secret,
            verify_token=config.verify_token,
            phone_number_ids=config.phone_number_ids,
        )
    except TransportConfigError as error:
        raise SettingsError([_variable_error(error)]) from None


def _variable_error(error: TransportConfigError) -> str:
    """The adapter's complaint, naming the environment variable it came from."""
    variable = _VARIABLES.get(error.field, error.field)
    return f"{variable}: {str(error).removeprefix(error.field + ': ')}"


async def _check_redis(batcher: AsyncBatcher) -> int | None:
    """Ping Redis once; an exit code when it can never work as configured.

    A server that is down is only a warning: the webhook answers 503 (Meta
    retries) and the worker keeps trying until it comes back.
    """
    try:
        with anyio.fail_after(STARTUP_PING_TIMEOUT):
            rtt = await batcher.ping()
    except (ConfigurationError, RedisAuthenticationError) as error:
        log.error("cannot use Redis: %s", error)
        return EXIT_CONFIG
    except (RapidfireError, TimeoutError) as error:
        log.warning("Redis does not answer yet (%s); carrying on", error or "timeout")
        return None

    log.info("Redis answers in %.1f ms", rtt * 1000)
    return None


async def _drain(
    config: Settings, batcher: AsyncBatcher, replier: Replier, stop: anyio.Event
) -> None:
    log.info("worker started")
    report = await batcher.drain(
        replier, concurrency=config.concurrency, stop=stop, grace=GRACE
    )
    log.info(
        "worker stopped: %d batch(es) handled, %d failed, %d given back",
        report.handled,
        report.failed,
        report.released,
    )


async def _run_worker(config: Settings, batcher: AsyncBatcher, replier: Replier) -> int:
    """Role ``worker``: drain until SIGTERM or SIGINT."""
    try:
        failed = await _check_redis(batcher)
        if failed is not None:
            return failed

        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as got:
                    async for signum in got:
                        log.info("%s: stopping", signal.Signals(signum).name)
                        stop.set()

            tasks.start_soon(watch_signals)
            await _drain(config, batcher, replier, stop)
            tasks.cancel_scope.cancel()

        return 0
    finally:
        await batcher.aclose()


@dataclass
class _Outcome:
    """What the server's run ends with: its exit code, whether the worker runs."""

    code: int = 0
    worker_running: bool = False


async def _run_server(
    config: Settings,
    batcher: AsyncBatcher,
    webhook: WhatsAppWebhook,
    replier: Replier | None,
) -> int:
    """Roles ``all`` and ``web``: serve until SIGTERM or SIGINT.

    In role ``all`` the worker runs in the server's lifespan: it starts with
    the server and, on shutdown, stops claiming and finishes the batches in
    hand (``GRACE`` seconds at most) before the process exits. A worker that
    crashes takes the server down with it (exit code 1), so that a supervisor
    restarts the bot instead of leaving a webhook that nobody answers.
    """
    outcome = _Outcome(worker_running=replier is not None)
    server: uvicorn.Server | None = None

    def request_exit(code: int) -> None:
        outcome.code = outcome.code or code
        if server is not None:
            server.should_exit = True

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if replier is None:
            yield
            return

        stop = anyio.Event()

        async def work() -> None:
            try:
                await _drain(config, batcher, replier, stop)
            except Exception:
                log.exception("worker crashed; stopping the bot")
                request_exit(1)
            finally:
                outcome.worker_running = False

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(work)
            try:
                yield
            finally:
                stop.set()

    app = create_app(
        role=config.role,
        webhook=webhook,
        batcher=batcher,
        lifespan=lifespan,
        worker_alive=(lambda: outcome.worker_running) if replier else None,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            # The access log would print the query string of Meta's GET, which
            # holds the verify token.
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(GRACE),
        )
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Before uvicorn takes over the signals, and again when it hands a
        # caught signal back after its graceful shutdown: just ask to exit.
        request_exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        failed = await _check_redis(batcher)
        if failed is not None:
            return failed

        await server.serve()
        return outcome.code
    finally:
        await batcher.aclose()


if __name__ == "__main__":
    sys.exit(main())
