"""Backends for the suite: the embedded server always, a real Redis when
``RAPIDFIRE_TEST_REDIS_URL`` is set (under ``CI=true`` it must be).

Every storage-dependent test takes the ``config`` fixture and so runs once per
backend. Each test gets a namespace of its own and deletes exactly the keys of
that namespace afterwards; nothing here flushes a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from rapidfire import Batcher, BatchPolicy, RedisConfig

TEST_URL = os.environ.get("RAPIDFIRE_TEST_REDIS_URL", "")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["memory", "redis"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    real = TEST_URL if TEST_URL else "not configured (set RAPIDFIRE_TEST_REDIS_URL)"
    cluster = os.environ.get("RAPIDFIRE_TEST_CLUSTER_URL", "") or (
        "not configured (set RAPIDFIRE_TEST_CLUSTER_URL)"
    )
    return [
        "rapidfire backends: memory:// (embedded fakeredis + lupa)",
        f"rapidfire backends: real Redis: {_redact(real)}",
        f"rapidfire backends: Redis Cluster: {_redact(cluster)}",
    ]


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not TEST_URL:
        raise pytest.UsageError(
            "CI=true but RAPIDFIRE_TEST_REDIS_URL is not set: the suite must run"
            " against a real Redis in CI"
        )


def unique_namespace(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def real_redis_url() -> str:
    """The real server's URL, or skip (fail under CI) when there is none."""
    if not TEST_URL:
        if IN_CI:
            pytest.fail("RAPIDFIRE_TEST_REDIS_URL must be set under CI=true")
        pytest.skip("no real Redis: set RAPIDFIRE_TEST_REDIS_URL to run this test")
    return TEST_URL


def delete_namespace(config: RedisConfig) -> None:
    """Delete the keys of one namespace (test clean-up only: this SCANs)."""
    client = config.client()
    try:
        pattern = f"{config.namespace}:*"
        batch = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def _backend_url(backend: str) -> str:
    if backend == "memory":
        return f"memory://{uuid.uuid4().hex[:8]}"
    return real_redis_url()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "redis":
        real_redis_url()
    return name


@pytest.fixture
def config(backend: str) -> Iterator[RedisConfig]:
    cfg = RedisConfig.from_url(_backend_url(backend), namespace=unique_namespace())
    yield cfg
    delete_namespace(cfg)


@pytest.fixture
def real_config() -> Iterator[RedisConfig]:
    cfg = RedisConfig.from_url(real_redis_url(), namespace=unique_namespace())
    yield cfg
    delete_namespace(cfg)


FAST = {
    "debounce": 0.1,
    "max_wait": 0.4,
    "max_size": 5,
    "lease": 0.5,
    "max_attempts": 3,
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.2,
}


class FakeClock:
    """A clock the test moves by hand; every script reads it instead of TIME."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_batcher(config: RedisConfig) -> Iterator[Callable[..., Batcher]]:
    """Build Batchers on the test's config; ``policy`` keywords override FAST."""
    made: list[Batcher] = []

    def factory(clock: Any = None, **policy: Any) -> Batcher:
        batcher = Batcher(config, BatchPolicy(**{**FAST, **policy}), clock=clock)
        made.append(batcher)
        return batcher

    yield factory
    for batcher in made:
        batcher.close()


def raw_client(config: RedisConfig) -> redis.Redis:
    """A plain client on the test's server, for looking at keys directly."""
    return config.client()
