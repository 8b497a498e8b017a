# Generated from _async_executor.py by tools/unasync.py; do not edit.
# Change _async_executor.py, then run `python tools/unasync.py`.
"""Sending calls to Redis: EVALSHA with NOSCRIPT recovery, pipelines, retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from redis.crc import key_slot

from ._cluster_pipeline import execute_without_resends
from ._errors import TRANSLATED, RedisUnavailableError, translate, translate_error
from ._protocol import (
    REFUSED_RETRIES,
    Call,
    may_resend,
    raise_first_error,
    retry_delays,
)

__all__ = ["SyncExecutor"]

log = logging.getLogger("rapidfire.redis")

# Redis Cluster answers for a request it did not run and that redis-py would
# follow for a single command: rapidfire sends such a pipelined call again on
# its own (see _send_many), as a single command.
_REDIRECTED = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)
# Name the node of each pipelined script call: redis-py's synchronous cluster
# pipeline otherwise asks a server for the keys of every EVALSHA (COMMAND
# GETKEYS, one round trip each). Its asyncio pipeline reads them itself.
ROUTE_PIPELINED_SCRIPTS = True


class SyncExecutor:
    """Runs calls on a synchronous redis-py client."""

    def __init__(
        self, client: Any, where: str, retries: int, *, cluster: bool = False
    ) -> None:
        self.client = client
        self.where = where
        self.retries = retries
        self.cluster = cluster
        self._loaded: set[str] = set()

    def _note_load(self, name: str) -> None:
        # The first load of a script is routine; a later one means the server
        # lost its script cache (restart, failover, SCRIPT FLUSH).
        if name in self._loaded:
            log.info("reloading script %s after NOSCRIPT", name)
        else:
            log.debug("loading script %s", name)
            self._loaded.add(name)

    def run(self, call: Call) -> Any:
        """Send one call, retrying an idempotent one after connection errors."""
        try:
            return self._send(call)
        except TRANSLATED as exc:
            error = translate_error(exc, self.where)
            if not may_resend(error, [call]):
                raise error from exc
        return (self._retry([call], error, single=True))[0]

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Send calls in one pipeline (not a transaction); raise the first error.

        When the whole pipeline fails on a connection error, it is sent again
        only when every call in it is idempotent. When some of its calls fail
        (on a cluster, one node or one migrating slot), only those are sent
        again, each alone, when that one may be: the others have run.
        """
        replies = self.run_each(calls)
        for i, reply in enumerate(replies):
            if isinstance(reply, RedisUnavailableError) and may_resend(
                reply, [calls[i]]
            ):
                replies[i] = (self._retry([calls[i]], reply, single=True))[0]
        raise_first_error(replies)
        return replies

    def run_on_primaries(self, calls: Sequence[Call]) -> dict[str, list[Any]]:
        """Replies to each plain command from every primary of a cluster, or
        from the one server, by ``host:port``: what a server check must read
        on each node."""
        if not self.cluster:
            return {self.where: self.run_many(calls)}
        by_node: dict[str, list[Any]] = {}
        with translate(self.where):
            if not self.client.get_primaries():  # the slot map is read lazily
                self.client.nodes_manager.initialize()
            for node in self.client.get_primaries():
                by_node[node.name] = [
                    self.client.execute_command(*call.args, target_nodes=node)
                    for call in calls
                ]
        return by_node

    def run_each(self, calls: Sequence[Call], *, resend: bool = True) -> list[Any]:
        """Like :meth:`run_many`, but a call that fails comes back as its
        StoreError in place of a reply, and the others' replies stand: the
        batches one claim leased must reach the caller even when another
        shard's claim in the same round trip was refused."""
        if not calls:
            return []
        try:
            replies = self._send_many(calls, raise_errors=False)
        except TRANSLATED as exc:
            # The whole pipeline failed, though on a cluster some nodes may
            # have run their part: ``resend=False`` keeps it from running twice.
            error = translate_error(exc, self.where)
            if not (resend and may_resend(error, calls)):
                raise error from exc
            return self._retry(calls, error, single=False)
        return [
            translate_error(r, self.where) if isinstance(r, TRANSLATED) else r
            for r in replies
        ]

    def _retry(
        self, calls: Sequence[Call], error: RedisUnavailableError, *, single: bool
    ) -> list[Any]:
        """Send again, up to ``retries`` times, after ``error`` on the first try.

        A request the cluster refused, or one a slot migration stood in the
        way of, gets at least REFUSED_RETRIES tries, about 7 s in all: a
        migration takes that long. The error raised in the end says whether
        the request may have run: it may, when any try's outcome is unknown.
        """
        long = (error.refused or error.migrating) and all(c.patient for c in calls)
        tries = max(self.retries, REFUSED_RETRIES) if long else self.retries
        unknown = not error.refused
        for delay in retry_delays(tries):
            if long:
                log.info("%s; trying again in %.2fs", error, delay)
            else:
                log.warning("%s; retrying in %.2fs", error, delay)
            time.sleep(delay)
            self._drop_idle_connections()
            try:
                with translate(self.where):
                    if single:
                        return [self._send(calls[0])]
                    return self._send_many(calls)
            except RedisUnavailableError as exc:
                if exc.refused and unknown:
                    exc = RedisUnavailableError(
                        f"{exc}; an earlier try may have run",
                        where=exc.where,
                        migrating=exc.migrating,
                    )
                if not may_resend(exc, calls):
                    raise exc from None
                unknown = unknown or not exc.refused
                error = exc
        raise error

    def _drop_idle_connections(self) -> None:
        """After a connection error, the pool's idle connections are suspect
        too (a restarted server closed them all): reconnect instead of
        spending the retries on them one by one. On a cluster, read the slot
        map again instead: a primary may have been replaced."""
        if self.cluster:
            try:
                self.client.nodes_manager.initialize()
            except Exception as exc:  # no node answers yet: the retry will tell
                log.debug("could not read the cluster's slot map: %s", exc)
            return
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            try:
                pool.disconnect(inuse_connections=False)
            except Exception as exc:
                log.debug("could not drop idle connections: %s", exc)

    def _send(self, call: Call) -> Any:
        if call.script is None:
            return self.client.execute_command(*call.args)
        script = call.script
        try:
            return self.client.evalsha(
                script.sha, len(call.keys), *call.keys, *call.args
            )
        except redis.exceptions.NoScriptError:
            self._note_load(script.name)
            self.client.script_load(script.source)
            return self.client.evalsha(
                script.sha, len(call.keys), *call.keys, *call.args
            )

    def _send_many(
        self, calls: Sequence[Call], *, raise_errors: bool = True
    ) -> list[Any]:
        replies = self._pipeline(calls)
        missing = [
            i
            for i, reply in enumerate(replies)
            if isinstance(reply, redis.exceptions.NoScriptError)
        ]
        if missing:
            scripts = {s.name: s for i in missing if (s := calls[i].script) is not None}
            for script in scripts.values():
                self._note_load(script.name)
                self.client.script_load(script.source)
            again = self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, again):
                replies[i] = reply
        if self.cluster:
            # Not run on the node the pipeline reached: send each again alone,
            # which follows MOVED and ASK (and waits out TRYAGAIN) safely.
            for i, reply in enumerate(replies):
                if isinstance(reply, _REDIRECTED):
                    try:
                        replies[i] = self._send(calls[i])
                    except TRANSLATED as exc:
                        replies[i] = exc
        if raise_errors:
            raise_first_error(replies)
        return replies

    def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            if call.script is None:
                pipe.execute_command(*call.args)
            else:
                # Through execute_command: redis-py's cluster pipeline refuses
                # its evalsha() method, but routes an EVALSHA command by key.
                pipe.execute_command(
                    "EVALSHA",
                    call.script.sha,
                    len(call.keys),
                    *call.keys,
                    *call.args,
                    **self._route(call),
                )
        if not self.cluster:
            return list(pipe.execute(raise_on_error=False))
        # redis-py would send a call that met a connection error again on its
        # own, even one that may have run; rapidfire decides (see run_many).
        return list(execute_without_resends(pipe))

    def _route(self, call: Call) -> dict[str, Any]:
        if not (self.cluster and ROUTE_PIPELINED_SCRIPTS and call.keys):
            return {}
        slot = key_slot(_bytes(call.keys[0]))
        return {"target_nodes": self.client.nodes_manager.get_node_from_slot(slot)}


def _bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()
