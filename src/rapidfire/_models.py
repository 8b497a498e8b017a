"""The values rapidfire hands back: batches, push receipts, stats, dead letters."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Batch",
    "BatchView",
    "ConversationState",
    "DeadLetter",
    "DrainReport",
    "Peer",
    "PushReceipt",
    "ReadyReason",
    "Stats",
]


class ReadyReason(str, enum.Enum):
    """Why a batch was handed over."""

    QUIET = "quiet"
    """The conversation was quiet for the debounce window."""
    MAX_WAIT = "max_wait"
    """``max_wait`` passed since the batch's first message."""
    MAX_SIZE = "max_size"
    """The batch reached ``max_size`` messages."""
    FLUSH = "flush"
    """``flush()`` closed it."""
    RETRY = "retry"
    """An earlier delivery was nacked (or given back) and its delay passed."""
    LEASE_EXPIRED = "lease_expired"
    """An earlier holder's lease ran out before it acknowledged."""
    REQUEUED = "requeued"
    """It was brought back from the dead letters."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Batch:
    """A conversation's burst, leased to the caller that claimed it.

    Times are seconds since the epoch on the Redis server's clock.

    Attributes:
        id: Stays the same across redeliveries: use it to make a side effect
            (sending the reply) idempotent.
        conversation: The conversation id the messages were pushed to.
        messages: The decoded messages, in push order.
        attempt: 1 on first delivery, 2 on the next, ...
        reason: Why the batch became ready this time.
        first_push_at, last_push_at: When its first and latest messages came.
        ready_at: When it became claimable.
        claimed_at: When this delivery was claimed.
        lease_expires_at: When the lease ends unless extended.
        token: The fencing token of this delivery; ``ack``/``nack`` present it.
        shard: The shard of the namespace that holds the conversation.
    """

    id: str
    conversation: str
    messages: tuple[Any, ...]
    attempt: int
    reason: ReadyReason
    first_push_at: float
    last_push_at: float
    ready_at: float
    claimed_at: float
    lease_expires_at: float
    token: int = field(repr=False)
    shard: int = field(default=0, repr=False)

    @property
    def size(self) -> int:
        """Number of messages in the batch."""
        return len(self.messages)

    @property
    def waited(self) -> float:
        """Seconds from the first message to this claim."""
        return self.claimed_at - self.first_push_at

    @property
    def handover_delay(self) -> float:
        """Seconds from becoming ready to being claimed."""
        return max(0.0, self.claimed_at - self.ready_at)


@dataclass(frozen=True)
class PushReceipt:
    """What a push did.

    Attributes:
        conversation: The conversation pushed to.
        duplicate: True when the ``dedupe_id`` was seen within the dedupe
            window: nothing was stored.
        batch_id: The batch the message joined (for a duplicate: the
            conversation's open batch, or ``None`` when it has none).
        size: Messages in that batch now (0 when ``batch_id`` is ``None``).
        ready_at: When that batch becomes claimable if nothing else arrives
            (server clock, epoch seconds), or ``None``.
        server_time: The server's clock when the push ran.
    """

    conversation: str
    duplicate: bool
    batch_id: str | None
    size: int
    ready_at: float | None
    server_time: float

    @property
    def ready_in(self) -> float | None:
        """Seconds from the push until the batch is ready (0 when it is)."""
        if self.ready_at is None:
            return None
        return max(0.0, self.ready_at - self.server_time)


@dataclass(frozen=True)
class Stats:
    """A namespace's state and counters, summed over its shards.

    Attributes:
        pending: Conversations whose next batch waits to be claimed (its ready
            time may not have come yet).
        in_flight: Batches leased to a claimer right now.
        dead: Dead letters kept.
        stored_messages: Messages stored and not yet acknowledged or
            dead-lettered.
        overdue: Pending batches whose ready time has passed (waiting for a
            worker).
        oldest_overdue: Seconds the most overdue batch is past its ready time.
        pushed, duplicates, claimed, acked, retried, released, dead_lettered,
        requeued: Counters since the namespace's counters were created.
        expired_batches, expired_messages: Work whose keys expired before it was
            claimed (counted when a claimer finds the gap). Non-zero means
            workers were away longer than the policy's ``ttl``.
        ready_reasons: Claims by :class:`ReadyReason` value.
    """

    pending: int
    in_flight: int
    dead: int
    stored_messages: int
    overdue: int
    oldest_overdue: float | None
    pushed: int
    duplicates: int
    claimed: int
    acked: int
    retried: int
    released: int
    dead_lettered: int
    requeued: int
    expired_batches: int
    expired_messages: int
    ready_reasons: Mapping[str, int]


@dataclass(frozen=True)
class DeadLetter:
    """A batch that failed ``max_attempts`` times, kept with its messages."""

    id: str
    conversation: str
    messages: tuple[Any, ...]
    attempts: int
    error: str
    reason: str
    first_push_at: float
    last_push_at: float
    dead_at: float


@dataclass(frozen=True)
class BatchView:
    """One batch of a conversation as :meth:`Batcher.inspect` sees it."""

    id: str
    size: int
    open: bool
    reason: str
    attempt: int
    first_push_at: float
    last_push_at: float
    ready_at: float


@dataclass(frozen=True)
class ConversationState:
    """Everything stored for one conversation."""

    conversation: str
    shard: int
    batches: tuple[BatchView, ...]
    stored_messages: int
    in_flight: bool
    lease_expires_at: float | None
    ready_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class Peer:
    """A worker or producer of the namespace, from its latest heartbeat.

    Attributes:
        id: ``host:pid:random`` of the process.
        role: ``"worker"`` or ``"producer"``.
        config: The :meth:`RedisConfig.describe` line the process runs with.
        age: Seconds since its latest heartbeat (server clock).
    """

    id: str
    role: str
    host: str
    pid: int
    version: str
    config: str
    age: float


@dataclass
class DrainReport:
    """What one ``drain`` call did.

    Attributes:
        handled: Batches whose handler returned and whose ack succeeded.
        failed: Handler exceptions (each batch was nacked).
        dead_lettered: Failures that moved a batch to the dead letters.
        lost: Batches whose lease ran out under their handler.
        released: Batches given back unfinished at shutdown.
        unfinished: Thread handlers still running when drain returned (their
            batches were given back; threads cannot be stopped).
    """

    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    released: int = 0
    unfinished: int = 0
