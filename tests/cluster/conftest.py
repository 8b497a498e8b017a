"""Tests against a real Redis Cluster, given by ``RAPIDFIRE_TEST_CLUSTER_URL``.

``.ci/run`` starts a 3-primary cluster on loopback ports of its own (with
``tests/redis_cluster.py``) and exports its URL; without it these tests skip, and
under ``CI=true`` they fail. Each test uses a namespace of its own and deletes
exactly that namespace's keys on every primary afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from rapidfire import RedisConfig
from tests.conftest import IN_CI, unique_namespace

CLUSTER_URL = os.environ.get("RAPIDFIRE_TEST_CLUSTER_URL", "")


def cluster_url() -> str:
    if not CLUSTER_URL:
        if IN_CI:
            pytest.fail("RAPIDFIRE_TEST_CLUSTER_URL must be set under CI=true")
        pytest.skip(
            "no Redis Cluster: run `python3 tests/redis_cluster.py start DIR` and set"
            " RAPIDFIRE_TEST_CLUSTER_URL to the URL it prints"
        )
    return CLUSTER_URL


def primaries(config: RedisConfig) -> list[redis.Redis]:
    """A plain client for each primary of the cluster (close them after)."""
    client = config.client()
    assert isinstance(client, RedisCluster)
    try:
        return [redis.Redis(n.host, n.port) for n in client.get_primaries()]
    finally:
        client.close()


def namespace_keys_per_node(config: RedisConfig) -> dict[str, list[bytes]]:
    """The namespace's keys on each primary, by ``host:port``."""
    out = {}
    for node in primaries(config):
        kwargs = node.connection_pool.connection_kwargs
        name = f"{kwargs['host']}:{kwargs['port']}"
        out[name] = list(node.scan_iter(match=f"{config.namespace}:*", count=1000))
        node.close()
    return out


def delete_cluster_namespace(config: RedisConfig) -> None:
    for node in primaries(config):
        keys = list(node.scan_iter(match=f"{config.namespace}:*", count=1000))
        for key in keys:  # one slot per DEL: keys of several slots may not mix
            node.delete(key)
        node.close()


@pytest.fixture
def cluster_config() -> Iterator[RedisConfig]:
    config = RedisConfig.from_url(
        cluster_url(), namespace=unique_namespace("c"), cluster=True
    )
    yield config
    delete_cluster_namespace(config)
