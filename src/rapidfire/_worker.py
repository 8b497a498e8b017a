"""The drain loop of :class:`Batcher`: claim, hand to handler threads, ack.

One loop thread claims and renews leases; handlers run in a thread pool; a
listener thread follows the namespace's wake channel. The loop sleeps until
the earliest known deadline, a wake message, a finished handler or the next
lease renewal: an idle worker sends no commands except a heartbeat and a claim
per shard every ``resync_period(shards)`` seconds (30 s, longer for many shards).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import ArgumentTypeError, RedisUnavailableError, StoreError
from ._models import Batch, DrainReport
from ._observer import handling, notify
from ._validate import as_seconds
from ._workloop import (
    AWAITABLE_RETURNED,
    HEARTBEAT,
    IDLE_CHECK,
    ClaimRound,
    Schedule,
    WakeLiveness,
    backoff,
    count_failure,
    error_text,
    lease_lost,
    parse_wake,
    resync_period,
    wait_timeout,
    warn_if_overdue,
)

if TYPE_CHECKING:
    from ._batcher import Batcher

__all__ = ["drain"]

log = logging.getLogger("rapidfire.worker")


@dataclass
class _Job:
    batch: Batch
    lost: bool = False
    given_back: bool = False
    settling: bool = False
    claimed: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)


def drain(
    batcher: Batcher,
    handler: Callable[[Batch], Any],
    *,
    concurrency: int,
    until_idle: bool,
    stop: Any,
    grace: float,
    renew: bool,
) -> DrainReport:
    """See :meth:`Batcher.drain`."""
    worker = _ThreadWorker(
        batcher, handler, concurrency, until_idle, stop, grace, renew
    )
    return worker.run()


class _ThreadWorker:
    def __init__(
        self,
        batcher: Batcher,
        handler: Callable[[Batch], Any],
        concurrency: int,
        until_idle: bool,
        stop: Any,
        grace: float,
        renew: bool,
    ) -> None:
        self.batcher = batcher
        self.handler = handler
        self.concurrency = concurrency
        self.until_idle = until_idle
        self.stop = stop
        self.grace = grace
        self.renew = renew
        self.shards = batcher.protocol.shard_count
        self.schedule = Schedule(self.shards, resync_period(self.shards))
        # stats() reads 6 keys per shard: as rare as the resync on many shards.
        self.idle_check = max(IDLE_CHECK, resync_period(self.shards))
        self.report = DrainReport()
        self.jobs: dict[str, _Job] = {}
        self.jobs_lock = threading.Lock()
        self.signal = threading.Event()
        self.closed = threading.Event()

    def run(self) -> DrainReport:
        listener = threading.Thread(
            target=self._listen, name="rapidfire-wake", daemon=True
        )
        listener.start()
        pool = ThreadPoolExecutor(self.concurrency, "rapidfire-handler")
        try:
            self._loop(pool)
        finally:
            self.closed.set()
            pool.shutdown(wait=False, cancel_futures=True)
            listener.join(timeout=0.1)
        return self.report

    # -- the loop -----------------------------------------------------------

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        renew_every = as_seconds(self.batcher.policy.lease) / 3
        next_renew = time.monotonic() + renew_every
        next_beat = 0.0
        last_busy = time.monotonic()
        stop_at: float | None = None
        empty: dict[int, bool] = {}
        failures = 0
        while True:
            self.signal.clear()
            now = time.monotonic()
            if stop_at is None and self.stop is not None and self.stop.is_set():
                stop_at = now + self.grace
                log.info(
                    "stopping: no new claims; %d batch(es) in hand get %gs to finish",
                    len(self.jobs),
                    self.grace,
                )
            if stop_at is not None:
                if not self.jobs:
                    return
                if now >= stop_at:
                    self._give_back()
                    return
            free = self.concurrency - len(self.jobs)
            if stop_at is None and free > 0:
                idle_check = self.until_idle and not self.jobs
                shards = range(self.shards) if idle_check else self.schedule.due(now)
                claims = ClaimRound(self.schedule, self.batcher._shard_node)
                for shard in shards:
                    epoch = self.schedule.epoch(shard)
                    if claims.skip(shard):
                        continue
                    try:
                        result = self.batcher.claim_shard(shard, free)
                    except RedisUnavailableError as exc:
                        if claims.failed_on(shard, exc):
                            break
                        continue
                    self.schedule.claimed(
                        shard,
                        result.next_deadline_ms,
                        result.server_now_ms,
                        time.monotonic(),
                        epoch,
                    )
                    empty[shard] = result.ready == 0 and result.leased == 0
                    for batch in result.batches:
                        self._start(pool, batch)
                    free -= len(result.batches)
                    if free <= 0:
                        break
                error = claims.outage
                if error is not None:
                    # Every claim failed: Redis itself is away. Wait, then
                    # claim every shard once it answers.
                    failures += 1
                    pause = backoff(failures)
                    log.warning("claim failed (%s); retrying in %.1fs", error, pause)
                    self.schedule.all_due()
                    self.closed.wait(pause)
                    continue
                failures = 0
                if (
                    idle_check
                    and not self.jobs
                    and len(empty) == self.shards
                    and all(empty.values())
                ):
                    return
            if now >= next_beat:
                next_beat = now + HEARTBEAT
                try:
                    self.batcher.heartbeat("worker")
                    if self.jobs:
                        last_busy = now
                    elif now - last_busy >= self.idle_check:
                        last_busy = now
                        self._check_overdue()
                except StoreError as exc:
                    log.warning("heartbeat failed: %s", exc)
            if self.renew and self.jobs and now >= next_renew:
                self._renew_leases()
                next_renew = now + renew_every
            self.signal.wait(
                wait_timeout(
                    self.schedule,
                    now,
                    free=free,
                    renewing=bool(self.renew and self.jobs),
                    next_renew=next_renew,
                    stop_at=stop_at,
                    watching_stop=self.stop is not None,
                )
            )

    def _check_overdue(self) -> None:
        warn_if_overdue(self.batcher.stats(), self.batcher.config.namespace)

    # -- handling -----------------------------------------------------------

    def _start(self, pool: ThreadPoolExecutor, batch: Batch) -> None:
        job = _Job(batch)
        with self.jobs_lock:
            self.jobs[batch.id] = job
        pool.submit(self._handle, job)

    def _handle(self, job: _Job) -> None:
        batch = job.batch
        try:
            observer = self.batcher.observer
            notify(observer, "started", batch, time.monotonic() - job.claimed)
            began = time.monotonic()
            try:
                with handling(observer, batch):
                    result = self.handler(batch)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise ArgumentTypeError(AWAITABLE_RETURNED)
            except Exception as exc:
                job.settling = True
                text = error_text(exc)
                outcome = self._settle(
                    job, lambda: self.batcher.nack(batch, error=text)
                )
                count_failure(self.report, batch, exc, outcome)
                notify(observer, "settled", batch, outcome, time.monotonic() - began)
                return
            job.settling = True
            acked = self._settle(job, lambda: self.batcher.ack(batch))
            if acked:
                self.report.handled += 1
            elif not job.given_back:
                lease_lost(self.report, batch, "before its ack")
            notify(
                observer,
                "settled",
                batch,
                "acked" if acked else "lost",
                time.monotonic() - began,
            )
        except StoreError as exc:
            log.warning(
                "could not settle batch %s (%s); it comes back after its lease",
                batch.id,
                exc,
            )
            self.report.lost += 1
        finally:
            with self.jobs_lock:
                self.jobs.pop(batch.id, None)
            self.signal.set()

    def _settle(self, job: _Job, step: Any) -> Any:
        """Run ack or nack; while Redis is unreachable, keep trying until the
        lease runs out, since giving up sooner makes the batch come back to
        another worker although this one handled it."""
        deadline = job.renewed + as_seconds(self.batcher.policy.lease)
        pause = 0.1
        while True:
            try:
                return step()
            except RedisUnavailableError:
                if time.monotonic() + pause >= deadline:
                    raise
                log.warning(
                    "Redis unreachable while settling batch %s; trying again",
                    job.batch.id,
                )
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _renew_leases(self) -> None:
        with self.jobs_lock:
            jobs = [
                j
                for j in self.jobs.values()
                if not (j.lost or j.given_back or j.settling)
            ]
        if not jobs:
            return
        try:
            renewed = self.batcher.extend_many([j.batch for j in jobs])
        except StoreError as exc:
            log.warning("could not renew %d lease(s): %s", len(jobs), exc)
            return
        now = time.monotonic()
        for job, ok in zip(jobs, renewed):
            if ok:
                job.renewed = now
            if not ok and not job.settling:
                job.lost = True
                log.warning(
                    "lease of batch %s ran out while its handler runs", job.batch.id
                )

    def _give_back(self) -> None:
        with self.jobs_lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.given_back = True
            try:
                if self.batcher.release(job.batch):
                    self.report.released += 1
            except StoreError as exc:
                log.warning("could not give back batch %s: %s", job.batch.id, exc)
        if jobs:
            self.report.unfinished = len(jobs)
            log.warning(
                "grace period over: gave back %d unfinished batch(es)", len(jobs)
            )

    # -- wake messages --------------------------------------------------------

    def _listen(self) -> None:
        channel = self.batcher.protocol.layout.wake_channel
        pause, attempt = 0.5, 0
        while not self.closed.is_set():
            client = None
            try:
                client = self.batcher.wake_client(attempt)
                attempt += 1
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                self.schedule.all_due()
                self.signal.set()
                pause = 0.5
                alive = WakeLiveness(time.monotonic())
                while not self.closed.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if alive.ping_due(message, time.monotonic()):
                        pubsub.ping()
                    if message is None or message.get("type") != "message":
                        continue
                    wake = parse_wake(message["data"])
                    if wake is not None:
                        self.schedule.woken(*wake, time.monotonic())
                        self.signal.set()
                pubsub.close()
            except Exception as exc:  # any failure: reconnect, never die
                if self.closed.is_set():
                    break
                log.warning("wake channel lost (%s); reconnecting in %.1fs", exc, pause)
                self.closed.wait(pause)
                pause = min(pause * 2, 10.0)
            finally:
                if client is not None:
                    client.close()
