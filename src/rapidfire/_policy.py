"""BatchPolicy: when a conversation's burst becomes a batch, and how it is
retried."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ._errors import ConfigurationError
from ._validate import Duration, as_seconds, check_int, seconds, to_ms

__all__ = ["BatchPolicy"]

_DAY = 86400.0
MAX_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class BatchPolicy:
    """When an open batch becomes ready, how long a claim holds it, and retries.

    A conversation's open batch becomes ready when it has been quiet for
    ``debounce`` seconds, or ``max_wait`` seconds after its first message even if
    messages keep coming, or at once when it holds ``max_size`` messages (the
    next push then starts a new batch). Durations are seconds (int or float)
    or :class:`~datetime.timedelta`; Redis gets whole milliseconds.

    Args:
        debounce: Quiet window. A push moves the batch's deadline to
            ``now + debounce``, never past ``first push + max_wait``.
        max_wait: Longest a batch waits after its first message.
        max_size: Messages that make a batch ready at once (1 to 10000).
        lease: How long a claim holds a batch before it is delivered again.
            ``drain`` renews the lease while its handler runs.
        max_attempts: Deliveries before a batch moves to the dead letters.
        retry_backoff: First retry delay after a failure; doubles per attempt,
            with jitter, up to ``retry_backoff_max``.
        retry_backoff_max: Longest retry delay.
        ttl: Lifetime of a conversation's keys after the last write to them.
            Writes refresh it; it only removes what was abandoned. It must
            cover ``max_wait`` plus every retry the policy allows.
        dedupe_window: How long a ``dedupe_id`` is remembered per conversation.
        dead_letter_ttl: How long a dead letter is kept.
        max_message_bytes: Largest encoded message accepted by ``push``.
    """

    debounce: Duration = 2.0
    max_wait: Duration = 20.0
    max_size: int = 50
    lease: Duration = 30.0
    max_attempts: int = 5
    retry_backoff: Duration = 1.0
    retry_backoff_max: Duration = 300.0
    ttl: Duration = 7 * _DAY
    dedupe_window: Duration = _DAY
    dead_letter_ttl: Duration = 14 * _DAY
    max_message_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        minimum = {"debounce": 0.0, "lease": 0.01, "retry_backoff": 0.0}
        for name in (
            "debounce",
            "max_wait",
            "lease",
            "retry_backoff",
            "retry_backoff_max",
            "ttl",
            "dedupe_window",
            "dead_letter_ttl",
        ):
            value = seconds(name, getattr(self, name), minimum=minimum.get(name, 0.001))
            object.__setattr__(self, name, value)
        check_int("max_size", self.max_size, 1, MAX_BATCH_SIZE)
        check_int("max_attempts", self.max_attempts, 1, 1000)
        check_int("max_message_bytes", self.max_message_bytes, 1, 512 * 1024 * 1024)
        if as_seconds(self.debounce) > as_seconds(self.max_wait):
            raise ConfigurationError(
                f"debounce ({self.debounce:g} s) must not exceed max_wait"
                f" ({self.max_wait:g} s)"
            )
        if as_seconds(self.retry_backoff) > as_seconds(self.retry_backoff_max):
            raise ConfigurationError(
                f"retry_backoff ({self.retry_backoff:g} s) must not exceed"
                f" retry_backoff_max ({self.retry_backoff_max:g} s)"
            )
        needed = self.min_ttl
        if as_seconds(self.ttl) < needed:
            raise ConfigurationError(
                f"ttl ({self.ttl:g} s) is too short: a batch may legitimately wait"
                f" max_wait + max_attempts x (lease + retry_backoff_max) ="
                f" {needed:g} s, and a ttl must never delete waiting work"
            )

    @property
    def min_ttl(self) -> float:
        """The shortest ``ttl`` this policy accepts."""
        waits = self.max_attempts * (
            as_seconds(self.lease) + as_seconds(self.retry_backoff_max)
        )
        return as_seconds(self.max_wait) + waits

    def backoff(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Delay before retrying a batch whose ``attempt``-th delivery failed.

        Exponential (``retry_backoff * 2 ** (attempt - 1)``, capped at
        ``retry_backoff_max``) with jitter: a random value between half and all
        of it, so that batches that failed together do not retry together.
        """
        base = as_seconds(self.retry_backoff)
        cap = as_seconds(self.retry_backoff_max)
        delay = min(cap, base * 2.0 ** max(0, attempt - 1))
        jitter: float = (rng or random).uniform(0.5, 1.0)
        return delay * jitter

    def ms(self, name: str) -> int:
        """A duration field in whole milliseconds, as the scripts take it."""
        return to_ms(getattr(self, name))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **options: Any
    ) -> BatchPolicy:
        """Build a policy from ``RAPIDFIRE_<FIELD>`` variables.

        For example ``RAPIDFIRE_DEBOUNCE=2``, ``RAPIDFIRE_MAX_WAIT=20``,
        ``RAPIDFIRE_MAX_SIZE=50``, ``RAPIDFIRE_LEASE=30``,
        ``RAPIDFIRE_MAX_ATTEMPTS=5``, and likewise ``RAPIDFIRE_RETRY_BACKOFF``,
        ``RAPIDFIRE_RETRY_BACKOFF_MAX``, ``RAPIDFIRE_TTL``,
        ``RAPIDFIRE_DEDUPE_WINDOW``, ``RAPIDFIRE_DEAD_LETTER_TTL``,
        ``RAPIDFIRE_MAX_MESSAGE_BYTES``. Durations are in seconds. Unset
        variables keep their defaults; keyword ``options`` win over both.
        """
        env = os.environ if environ is None else environ
        found: dict[str, Any] = {}
        for f in fields(cls):
            var = f"RAPIDFIRE_{f.name.upper()}"
            text = env.get(var)
            if not text:
                continue
            integer = f.name in ("max_size", "max_attempts", "max_message_bytes")
            try:
                found[f.name] = int(text) if integer else float(text)
            except ValueError:
                kind = "an integer" if integer else "a number of seconds"
                raise ConfigurationError(
                    f"{var} must be {kind}, got {text!r}"
                ) from None
        found.update(options)
        return cls(**found)

    def describe(self) -> str:
        """The policy in one line, for start-up logs."""
        return (
            f"debounce={self.debounce:g}s max_wait={self.max_wait:g}s"
            f" max_size={self.max_size} lease={self.lease:g}s"
            f" max_attempts={self.max_attempts}"
        )
