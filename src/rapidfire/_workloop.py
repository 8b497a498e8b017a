"""The I/O-free parts of a worker: its schedule and its bookkeeping.

The schedule is what an idle worker knows about each shard's next deadline.

Deadlines come from Redis on the server's clock: in a claim's reply, or in a
wake message that a script publishes when a deadline becomes a shard's
earliest. Each arrives with the server's time, so the worker turns it into a
point on its own monotonic clock without comparing wall clocks. I/O-free:
shared by the thread and the async worker.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ._errors import RedisUnavailableError
from ._logging import mask
from ._models import Batch, DrainReport, Stats
from ._protocol import NackOutcome

__all__ = [
    "ASYNC_HANDLER_REFUSED",
    "AWAITABLE_RETURNED",
    "HEARTBEAT",
    "IDLE_CHECK",
    "OVERDUE_ALARM",
    "RESYNC",
    "RESYNC_CLAIMS_PER_SECOND",
    "STOP_POLL",
    "WAKE_PING",
    "WAKE_PONG_WAIT",
    "ClaimRound",
    "Schedule",
    "WakeLiveness",
    "backoff",
    "count_failure",
    "error_text",
    "is_async_handler",
    "parse_wake",
    "resync_period",
    "wait_timeout",
    "warn_if_overdue",
]

# An idle worker claims every shard at least this often, in case it missed a
# wake message (pub/sub does not queue messages for a reconnecting client, and
# a reconnected worker claims every shard at once anyway).
RESYNC = 30.0
# ... but on a namespace of many shards, no more than this many claims a
# second on average: 256 shards are looked at every 128 s.
RESYNC_CLAIMS_PER_SECOND = 2.0
# A worker records itself in the namespace this often (see Batcher.heartbeat).
HEARTBEAT = 15.0
# A wake connection that has been silent this long is asked for a PONG; one
# that stays silent WAKE_PONG_WAIT more is taken for dead (a frozen node keeps
# its connections open) and the worker listens on another node.
WAKE_PING = 10.0
WAKE_PONG_WAIT = 5.0
# How often a worker given a stop event looks at it.
STOP_POLL = 0.2
# An idle worker warns about batches overdue by more than this.
OVERDUE_ALARM = 5.0
# An idle worker looks at the namespace's overdue count this often.
IDLE_CHECK = 60.0

# Claim a shard this long after its deadline, so that the server's clock has
# surely reached it.
SLACK = 0.001


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: 0.5 s doubling
    to at most 10 s."""
    return min(10.0, 0.5 * 2.0 ** min(failures, 5))


def resync_period(shards: int) -> float:
    """Seconds between an idle worker's claims of every shard."""
    return max(RESYNC, shards / RESYNC_CLAIMS_PER_SECOND)


def parse_wake(data: bytes | str) -> tuple[int, int, int] | None:
    """``b"shard:deadline_ms:server_now_ms"`` -> the three numbers, or None."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
        shard, deadline, now = text.split(":")
        return int(shard), int(deadline), int(now)
    except (ValueError, UnicodeDecodeError):
        return None


class WakeLiveness:
    """When a wake connection should be pinged, and when it is dead."""

    def __init__(self, now: float) -> None:
        self.heard = now
        self.pinged: float | None = None

    def ping_due(self, message: object, now: float) -> bool:
        """After a read of the connection (``message`` None when nothing
        came): True when it should be sent a PING now. Raises TimeoutError
        when a PING went unanswered."""
        if message is not None:
            self.heard, self.pinged = now, None
            return False
        if self.pinged is not None:
            if now - self.pinged >= WAKE_PONG_WAIT:
                raise TimeoutError("no PONG: the node does not answer")
            return False
        if now - self.heard >= WAKE_PING:
            self.pinged = now
            return True
        return False


class Schedule:
    """Per-shard monotonic time at which a worker should claim again."""

    def __init__(self, shards: int, resync: float) -> None:
        self._due = [0.0] * shards
        # Bumped by every wake and resync: a claim whose reply arrives after
        # one must not overwrite the newer deadline with its older view.
        self._epoch = [0] * shards
        self._failures = [0] * shards
        self._lock = threading.Lock()
        self.resync = resync
        self._next_resync = time.monotonic() + resync

    def _local(self, deadline_ms: int, server_now_ms: int, at: float) -> float:
        return at + max(0, deadline_ms - server_now_ms) / 1000.0 + SLACK

    def epoch(self, shard: int) -> int:
        """Read before sending a claim; pass it to :meth:`claimed`."""
        with self._lock:
            return self._epoch[shard]

    def claimed(
        self,
        shard: int,
        next_ms: int | None,
        server_now_ms: int,
        at: float,
        epoch: int,
    ) -> None:
        """A claim of ``shard``, sent at ``epoch``, answered at local time ``at``."""
        due = math.inf if next_ms is None else self._local(next_ms, server_now_ms, at)
        with self._lock:
            self._failures[shard] = 0
            if self._epoch[shard] != epoch:
                due = min(due, self._due[shard])
            self._due[shard] = due

    def failed(self, shard: int, at: float) -> int:
        """A claim of ``shard`` failed (its slot may be migrating): try that
        shard again after a backoff of its own, while the others go on.
        Returns how many claims of it failed in a row."""
        with self._lock:
            self._failures[shard] += 1
            streak = self._failures[shard]
            self._due[shard] = at + backoff(streak - 1)
        return streak

    def woken(
        self, shard: int, deadline_ms: int, server_now_ms: int, at: float
    ) -> None:
        """A wake message: ``shard`` has a deadline at ``deadline_ms``."""
        if not 0 <= shard < len(self._due):
            return
        due = self._local(deadline_ms, server_now_ms, at)
        with self._lock:
            self._epoch[shard] += 1
            self._due[shard] = min(self._due[shard], due)

    def all_due(self) -> None:
        """Claim every shard on the next round (start, reconnect, resync)."""
        with self._lock:
            self._due = [0.0] * len(self._due)
            self._epoch = [e + 1 for e in self._epoch]
            self._next_resync = time.monotonic() + self.resync

    def due(self, now: float) -> list[int]:
        """Shards to claim now, earliest deadline first."""
        if now >= self._next_resync:
            self.all_due()
        with self._lock:
            ready = [i for i, due in enumerate(self._due) if due <= now]
            ready.sort(key=self._due.__getitem__)
        return ready

    def wait_time(self, now: float) -> float:
        """Seconds until some shard is due or the next resync."""
        with self._lock:
            earliest = min(min(self._due), self._next_resync)
        return max(0.0, earliest - now)


log = logging.getLogger("rapidfire.worker")


class ClaimRound:
    """The bookkeeping of one round of a worker's claims over its due shards.

    A shard whose claim a slot migration refused backs off on its own; when a
    cluster node does not answer, every shard on it backs off and the other
    nodes are served; when Redis as a whole is away, the round stops and the
    worker pauses (:attr:`outage`). ``shard_node`` names a shard's node, or
    None off a cluster.
    """

    def __init__(
        self, schedule: Schedule, shard_node: Callable[[int], str | None]
    ) -> None:
        self.schedule = schedule
        self.shard_node = shard_node
        self.tried = self.failed = 0
        self.error: RedisUnavailableError | None = None
        self.away: set[str] = set()  # cluster nodes that failed this round

    def skip(self, shard: int) -> bool:
        """Count ``shard`` as tried; True when its node failed this round."""
        self.tried += 1
        if self.away and self.shard_node(shard) in self.away:
            self.failed += 1
            self.schedule.failed(shard, time.monotonic())
            return True
        return False

    def failed_on(self, shard: int, exc: RedisUnavailableError) -> bool:
        """The claim of ``shard`` failed; True when the round must stop."""
        self.failed, self.error = self.failed + 1, exc
        if exc.refused or exc.migrating:
            # This shard only (its slot is migrating); the others go on.
            if self.schedule.failed(shard, time.monotonic()) == 1:
                log.warning("claim of shard %d failed: %s", shard, exc)
            return False
        node = self.shard_node(shard)
        if node is None:
            self.tried = self.failed  # Redis itself is away: stop here
            return True
        # One primary is away: serve the others meanwhile.
        if node not in self.away:
            log.warning(
                "claims on %s failed: %s; its shards are tried again after a backoff",
                node,
                exc,
            )
        self.away.add(node)
        self.schedule.failed(shard, time.monotonic())
        return False

    @property
    def outage(self) -> RedisUnavailableError | None:
        """The error, when every claim of the round failed."""
        if self.error is not None and self.failed == self.tried:
            return self.error
        return None


# Written here, not in the generated sync batcher, whose source rules would
# rewrite the words it needs.
ASYNC_HANDLER_REFUSED = (
    "handler is async, but Batcher.drain runs handlers in threads and cannot"
    " await them: use AsyncBatcher.drain"
)
AWAITABLE_RETURNED = (
    "the handler returned an awaitable: Batcher.drain runs handlers in threads"
    " and cannot await it; use AsyncBatcher.drain"
)


def is_async_handler(handler: Any) -> bool:
    """Whether calling ``handler`` returns a coroutine (function or __call__)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )


def error_text(exc: BaseException) -> str:
    """The error kept with a nacked batch: the exception's type and text."""
    return f"{type(exc).__name__}: {exc}"


def count_failure(
    report: DrainReport, batch: Batch, exc: BaseException, outcome: NackOutcome
) -> None:
    """Log a handler failure and count what became of the batch.

    The exception's text may quote a message, so WARNING names only its type;
    the traceback goes to DEBUG.
    """
    report.failed += 1
    if outcome == "dead":
        report.dead_lettered += 1
    elif outcome == "lost":
        report.lost += 1
    log.warning(
        "handler raised %s on batch %s of %s (attempt %d): %s",
        type(exc).__name__,
        batch.id,
        mask(batch.conversation),
        batch.attempt,
        {"retry": "will retry", "dead": "moved to dead letters", "lost": "lease lost"}[
            outcome
        ],
    )
    log.debug("handler traceback for batch %s", batch.id, exc_info=exc)


def lease_lost(report: DrainReport, batch: Batch, when: str) -> None:
    """Count and log a batch whose lease ran out under its handler."""
    report.lost += 1
    log.warning(
        "lease of batch %s of %s was lost %s; it will be (or was) delivered again",
        batch.id,
        mask(batch.conversation),
        when,
    )


def wait_timeout(
    schedule: Schedule,
    now: float,
    *,
    free: int,
    renewing: bool,
    next_renew: float,
    stop_at: float | None,
    watching_stop: bool,
) -> float:
    """How long a worker's loop may sleep: until a shard is due (when it has
    room for a batch), the next lease renewal, the end of the grace period or
    the next look at the stop event, and at most until the next resync or
    heartbeat."""
    timeout = schedule.wait_time(now) if free > 0 else math.inf
    if renewing:
        timeout = min(timeout, next_renew - now)
    if stop_at is not None:
        timeout = min(timeout, stop_at - now)
    elif watching_stop:
        timeout = min(timeout, STOP_POLL)
    return max(0.0, min(timeout, RESYNC, HEARTBEAT))


def warn_if_overdue(stats: Stats, namespace: str) -> None:
    """An idle worker that sees batches stay overdue says so: it cannot claim
    them. One that became ready a moment ago is another worker's to take."""
    if stats.overdue and (stats.oldest_overdue or 0.0) > OVERDUE_ALARM:
        log.warning(
            "this worker has been idle for a while and %d batch(es) of namespace"
            " %s are overdue (the oldest by %.0fs): are its claims of some shard"
            " failing (see the warnings before), or do producers use another"
            " layout or key prefix?",
            stats.overdue,
            namespace,
            stats.oldest_overdue or 0.0,
        )
