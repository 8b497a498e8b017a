"""Bounded retries with exponential backoff and jitter, for the senders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ._errors import SendError, TransportConfigError

__all__ = ["RetryPolicy", "call_with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a sender retries a transient failure.

    The n-th retry (n = 0, 1, 2...) waits ``initial_delay * multiplier**n``
    seconds, capped at ``max_delay``, then stretched by a random factor between
    1 and ``1 + jitter`` so that many senders do not retry in step. With the
    defaults the waits are about 1, 4 and 16 seconds: the 4^n schedule Meta
    advises for its pair rate limit. A retry whose wait would end after
    ``deadline`` seconds from the first attempt is not made.

    Attributes:
        max_attempts: Attempts in all, the first included (1 = never retry).
        initial_delay: Seconds before the first retry.
        multiplier: Growth factor of the wait between retries.
        max_delay: Upper bound of one wait, before jitter.
        jitter: Extra random fraction added to each wait (0 = none).
        deadline: Upper bound, in seconds, of the time spent waiting and sending.

    Raises:
        TransportConfigError: When a value is out of range.
    """

    max_attempts: int = 4
    initial_delay: float = 1.0
    multiplier: float = 4.0
    max_delay: float = 30.0
    jitter: float = 0.25
    deadline: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise TransportConfigError("max_attempts", "must be at least 1")
        if self.initial_delay < 0:
            raise TransportConfigError("initial_delay", "must not be negative")
        if self.max_delay < 0:
            raise TransportConfigError("max_delay", "must not be negative")
        if self.multiplier < 1:
            raise TransportConfigError("multiplier", "must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise TransportConfigError("jitter", "must be between 0 and 1")
        if self.deadline <= 0:
            raise TransportConfigError("deadline", "must be positive")

    def delay(self, retry: int, random_fraction: float) -> float:
        """Return the wait before retry number ``retry`` (0 for the first).

        Args:
            retry: Which retry this is, from 0.
            random_fraction: A number in [0, 1) from the random source.
        """
        base = min(self.max_delay, self.initial_delay * self.multiplier**retry)
        return base * (1 + self.jitter * random_fraction)


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    random: Callable[[], float],
    what: str,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the policy runs out.

    Args:
        attempt: Makes one try; raises :class:`SendError` on failure.
        policy: The retry bounds.
        sleep: Waits the given seconds.
        clock: A monotonic clock in seconds.
        random: Returns a number in [0, 1).
        what: A short, log-safe description of the call.

    Raises:
        SendError: The last failure, with ``attempts`` set, when it is not
            retryable or no retry is left.
    """
    started = clock()
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except SendError as error:
            error.attempts = tries
            if not error.retryable or tries >= policy.max_attempts:
                raise
            wait = policy.delay(tries - 1, random())
            if clock() - started + wait > policy.deadline:
                logger.warning("%s: giving up, retry deadline reached", what)
                raise
            logger.warning(
                "%s: attempt %d failed (code=%s, http_status=%s), retrying in %.1fs",
                what,
                tries,
                error.code,
                error.http_status,
                wait,
            )
            sleep(wait)
