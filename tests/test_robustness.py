"""What a new user ran into: each case must now fail loudly or work."""

from __future__ import annotations

import json
import logging

import pytest

from rapidfire import (
    ArgumentTypeError,
    Batcher,
    BatchPolicy,
    InvalidArgumentError,
    RedisConfig,
)

from .conftest import FakeClock, raw_client

POLICY = BatchPolicy(
    debounce=0.05,
    max_wait=0.2,
    max_attempts=2,
    retry_backoff=0.01,
    retry_backoff_max=0.02,
)


def test_sync_drain_refuses_an_async_handler(config: RedisConfig):
    async def handler(batch):
        return None

    class Replier:
        async def __call__(self, batch):
            return None

    batcher = Batcher(config, POLICY)

    for candidate in (handler, Replier()):
        with pytest.raises(ArgumentTypeError, match="AsyncBatcher"):
            batcher.drain(candidate, until_idle=True)
    batcher.close()


def test_a_handler_returning_an_awaitable_does_not_ack(config: RedisConfig):
    async def later(batch):
        return None

    batcher = Batcher(config, POLICY)
    batcher.push("15550000001", "keep me")

    report = batcher.drain(lambda batch: later(batch), until_idle=True)
    dead = batcher.dead_letters()
    batcher.close()

    assert report.handled == 0
    assert report.dead_lettered == 1
    assert [d.messages for d in dead] == [("keep me",)]
    assert "awaitable" in dead[0].error


class Picky:
    """A codec whose decode fails on one message."""

    def encode(self, message):
        return json.dumps(message).encode()

    def decode(self, data):
        if data == b'"poison"':
            raise ValueError("cannot read this one")
        return json.loads(data)


def test_an_undecodable_batch_goes_to_the_dead_letters_without_crashing(
    config: RedisConfig, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    batcher = Batcher(config, POLICY, codec=Picky(), clock=clock)
    batcher.push("15550000001", "poison")
    batcher.push("15550000002", "fine")
    clock.advance(1)

    with caplog.at_level(logging.WARNING, logger="rapidfire.batcher"):
        first = batcher.claim()
        clock.advance(1)
        second = batcher.claim()
    dead = batcher.dead_letters()
    batcher.close()

    assert [b.conversation for b in first] == ["15550000002"]
    assert second == []
    assert [d.conversation for d in dead] == ["15550000001"]
    assert dead[0].messages == (b'"poison"',)  # raw bytes: the codec cannot read it
    assert "cannot decode" in dead[0].error
    assert "cannot be decoded" in caplog.text
    assert "15550000001" not in caplog.text


def test_durations_past_the_ttl_are_refused(config: RedisConfig, clock: FakeClock):
    batcher = Batcher(config, POLICY, clock=clock)
    batcher.push("15550000001", "x")
    batcher.flush("15550000001")
    (batch,) = batcher.claim()

    with pytest.raises(InvalidArgumentError, match="delay"):
        batcher.nack(batch, delay=1e11)
    with pytest.raises(InvalidArgumentError, match="seconds"):
        batcher.extend(batch, seconds=1e12)
    with pytest.raises(ValueError, match="lease"):
        BatchPolicy(lease=1e12)

    assert batcher.ack(batch) is True
    batcher.close()


def test_looking_with_a_tool_leaves_no_layout_behind(config: RedisConfig):
    looker = Batcher(config, record_layout=False)

    stats = looker.stats()
    looker.close()
    raw = raw_client(config)
    keys = list(raw.scan_iter(match=f"{config.namespace}:*"))
    raw.close()

    assert stats.pending == 0
    assert keys == []
