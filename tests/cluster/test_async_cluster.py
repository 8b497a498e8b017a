"""AsyncBatcher on a real Redis Cluster."""

from __future__ import annotations

import functools
import time

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster

from rapidfire import AsyncBatcher, Batch, BatchPolicy, RedisConfig

from .conftest import namespace_keys_per_node, primaries

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_async_batches_over_every_primary(cluster_config: RedisConfig):
    policy = BatchPolicy(debounce=0.2, max_wait=2.0, lease=10.0)
    conversations = [f"4477004{i:05d}" for i in range(30)]
    handled: dict[str, tuple[object, ...]] = {}
    done = anyio.Event()

    async def handle(batch: Batch) -> None:
        await anyio.sleep(0)
        handled[batch.conversation] = batch.messages
        if len(handled) == len(conversations):
            done.set()

    async with (
        AsyncBatcher(cluster_config, policy) as worker,
        AsyncBatcher(cluster_config, policy) as producer,
    ):
        client = producer.config.async_client()
        assert isinstance(client, RedisCluster)
        await client.aclose()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                functools.partial(worker.drain, handle, concurrency=4, stop=done)
            )
            await anyio.sleep(0.5)  # idle: the worker waits for a wake
            started = time.monotonic()
            receipts = await producer.push_many(
                [(c, n, f"wamid.{c}.{n}") for c in conversations for n in (1, 2)]
            )
            per_node = namespace_keys_per_node(cluster_config)
            with anyio.fail_after(10):
                await done.wait()
            took = time.monotonic() - started
        stats = await producer.stats()

    assert len(receipts) == 60
    assert not any(r.duplicate for r in receipts)
    assert all(len(keys) > 0 for keys in per_node.values())
    assert handled == dict.fromkeys(conversations, (1, 2))
    assert took < 5.0  # woken by the pushes, not by the 30 s resync
    assert (stats.pending, stats.stored_messages, stats.acked) == (0, 0, 30)


async def test_every_primary_s_settings_are_checked(cluster_config: RedisConfig):
    """A first call of a process checks the server: on a cluster, each node."""
    nodes = primaries(cluster_config)
    last = nodes[-1]
    kwargs = last.connection_pool.connection_kwargs
    name = f"{kwargs['host']}:{kwargs['port']}"
    last.config_set("maxmemory-policy", "allkeys-lru")
    try:
        async with AsyncBatcher(cluster_config) as batcher:
            receipt = await batcher.push("447700900555", "hi")
            risks = await batcher.check_server()
    finally:
        last.config_set("maxmemory-policy", "noeviction")
        for node in nodes:
            node.close()

    assert receipt.size == 1
    evicting = [r for r in risks if "maxmemory-policy allkeys-lru" in r]
    assert len(evicting) == 1
    assert evicting[0].startswith(f"Redis at {name} ")
