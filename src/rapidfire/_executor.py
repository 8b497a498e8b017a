# Generated from _async_executor.py by tools/unasync.py; do not edit.
# Change _async_executor.py, then run `python tools/unasync.py`.
"""Sending calls to Redis: EVALSHA with NOSCRIPT recovery, pipelines, retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.exceptions

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


class SyncExecutor:
    """Runs calls on a synchronous redis-py client."""

    def __init__(self, client: Any, where: str, retries: int) -> None:
        self.client = client
        self.where = where
        self.retries = retries
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

        A batch of calls is retried after a connection error only when every
        call in it is idempotent.
        """
        if not calls:
            return []
        try:
            return self._send_many(calls)
        except TRANSLATED as exc:
            error = translate_error(exc, self.where)
            if not may_resend(error, calls):
                raise error from exc
        return self._retry(calls, error, single=False)

    def _retry(
        self, calls: Sequence[Call], error: RedisUnavailableError, *, single: bool
    ) -> list[Any]:
        """Send again, up to ``retries`` times, after ``error`` on the first try.

        A request the cluster refused (a slot in migration) gets at least
        REFUSED_RETRIES tries, about 7 s in all: a migration takes that long.
        """
        tries = max(self.retries, REFUSED_RETRIES) if error.refused else self.retries
        for delay in retry_delays(tries):
            if error.refused:
                log.info("%s; trying again in %.2fs", error, delay)
            else:
                log.warning(
                    "Redis at %s unreachable; retrying in %.2fs", self.where, delay
                )
            time.sleep(delay)
            self._drop_idle_connections()
            try:
                with translate(self.where):
                    if single:
                        return [self._send(calls[0])]
                    return self._send_many(calls)
            except RedisUnavailableError as exc:
                if not may_resend(exc, calls):
                    raise
                error = exc
        raise error

    def _drop_idle_connections(self) -> None:
        """After a connection error, the pool's idle connections are suspect
        too (a restarted server closed them all): reconnect instead of
        spending the retries on them one by one."""
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

    def _send_many(self, calls: Sequence[Call]) -> list[Any]:
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
                    "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args
                )
        return list(pipe.execute(raise_on_error=False))
