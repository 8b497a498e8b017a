# Generated from _async_batcher.py by tools/unasync.py; do not edit.
# Change _async_batcher.py, then run `python tools/unasync.py`.
"""Batcher: the batcher API for threads and plain code."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ._codec import Codec
from ._config import RedisConfig
from ._errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    LeaseLostError,
    RedisCommandError,
    RedisUnavailableError,
    StoreError,
)
from ._executor import SyncExecutor
from ._logging import mask
from ._models import (
    Batch,
    ConversationState,
    DeadLetter,
    DrainReport,
    Peer,
    PushReceipt,
    Stats,
)
from ._observer import Observer, notify
from ._policy import BatchPolicy
from ._protocol import (
    SERVERS_CHECKED,
    Call,
    ClaimResult,
    NackOutcome,
    Protocol,
    score_pairs,
)
from ._validate import argument_seconds as check_seconds
from ._validate import as_seconds
from ._version import __version__

__all__ = ["Batcher"]

log = logging.getLogger("rapidfire.batcher")

LAYOUT_RECHECK = 3600.0
PRODUCER_BEAT = 60.0
WORKER_SILENCE = 60.0
# claim() visits up to this many shards one by one; beyond, it first peeks at
# every shard in one round trip and claims only where there is work.
WALK_SHARDS = 4
MAX_ERROR_CHARS = 2000
# A handler takes a Batch; Batcher ignores what it returns.
Handler = Callable[[Batch], Any]


class Batcher:
    """Collects each conversation's burst of messages into one batch, on Redis.

    Producers ``push`` messages; workers ``claim`` ready batches (or run
    ``drain``), handle them and ``ack``. A batch is leased to one claimer at a
    time; a claimer that dies loses nothing, since the lease runs out and the
    batch is delivered again. See :class:`BatchPolicy` for when a batch
    becomes ready.

    Creating a batcher is cheap and sends nothing; it connects on first use and
    then logs, once, the :meth:`RedisConfig.describe` line of its config.
    The batcher is safe to share between threads.

    Args:
        config: Where the namespace lives. Every producer and worker of a
            namespace must use the same server, database and namespace.
        policy: Batching and retry rules; :class:`BatchPolicy` defaults if
            omitted.
        codec: Turns messages into bytes; JSON by default.
        clock: For tests only: a function returning the time in seconds, used
            by every script in place of the Redis server's clock.
        observer: Hooks for metrics and tracing (see :class:`Observer` and
            ``rapidfire.metrics``).
        record_layout: Record the namespace's layout in Redis on first use
            (the default). Tools that only look pass False, so that pointing
            them at the wrong database leaves nothing there.
    """

    def __init__(
        self,
        config: RedisConfig,
        policy: BatchPolicy | None = None,
        *,
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
        observer: Observer | None = None,
        record_layout: bool = True,
    ) -> None:
        if not isinstance(config, RedisConfig):
            raise ArgumentTypeError(
                f"config must be a RedisConfig, got {type(config).__name__}"
            )
        if policy is not None and not isinstance(policy, BatchPolicy):
            raise ArgumentTypeError(
                f"policy must be a BatchPolicy or None, got {type(policy).__name__}"
            )
        self._protocol = Protocol(config, policy or BatchPolicy(), codec, clock)
        self.observer = observer
        self._refuses_async_handlers = True
        self._record_layout = record_layout
        self._executor: SyncExecutor | None = None
        self._layout_checked: float | None = None
        self._lock = threading.Lock()
        self._next_shard = 0
        self.peer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._next_producer_beat = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.describe()!r})"

    @property
    def config(self) -> RedisConfig:
        """The config this batcher was built with."""
        return self._protocol.config

    @property
    def policy(self) -> BatchPolicy:
        """The policy this batcher was built with."""
        return self._protocol.policy

    @property
    def protocol(self) -> Protocol:
        """The I/O-free request builder (for workers and tools built on this)."""
        return self._protocol

    # -- connection ---------------------------------------------------------

    def _ready(self) -> SyncExecutor:
        executor = self._executor
        if executor is not None and not self._layout_due():
            return executor
        with self._lock:
            if self._executor is None:
                config = self._resolved_config()
                self._executor = SyncExecutor(
                    config.client(),
                    config.where,
                    config.retries,
                    cluster=bool(config.cluster),
                )
                log.info("rapidfire using %s", config.describe())
            executor = self._executor
            if self._layout_due():
                first = self._layout_checked is None
                calls = self._protocol.layout_calls()
                if not self._record_layout:
                    calls = calls[1:2]  # GET only
                    replies = [None, *executor.run_many(calls)]
                else:
                    replies = executor.run_many(calls)
                self._protocol.check_layout(replies)
                self._layout_checked = time.monotonic()
                if first:
                    self._warn_about_server(executor)
        return executor

    def _resolve(self) -> None:
        """Learn from the server, once, whether it is a cluster (and so the
        default shard count) when the config left that open. Sends nothing
        else, so a call refused for a bad argument still leaves no trace."""
        if not self._protocol.config.resolved:
            with self._lock:
                self._resolved_config()

    def _resolved_config(self) -> RedisConfig:
        config = self.config
        if not config.resolved:
            config = config.detect()
            self._protocol = self._protocol.with_config(config)
        return config

    def _shard_node(self, shard: int) -> str | None:
        """On a cluster, the ``host:port`` of the primary serving ``shard``
        as far as this batcher knows; None elsewhere (workers use it to keep
        serving the other nodes when one is away)."""
        executor = self._executor
        if executor is None or not executor.cluster:
            return None
        try:
            slot = self._protocol.layout.shard(shard).slot
            return str(executor.client.nodes_manager.get_node_from_slot(slot).name)
        except Exception:  # the slot map may be refreshing
            return None

    def wake_client(self, attempt: int = 0) -> Any:
        """A new client for the wake channel (workers use it; close it after).

        On a cluster, PUBLISH reaches the subscribers of every node, so one
        node will do: a primary the cluster client knows of, a different one
        for each ``attempt``, so that a failed node is not tried forever.
        """
        self._resolve()
        config = self.config
        if not config.cluster:
            return config.client()
        nodes = list(config.nodes)  # seeds: they may be replicas, or down
        try:
            executor = self._ready()  # connected: the primaries are known
            known = executor.client.get_primaries()
            nodes = [(n.host, n.port) for n in known] or nodes
        except Exception as exc:  # the slot map may be refreshing
            log.debug("no cluster primaries known yet: %s", exc)
        return config.node_client(nodes[attempt % len(nodes)])

    def _warn_about_server(self, executor: SyncExecutor) -> None:
        config = self.config
        seen = (config.where, config.db)
        if config.is_memory or seen in SERVERS_CHECKED:
            return
        SERVERS_CHECKED.add(seen)
        try:
            risks = self._server_risks(executor)
        except StoreError as exc:  # a warning must never fail the caller's call
            log.warning("could not read the settings of Redis at %s: %s", seen[0], exc)
            return
        for risk in risks:
            log.warning("%s", risk)

    def _server_risks(self, executor: SyncExecutor) -> list[str]:
        try:
            replies = executor.run_on_primaries(self._protocol.server_check_calls())
        except RedisCommandError as exc:  # CONFIG may be disabled (managed Redis)
            return [self._protocol.unreadable_settings(exc)]
        return self._protocol.decode_server_check(replies)

    def check_server(self) -> list[str]:
        """What in the server's settings risks waiting work (eviction policy,
        persistence), one sentence each; empty when nothing does. A server
        that hides its settings (CONFIG disabled) gets a sentence saying so.

        Batchers log these once per server at start as warnings.
        """
        if self.config.is_memory:
            return []
        return self._server_risks(self._ready())

    def _longest(self) -> float:
        """The longest delay or lease a call may ask for: the policy's ttl,
        past which the batch's keys could expire before it is claimed."""
        return as_seconds(self.policy.ttl)

    def _layout_due(self) -> bool:
        checked = self._layout_checked
        return checked is None or time.monotonic() - checked >= LAYOUT_RECHECK

    def ping(self) -> float:
        """Round-trip time to Redis in seconds; raises when it is unreachable."""
        executor = self._ready()
        start = time.perf_counter()
        executor.run(self._protocol.ping_call())
        return time.perf_counter() - start

    def close(self) -> None:
        """Close the connection pool. The batcher reconnects if used again."""
        # The layout stays checked: a batcher used again after close()
        # reconnects, but its namespace's layout has not changed.
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.client.close()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- producing ------------------------------------------------------------

    def push(
        self, conversation: str, message: Any, *, dedupe_id: str | None = None
    ) -> PushReceipt:
        """Append a message to the conversation's open batch, in one round trip.

        The batch's deadline moves to ``now + debounce`` (never past its first
        message + ``max_wait``), on the server's clock. A push that fills the
        batch to ``max_size`` makes it ready at once; the next push starts a
        new batch.

        Args:
            conversation: Who the message belongs to (for example a phone
                number); batches never mix conversations.
            message: Anything the codec can encode (JSON by default).
            dedupe_id: The platform's message id. A second push with an id seen
                in this conversation within ``dedupe_window`` stores nothing and
                returns ``duplicate=True``, even when both race.

        Raises:
            InvalidArgumentError: A bad conversation, dedupe id or message;
                nothing was stored.
            RedisUnavailableError: Redis could not be reached in time. A push
                with a ``dedupe_id`` is retried safely; one without is not
                retried, since a push whose reply was lost may have been stored.
        """
        self._resolve()
        call = self._protocol.push_call(conversation, message, dedupe_id)
        executor = self._ready()
        beat = self._producer_beat()
        if beat is None:
            reply = executor.run(call)
        else:
            reply, seen = executor.run_many([call, beat])
            self._check_workers(seen)
        receipts = self._protocol.decode_push(call, reply)
        notify(self.observer, "pushed", receipts)
        return receipts[0]

    def push_many(self, items: Iterable[Any]) -> list[PushReceipt]:
        """Push many messages in one round trip; receipts come back in order.

        Each item is ``(conversation, message)`` or ``(conversation, message,
        dedupe_id)``. Every item is validated before anything is sent. The
        messages of one conversation are stored in one atomic step; a
        conversation's step does not wait for another's, and a failure part-way
        can leave some conversations pushed and others not.
        """
        self._resolve()
        calls, positions = self._protocol.push_calls(items)
        if not calls:
            return []
        executor = self._ready()
        beat = self._producer_beat()
        replies = executor.run_many([*calls, beat] if beat else calls)
        if beat is not None:
            self._check_workers(replies.pop())
        receipts: list[PushReceipt | None] = [None] * sum(map(len, positions))
        for call, where, reply in zip(calls, positions, replies):
            for position, receipt in zip(
                where, self._protocol.decode_push(call, reply)
            ):
                receipts[position] = receipt
        done = [r for r in receipts if r is not None]
        notify(self.observer, "pushed", done)
        return done

    def _producer_beat(self) -> Call | None:
        """A producer heartbeat, at most once per PRODUCER_BEAT seconds."""
        now = time.monotonic()
        if now < self._next_producer_beat:
            return None
        self._next_producer_beat = now + PRODUCER_BEAT
        return self._beat_call("producer")

    def _beat_call(self, role: str) -> Call:
        record = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "role": role,
                "version": __version__,
                "config": self.config.describe(),
            }
        )
        return self._protocol.heartbeat_call(self.peer_id, role, record)

    def _check_workers(self, reply: Any) -> float | None:
        """Seconds since a worker was last seen; warns when that is too long."""
        now_ms, last_ms = int(reply[0]), int(reply[1])
        age = None if last_ms < 0 else (now_ms - last_ms) / 1000.0
        if age is None or age > WORKER_SILENCE:
            seen = (
                "no worker was ever seen"
                if age is None
                else (f"no worker has been seen for {age:.0f}s")
            )
            log.warning(
                "pushing into namespace %s at %s db=%s, but %s: are the workers"
                " running, and configured for this server, database and namespace?",
                self.config.namespace,
                self.config.where,
                self.config.db,
                seen,
            )
        return age

    def heartbeat(self, role: str = "worker") -> float | None:
        """Record this process as a live ``role`` of the namespace.

        Returns seconds since any worker was last seen (this one included when
        ``role`` is ``"worker"``), or None when none ever was. Workers beat
        from ``drain`` every few seconds; producers from ``push``, at most once
        a minute, in the same round trip.
        """
        executor = self._ready()
        reply = executor.run(self._beat_call(role))
        now_ms, last_ms = int(reply[0]), int(reply[1])
        return None if last_ms < 0 else (now_ms - last_ms) / 1000.0

    def peers(self) -> list[Peer]:
        """The namespace's workers and producers seen in the last day, newest first."""
        executor = self._ready()
        return self._protocol.decode_peers(
            executor.run_many(self._protocol.peers_calls())
        )

    def flush(self, conversation: str) -> int:
        """Close the conversation's open batch and make it ready now.

        Returns how many messages it holds (0 when no batch was open). A
        flushed batch waiting behind one in flight is claimable once that one
        is acknowledged.
        """
        self._resolve()
        call = self._protocol.flush_call(conversation)
        executor = self._ready()
        return int(executor.run(call))

    # -- consuming ------------------------------------------------------------

    def claim(self, limit: int = 10) -> list[Batch]:
        """Lease up to ``limit`` ready batches to the caller.

        Each batch goes to exactly one claimer, leased for the policy's
        ``lease`` seconds with a fresh fencing token. At most one batch of a
        conversation is in flight at a time. Returns at once, with an empty
        list when nothing is ready.
        """
        limit = self._protocol.check_limit(limit)
        self._resolve()
        batches: list[Batch] = []
        shards = self._protocol.shard_count
        start, self._next_shard = self._next_shard, (self._next_shard + 1) % shards
        if shards > WALK_SHARDS:
            return self._claim_where_work_is(start, limit)
        for i in range(shards):
            result = self.claim_shard((start + i) % shards, limit - len(batches))
            batches.extend(result.batches)
            if len(batches) >= limit:
                break
        return batches

    def _claim_where_work_is(self, start: int, limit: int) -> list[Batch]:
        """claim() on many shards: one round trip to see where there is work,
        one to claim it. A shard whose peek or claim fails (its slot is
        migrating, say) is left for the next call, and the other shards'
        batches stand; the call raises only when it claimed nothing and no
        claim could run, or a failure was more than a passing one."""
        executor = self._ready()
        shards = range(self._protocol.shard_count)
        peeks = executor.run_each([self._protocol.peek_call(s) for s in shards])
        usable = [(0, 0) if isinstance(p, StoreError) else p for p in peeks]
        plan = self._protocol.claim_plan(usable, start, limit)
        # Not resent as a whole: the claims that ran leased their batches.
        replies = executor.run_each(
            [self._protocol.claim_call(s, n) for s, n in plan], resend=False
        )
        batches: list[Batch] = []
        for (shard, _), reply in zip(plan, replies):
            if not isinstance(reply, StoreError):
                batches.extend((self._claimed(shard, reply)).batches)
        failed = [r for r in [*peeks, *replies] if isinstance(r, StoreError)]
        lasting = [f for f in failed if not isinstance(f, RedisUnavailableError)]
        claims_failed = [r for r in replies if isinstance(r, StoreError)]
        none_ran = all(isinstance(p, StoreError) for p in peeks) or (
            replies and len(claims_failed) == len(replies)
        )
        if not batches and (lasting or none_ran):
            raise (lasting or claims_failed or failed)[0]
        if failed:
            log.info("claim skipped %d shard(s) this time: %s", len(failed), failed[0])
        return batches

    def claim_shard(self, shard: int, limit: int) -> ClaimResult:
        """Claim from one shard; the result also tells its next deadline."""
        self._resolve()
        call = self._protocol.claim_call(shard, limit)
        executor = self._ready()
        return self._claimed(shard, executor.run(call))

    def _claimed(self, shard: int, reply: Any) -> ClaimResult:
        """Decode a claim's reply, dead-letter or retry what cannot be
        decoded, and tell the observer."""
        executor = self._ready()
        result = self._protocol.decode_claim(shard, reply)
        for batch, problem in result.undecodable:
            # A batch no handler can read: count the delivery, keep the error;
            # after max_attempts it rests in the dead letters with raw bytes.
            outcome = self._protocol.decode_nack(
                executor.run(
                    self._protocol.nack_call(
                        batch, self.policy.backoff(batch.attempt), problem
                    )
                )
            )
            log.warning(
                "batch %s of %s cannot be decoded by %r (%s); %s",
                batch.id,
                mask(batch.conversation),
                self._protocol.codec,
                problem.split(":")[1].strip() if ":" in problem else problem,
                "moved to the dead letters" if outcome == "dead" else "will retry",
            )
        if result.batches:
            notify(self.observer, "claimed", result.batches)
        if result.expired_batches:
            notify(
                self.observer,
                "expired",
                result.expired_batches,
                result.expired_messages,
            )
        return result

    def ack(self, batch: Batch, *, strict: bool = False) -> bool:
        """Report a batch handled: its messages are removed for good.

        Returns False, and changes nothing, when the caller no longer holds the
        batch: its lease ran out (it may be delivered again) or another
        claimer holds it now. With ``strict=True`` that raises
        :class:`LeaseLostError` instead.
        """
        self._resolve()
        call = self._protocol.ack_call(batch)
        executor = self._ready()
        done = bool(executor.run(call))
        if strict and not done:
            raise LeaseLostError(
                f"batch {batch.id} is no longer held by this caller: its lease ran"
                " out or another claimer holds it"
            )
        return done

    def nack(
        self, batch: Batch, delay: float | None = None, *, error: str | None = None
    ) -> NackOutcome:
        """Give a batch back to be delivered again after ``delay`` seconds.

        Without ``delay`` the policy's backoff for this attempt is used. A
        batch already delivered ``max_attempts`` times moves to the dead
        letters instead, with ``error``. Returns ``"retry"``, ``"dead"``, or
        ``"lost"`` when the caller no longer holds the batch.
        """
        self._resolve()
        if delay is None:
            delay = self.policy.backoff(self._protocol.check_batch(batch).attempt)
        delay = check_seconds("delay", delay, maximum=self._longest())
        text = "" if error is None else str(error)[:MAX_ERROR_CHARS]
        call = self._protocol.nack_call(batch, delay, text)
        executor = self._ready()
        outcome: NackOutcome = self._protocol.decode_nack(executor.run(call))
        return outcome

    def release(self, batch: Batch, delay: float = 0.0) -> bool:
        """Give a batch back unused: this delivery does not count as an attempt.

        For a worker shutting down. Returns False when the caller no longer
        holds the batch.
        """
        self._resolve()
        delay = check_seconds("delay", delay, maximum=self._longest())
        call = self._protocol.nack_call(batch, delay, "", counted=False)
        executor = self._ready()
        return self._protocol.decode_nack(executor.run(call)) == "retry"

    def extend(
        self, batch: Batch, seconds: float | None = None, *, strict: bool = False
    ) -> bool:
        """Renew the caller's lease: it now ends ``seconds`` from now.

        Defaults to the policy's lease. Returns False when the caller no longer
        holds the batch (the lease had already run out); with ``strict=True``
        that raises :class:`LeaseLostError` instead.
        """
        self._resolve()
        lease = self.policy.lease if seconds is None else seconds
        lease = check_seconds("seconds", lease, minimum=0.001, maximum=self._longest())
        call = self._protocol.extend_call(batch, lease)
        executor = self._ready()
        done = bool(executor.run(call))
        if strict and not done:
            raise LeaseLostError(
                f"the lease of batch {batch.id} ran out before it was extended"
            )
        return done

    def extend_many(
        self, batches: Iterable[Batch], seconds: float | None = None
    ) -> list[bool]:
        """:meth:`extend` several batches in one round trip."""
        self._resolve()
        lease = self.policy.lease if seconds is None else seconds
        lease = check_seconds("seconds", lease, minimum=0.001, maximum=self._longest())
        calls = [self._protocol.extend_call(b, lease) for b in batches]
        executor = self._ready()
        return [bool(r) for r in executor.run_many(calls)]

    def owns(self, batch: Batch) -> bool:
        """Whether the caller still holds the batch (its lease is current).

        Call it right before an irreversible side effect, such as sending the
        reply. It narrows the window for a duplicate; it cannot close it, so
        make the side effect idempotent on ``batch.id`` where the platform
        allows.
        """
        self._resolve()
        call = self._protocol.owns_call(batch)
        executor = self._ready()
        return bool(executor.run(call))

    def drain(
        self,
        handler: Handler,
        *,
        concurrency: int = 1,
        until_idle: bool = False,
        stop: Any = None,
        grace: float = 30.0,
        renew: bool = True,
    ) -> DrainReport:
        """Claim and handle batches until stopped (or idle).

        Each claimed batch is passed to ``handler``. When it returns, the
        batch is acknowledged; when it raises, the batch is nacked with the
        policy's backoff and the error. While a handler runs its lease is
        renewed (``renew=False`` turns that off). An idle worker sleeps until
        the next deadline or a push that brings one closer; it does not poll.

        Args:
            handler: Called with each :class:`Batch`; runs in a worker thread.
            concurrency: Batches handled at the same time.
            until_idle: Return once nothing is pending or in flight in the
                namespace (waiting for open batches to become ready).
            stop: An event (anything with ``is_set()``): when set, claiming
                stops, batches in hand get ``grace`` seconds to finish, and
                those that do not are given back with :meth:`release`.
            grace: Seconds to let handlers finish after ``stop``.
            renew: Renew leases while handlers run.
        """
        from ._worker import drain as run_drain
        from ._workloop import ASYNC_HANDLER_REFUSED, is_async_handler

        if not callable(handler):
            raise ArgumentTypeError(
                f"handler must be callable, got {type(handler).__name__}"
            )
        if self._refuses_async_handlers and is_async_handler(handler):
            raise ArgumentTypeError(ASYNC_HANDLER_REFUSED)

        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or concurrency < 1
        ):
            raise InvalidArgumentError(
                f"concurrency must be an integer >= 1, got {concurrency!r}"
            )
        grace = check_seconds("grace", grace)
        self._resolve()  # the worker plans its rounds over every shard
        return run_drain(
            self,
            handler,
            concurrency=concurrency,
            until_idle=until_idle,
            stop=stop,
            grace=grace,
            renew=renew,
        )

    # -- looking --------------------------------------------------------------

    def stats(self) -> Stats:
        """Pending, in-flight and dead batches, and the counters, over all shards."""
        executor = self._ready()
        now_ms = self._server_ms(executor)
        replies = executor.run_many(self._protocol.stats_calls(now_ms))
        return self._protocol.decode_stats(now_ms, replies)

    def inspect(self, conversation: str) -> ConversationState:
        """Everything stored for one conversation (batches, lease, last error)."""
        self._resolve()
        calls = self._protocol.inspect_calls(conversation)
        executor = self._ready()
        return self._protocol.decode_inspect(conversation, executor.run_many(calls))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters, up to ``limit``, oldest first."""
        self._resolve()
        limit = self._protocol.check_limit(limit)
        executor = self._ready()
        now_ms = self._server_ms(executor)
        indexes = executor.run_many(self._protocol.dead_index_calls(now_ms, limit))
        found = []
        for shard, index in zip(self._protocol.layout.all_shards(), indexes):
            for member, score in score_pairs(index):
                found.append((score, shard, member.decode()))
        found.sort(key=lambda entry: entry[0])
        letters = []
        for _, shard, batch_id in found[:limit]:
            fields, messages = executor.run_many(
                self._protocol.dead_letter_calls(shard, batch_id)
            )
            letter = self._protocol.decode_dead_letter(batch_id, fields, messages)
            if letter is not None:
                letters.append(letter)
        return letters

    def dead_letter(self, batch_id: str) -> DeadLetter | None:
        """One dead letter by its batch id, or None."""
        self._resolve()
        shard = self._protocol.shard_of_dead_letter(batch_id)
        executor = self._ready()
        fields, messages = executor.run_many(
            self._protocol.dead_letter_calls(shard, batch_id)
        )
        return self._protocol.decode_dead_letter(batch_id, fields, messages)

    def requeue(self, dead: DeadLetter | str) -> int:
        """Bring a dead letter back as a batch that is ready now (attempts reset).

        It goes before the conversation's batches that are not in flight.
        Returns how many messages came back (0 when it no longer exists).
        """
        letter = self._dead_letter_of(dead)
        if letter is None:
            return 0
        executor = self._ready()
        return int(executor.run(self._protocol.requeue_call(letter)))

    def purge(self, dead: DeadLetter | str) -> bool:
        """Delete a dead letter for good. Returns False when it did not exist."""
        self._resolve()
        batch_id = dead.id if isinstance(dead, DeadLetter) else dead
        if not isinstance(batch_id, str):
            raise ArgumentTypeError(
                f"dead must be a DeadLetter or its id, got {type(dead).__name__}"
            )
        call = self._protocol.purge_call(batch_id)
        executor = self._ready()
        return bool(executor.run(call))

    def _server_ms(self, executor: SyncExecutor) -> int:
        return self._protocol.decode_time(executor.run(self._protocol.time_call()))

    def _dead_letter_of(self, dead: DeadLetter | str) -> DeadLetter | None:
        if isinstance(dead, DeadLetter):
            return dead
        if not isinstance(dead, str):
            raise ArgumentTypeError(
                f"dead must be a DeadLetter or its id, got {type(dead).__name__}"
            )
        return self.dead_letter(dead)
