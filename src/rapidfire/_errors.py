"""The exceptions rapidfire raises.

Every exception derives from :class:`RapidfireError`, so one ``except`` clause
catches them all::

    RapidfireError
    ├── ConfigurationError (also ValueError)   a setting is wrong or missing
    │   └── LayoutMismatchError                 a namespace uses another key layout
    ├── InvalidArgumentError (also ValueError)  a call got a bad argument
    │   └── ArgumentTypeError (also TypeError)  ... of the wrong type, or unencodable
    ├── LeaseLostError                          the caller no longer holds a batch
    └── StoreError                              Redis failed the request
        ├── RedisUnavailableError               Redis cannot be reached in time
        ├── RedisAuthenticationError            Redis refused the credentials
        └── RedisCommandError                   Redis answered with an error

redis-py's exceptions never escape rapidfire's API: :func:`translate` maps them
at the boundary. rapidfire does not reuse the builtin names ``ConnectionError``
or ``TimeoutError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

__all__ = [
    "ArgumentTypeError",
    "ConfigurationError",
    "InvalidArgumentError",
    "LayoutMismatchError",
    "LeaseLostError",
    "RapidfireError",
    "RedisAuthenticationError",
    "RedisCommandError",
    "RedisUnavailableError",
    "StoreError",
    "translate",
    "translate_error",
]


class RapidfireError(Exception):
    """The root of every exception rapidfire raises."""


class ConfigurationError(RapidfireError, ValueError):
    """A setting of :class:`RedisConfig` or :class:`BatchPolicy` is wrong."""


class LayoutMismatchError(ConfigurationError):
    """The namespace was created with another key layout (for example, shards)."""


class InvalidArgumentError(RapidfireError, ValueError):
    """A call got an argument it cannot accept; nothing was stored."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type, or a message the codec cannot encode."""


class LeaseLostError(RapidfireError):
    """The caller's lease on a batch ran out, or another worker holds it now."""


class StoreError(RapidfireError):
    """Redis failed a request. ``where`` names the server (never a password)."""

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.where = where


class RedisUnavailableError(StoreError):
    """Redis could not be reached, or did not answer within the timeout.

    ``refused`` is true when Redis said it did not run the request (a cluster
    slot in migration, a cluster without a primary for the slot): such a
    request is safe to send again even when it is not idempotent.
    ``migrating`` is true when a cluster slot migration stood in the way,
    which passes in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str = "",
        refused: bool = False,
        migrating: bool = False,
    ):
        super().__init__(message, where=where)
        self.refused = refused
        self.migrating = migrating


class RedisAuthenticationError(StoreError):
    """Redis refused the username or password."""


class RedisCommandError(StoreError):
    """Redis answered a command with an error (out of memory, read-only, ...)."""


TRANSLATED = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
)
"""The exceptions :func:`translate_error` maps."""

# Redis Cluster's answers for a request it did not run: the slot is being
# migrated (TRYAGAIN), has no reachable primary (CLUSTERDOWN, MASTERDOWN), or
# redirections did not settle (redis-py's "TTL exhausted").
_REFUSED = (
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
)
# A script that reached, mid-way, a key a slot migration had just moved: it
# may have written part of its work, so it counts as an outcome unknown.
_MOVED_UNDER_SCRIPT = "non local key"


def translate_error(exc: BaseException, where: str) -> StoreError:
    """rapidfire's exception for a redis-py (or socket) exception."""
    text = str(exc)
    if isinstance(exc, _REFUSED) or (
        isinstance(exc, redis.exceptions.ClusterError) and "TTL exhausted" in text
    ):
        return RedisUnavailableError(
            f"Redis Cluster at {where} did not run the request: {exc}",
            where=where,
            refused=True,
            migrating=isinstance(exc, redis.exceptions.TryAgainError),
        )
    if isinstance(exc, redis.exceptions.ResponseError) and _MOVED_UNDER_SCRIPT in text:
        return RedisUnavailableError(
            f"Redis Cluster at {where} is migrating a slot (the request may have"
            f" run in part): {exc}",
            where=where,
            migrating=True,
        )
    if isinstance(exc, redis.exceptions.AskError):  # MOVED too: a subclass
        # Only a client that does not follow redirections sees one.
        return RedisCommandError(
            f"Redis at {where} is a node of a Redis Cluster (it answered"
            f" {type(exc).__name__.removesuffix('Error').upper()}), but cluster=False"
            " is configured: set RAPIDFIRE_REDIS_CLUSTER=1 (or leave it unset to"
            " ask the server)",
            where=where,
        )
    if isinstance(exc, redis.exceptions.RedisClusterException):
        if "not enabled" in text:
            return RedisCommandError(
                f"Redis at {where} is not a cluster, but cluster=True is"
                f" configured: {exc}",
                where=where,
            )
        return RedisUnavailableError(
            f"Redis Cluster at {where} is unreachable: {exc}", where=where
        )
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return RedisAuthenticationError(
            f"Redis at {where} refused the credentials: {exc}", where=where
        )
    full = getattr(redis.exceptions, "MaxConnectionsError", None)
    if full is not None and isinstance(exc, full):
        return RedisUnavailableError(
            f"the connection pool for Redis at {where} is full ({exc}): raise"
            " max_connections, or leave it unset",
            where=where,
        )
    if isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
    ):
        return RedisUnavailableError(
            f"Redis at {where} is unreachable: {exc}", where=where
        )
    return RedisCommandError(f"Redis at {where} failed: {exc}", where=where)


@contextmanager
def translate(where: str) -> Iterator[None]:
    """Re-raise redis-py exceptions as rapidfire's, naming ``where`` (host:port)."""
    try:
        yield
    except TRANSLATED as exc:
        raise translate_error(exc, where) from exc
