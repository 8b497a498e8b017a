"""The drain loop of :class:`AsyncBatcher`: claim, hand to handler tasks, ack.

The same loop as the thread worker, on anyio: one task claims and renews
leases, each batch is handled in its own task (sync handlers in a worker
thread), and a listener task follows the namespace's wake channel.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread

from ._errors import RedisUnavailableError, StoreError
from ._models import Batch, DrainReport
from ._observer import handling, notify
from ._validate import as_seconds
from ._workloop import (
    HEARTBEAT,
    IDLE_CHECK,
    ClaimRound,
    Schedule,
    WakeLiveness,
    backoff,
    count_failure,
    error_text,
    is_async_handler,
    lease_lost,
    parse_wake,
    resync_period,
    wait_timeout,
    warn_if_overdue,
)

if TYPE_CHECKING:
    from ._async_batcher import AsyncBatcher

__all__ = ["drain"]

log = logging.getLogger("rapidfire.worker")

RELEASE_TIMEOUT = 5.0


@dataclass
class _Job:
    batch: Batch
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False
    given_back: bool = False
    settling: bool = False
    claimed: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)


async def drain(
    batcher: AsyncBatcher,
    handler: Callable[[Batch], Any],
    *,
    concurrency: int,
    until_idle: bool,
    stop: Any,
    grace: float,
    renew: bool,
) -> DrainReport:
    """See :meth:`AsyncBatcher.drain`."""
    worker = _AsyncWorker(batcher, handler, concurrency, until_idle, stop, grace, renew)
    return await worker.run()


class _AsyncWorker:
    def __init__(
        self,
        batcher: AsyncBatcher,
        handler: Callable[[Batch], Any],
        concurrency: int,
        until_idle: bool,
        stop: Any,
        grace: float,
        renew: bool,
    ) -> None:
        self.batcher = batcher
        self.handler = handler
        self.handler_is_async = is_async_handler(handler)
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
        self.signal = anyio.Event()

    def _wake(self) -> None:
        self.signal.set()

    async def run(self) -> DrainReport:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._listen)
            try:
                async with anyio.create_task_group() as handlers:
                    await self._loop(handlers)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._give_back()
                tasks.cancel_scope.cancel()
        return self.report

    # -- the loop -----------------------------------------------------------

    async def _loop(self, handlers: anyio.abc.TaskGroup) -> None:
        renew_every = as_seconds(self.batcher.policy.lease) / 3
        next_renew = time.monotonic() + renew_every
        next_beat = 0.0
        last_busy = time.monotonic()
        stop_at: float | None = None
        empty: dict[int, bool] = {}
        failures = 0
        while True:
            self.signal = anyio.Event()
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
                    await self._give_back()
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
                        result = await self.batcher.claim_shard(shard, free)
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
                        self._start(handlers, batch)
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
                    await anyio.sleep(pause)
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
                    await self.batcher.heartbeat("worker")
                    if self.jobs:
                        last_busy = now
                    elif now - last_busy >= self.idle_check:
                        last_busy = now
                        await self._check_overdue()
                except StoreError as exc:
                    log.warning("heartbeat failed: %s", exc)
            if self.renew and self.jobs and now >= next_renew:
                await self._renew_leases()
                next_renew = now + renew_every
            with anyio.move_on_after(
                wait_timeout(
                    self.schedule,
                    now,
                    free=free,
                    renewing=bool(self.renew and self.jobs),
                    next_renew=next_renew,
                    stop_at=stop_at,
                    watching_stop=self.stop is not None,
                )
            ):
                await self.signal.wait()

    async def _check_overdue(self) -> None:
        warn_if_overdue(await self.batcher.stats(), self.batcher.config.namespace)

    # -- handling -----------------------------------------------------------

    def _start(self, handlers: anyio.abc.TaskGroup, batch: Batch) -> None:
        job = _Job(batch)
        self.jobs[batch.id] = job
        handlers.start_soon(self._handle, job)

    async def _call_handler(self, batch: Batch) -> None:
        if self.handler_is_async:
            await self.handler(batch)
            return
        result = await anyio.to_thread.run_sync(self.handler, batch)
        if inspect.isawaitable(result):
            await result

    async def _handle(self, job: _Job) -> None:
        batch = job.batch
        try:
            with job.scope:
                observer = self.batcher.observer
                notify(observer, "started", batch, time.monotonic() - job.claimed)
                began = time.monotonic()
                try:
                    with handling(observer, batch):
                        await self._call_handler(batch)
                except Exception as exc:
                    job.settling = True
                    text = error_text(exc)
                    outcome = await self._settle(
                        job, lambda: self.batcher.nack(batch, error=text)
                    )
                    count_failure(self.report, batch, exc, outcome)
                    notify(
                        observer, "settled", batch, outcome, time.monotonic() - began
                    )
                    return
                job.settling = True
                acked = await self._settle(job, lambda: self.batcher.ack(batch))
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
            self.jobs.pop(batch.id, None)
            self._wake()

    async def _settle(self, job: _Job, step: Any) -> Any:
        """Run ack or nack; while Redis is unreachable, keep trying until the
        lease runs out, since giving up sooner makes the batch come back to
        another worker although this one handled it."""
        deadline = job.renewed + as_seconds(self.batcher.policy.lease)
        pause = 0.1
        while True:
            try:
                return await step()
            except RedisUnavailableError:
                if time.monotonic() + pause >= deadline:
                    raise
                log.warning(
                    "Redis unreachable while settling batch %s; trying again",
                    job.batch.id,
                )
                await anyio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _renew_leases(self) -> None:
        jobs = [
            j for j in self.jobs.values() if not (j.lost or j.given_back or j.settling)
        ]
        if not jobs:
            return
        try:
            renewed = await self.batcher.extend_many([j.batch for j in jobs])
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

    async def _give_back(self) -> None:
        """Cancel unfinished handlers and release their batches, unpenalised."""
        jobs = [j for j in self.jobs.values() if not j.given_back]
        for job in jobs:
            job.given_back = True
            job.scope.cancel()
            try:
                with anyio.fail_after(RELEASE_TIMEOUT):
                    if await self.batcher.release(job.batch):
                        self.report.released += 1
            except (StoreError, TimeoutError) as exc:
                log.warning("could not give back batch %s: %s", job.batch.id, exc)
        if jobs:
            log.warning("gave back %d unfinished batch(es)", len(jobs))

    # -- wake messages --------------------------------------------------------

    async def _listen(self) -> None:
        channel = self.batcher.protocol.layout.wake_channel
        pause, attempt = 0.5, 0
        while True:
            client = await self.batcher.wake_client(attempt)
            attempt += 1
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(channel)
                self.schedule.all_due()
                self._wake()
                pause = 0.5
                alive = WakeLiveness(time.monotonic())
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if alive.ping_due(message, time.monotonic()):
                        await pubsub.ping()
                    if message is None or message.get("type") != "message":
                        continue
                    wake = parse_wake(message["data"])
                    if wake is not None:
                        self.schedule.woken(*wake, time.monotonic())
                        self._wake()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # any failure: reconnect, never die
                log.warning("wake channel lost (%s); reconnecting in %.1fs", exc, pause)
                await anyio.sleep(pause)
                pause = min(pause * 2, 10.0)
            finally:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
