"""The bot's settings, read from environment variables only.

:func:`load` reads everything a role needs and reports every problem at once
as a :class:`SettingsError`, so that the bot refuses to start (exit code 2)
instead of running half configured. Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfire import BatchPolicy, ConfigurationError, RedisConfig
from rapidfire.transports import GRAPH_API_URL

__all__ = ["ROLES", "Brain", "Settings", "SettingsError", "load", "load_brain"]

ROLES = ("all", "web", "worker")

DEDUPE_WINDOW = 8 * 86400.0
"""Default dedupe window: Meta retries a webhook for up to 7 days."""

DEFAULT_BRAIN = "brain:make_reply"

Brain = Callable[[list[Any]], Any]
"""``make_reply(messages) -> str | None``, plain or ``async def``."""


class SettingsError(Exception):
    """The environment does not describe a bot that can start.

    Attributes:
        problems: One line per problem, each naming its variable.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    """Everything the bot reads from its environment.

    The secrets (app secret, verify token, access token) are None when a role
    does not need them and they are not set.
    """

    role: str
    redis: RedisConfig
    policy: BatchPolicy
    app_secret: str | None = field(default=None, repr=False)
    verify_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    api_url: str = GRAPH_API_URL
    phone_number_ids: tuple[str, ...] | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    brain: str = DEFAULT_BRAIN
    concurrency: int = 4
    send_attempts: int = 4

    @property
    def serves_http(self) -> bool:
        """Whether this role runs the webhook server."""
        return self.role in ("all", "web")

    @property
    def sends_replies(self) -> bool:
        """Whether this role runs the worker that sends replies."""
        return self.role in ("all", "worker")


def load(role: str, env: Mapping[str, str]) -> Settings:
    """Read the settings of ``role`` from ``env``.

    Raises:
        SettingsError: With every problem found, each naming its variable.
    """
    problems: list[str] = []
    options: dict[str, Any] = {"role": role}

    def text(name: str) -> str | None:
        return env.get(name, "").strip() or None

    def require(name: str, what: str) -> str | None:
        value = text(name)
        if value is None:
            problems.append(f"{name} is not set: {what}")

        return value

    def integer(name: str, default: int, low: int, high: int) -> int:
        raw = text(name)
        if raw is None:
            return default

        if not raw.isdigit() or not low <= int(raw) <= high:
            problems.append(f"{name} must be an integer from {low} to {high}")
            return default

        return int(raw)

    try:
        redis = RedisConfig.from_env(env)
        if redis.is_memory:
            problems.append(
                "RAPIDFIRE_REDIS_URL is memory://: the embedded server lives and"
                " dies with one process, and Meta does not resend what the bot"
                " already acknowledged; give the bot a Redis server"
            )

        options["redis"] = redis
    except ConfigurationError as error:
        problems.append(str(error))

    try:
        if text("RAPIDFIRE_DEDUPE_WINDOW"):
            options["policy"] = BatchPolicy.from_env(env)
        else:
            options["policy"] = BatchPolicy.from_env(env, dedupe_window=DEDUPE_WINDOW)
    except ConfigurationError as error:
        problems.append(str(error))

    if role in ("all", "web"):
        options["app_secret"] = require(
            "WHATSAPP_APP_SECRET",
            "every webhook POST is signed with it (App Dashboard > App settings"
            " > Basic > App secret); the bot never accepts unsigned requests",
        )
        options["verify_token"] = text("WHATSAPP_VERIFY_TOKEN")
        options["host"] = text("BOT_HOST") or "127.0.0.1"
        options["port"] = integer("BOT_PORT", 8000, 1, 65535)
        numbers = text("WHATSAPP_PHONE_NUMBER_IDS")
        if numbers is not None:
            ids = tuple(n.strip() for n in numbers.split(",") if n.strip())
            if not ids or not all(n.isdigit() for n in ids):
                problems.append(
                    "WHATSAPP_PHONE_NUMBER_IDS must be phone number ids (digits),"
                    " separated by commas"
                )

            options["phone_number_ids"] = ids

    if role in ("all", "worker"):
        options["access_token"] = require(
            "WHATSAPP_ACCESS_TOKEN",
            "replies are sent with it (a system user's token with the"
            " whatsapp_business_messaging permission)",
        )
        options["api_url"] = text("WHATSAPP_API_URL") or GRAPH_API_URL
        options["brain"] = text("BOT_BRAIN") or DEFAULT_BRAIN
        options["concurrency"] = integer("BOT_CONCURRENCY", 4, 1, 1000)
        options["send_attempts"] = integer("BOT_SEND_ATTEMPTS", 4, 1, 10)

    if problems:
        raise SettingsError(problems)

    return Settings(**options)


def load_brain(spec: str) -> Brain:
    """Import the reply function named by ``module:function``.

    Raises:
        SettingsError: When it cannot be imported or is not callable.
    """
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise SettingsError([f"BOT_BRAIN must look like module:function, got {spec!r}"])

    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SettingsError(
            [f"BOT_BRAIN: cannot import {module_name!r} ({error})"]
        ) from None

    function = getattr(module, name, None)
    if not callable(function):
        raise SettingsError([f"BOT_BRAIN: {spec!r} is not a function"])

    return function  # type: ignore[no-any-return]
