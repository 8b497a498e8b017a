"""Redis settings that put waiting work at risk: eviction and persistence."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from rapidfire import Batcher, RedisConfig

from ..conftest import unique_namespace
from .conftest import RedisServer

pytestmark = pytest.mark.timeout(60)

ALICE = "15550000001"
StartServer = Callable[..., RedisServer]


def config_for(server: RedisServer) -> RedisConfig:
    return RedisConfig.from_url(server.url, namespace=unique_namespace("settings"))


def warnings_about(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "rapidfire.batcher"
        and record.levelno == logging.WARNING
        and words in record.getMessage()
    ]


def test_an_evicting_server_is_warned_about_once_per_process_and_reported(
    redis_server: StartServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="rapidfire.batcher")
    server = redis_server("--maxmemory-policy", "volatile-lru")
    config = config_for(server)
    producer, worker = Batcher(config), Batcher(config.with_namespace("other"))
    producer.push(ALICE, "hi")
    worker.claim()
    producer.close()
    producer.push(ALICE, "after a reconnect")
    risks = producer.check_server()
    producer.close()
    worker.close()
    warned = warnings_about(caplog, "maxmemory-policy")

    assert len(warned) == 1
    assert f"Redis at {server.where} has maxmemory-policy volatile-lru" in warned[0]
    assert "noeviction" in warned[0]
    assert [r.split(": ")[0] for r in risks] == [
        f"Redis at {server.where} has maxmemory-policy volatile-lru",
        f"Redis at {server.where} has persistence off (appendonly no, no save points)",
    ]


@pytest.mark.parametrize(
    ("settings", "reported"),
    [
        (("--maxmemory-policy", "allkeys-lru", "--appendonly", "yes"), ["eviction"]),
        ((), ["persistence"]),
        (("--maxmemory-policy", "volatile-ttl"), ["eviction", "persistence"]),
        (("--save", "3600 1"), []),
        (("--maxmemory-policy", "noeviction", "--appendonly", "yes"), []),
    ],
    ids=["allkeys-lru+aof", "nothing-kept", "volatile-ttl", "rdb", "noeviction+aof"],
)
def test_check_server_names_each_risk_and_a_safe_server_gets_no_warning(
    redis_server: StartServer,
    caplog: pytest.LogCaptureFixture,
    settings: tuple[str, ...],
    reported: list[str],
):
    caplog.set_level(logging.WARNING, logger="rapidfire.batcher")
    server = redis_server(*settings)
    batcher = Batcher(config_for(server))
    batcher.push(ALICE, "hi")
    risks = batcher.check_server()
    batcher.close()
    kinds = [
        "eviction" if "maxmemory-policy" in risk else "persistence" for risk in risks
    ]
    logged = warnings_about(caplog, f"Redis at {server.where} has")

    assert kinds == reported
    assert logged == risks
    assert all("persistence off" in r for r in risks if "maxmemory" not in r)


def test_a_server_that_hides_its_settings_is_not_reported_safe(
    redis_server: StartServer,
):
    server = redis_server(
        "--maxmemory-policy", "volatile-lru", "--rename-command", "CONFIG", ""
    )
    batcher = Batcher(config_for(server))
    batcher.push(ALICE, "hi")
    risks = batcher.check_server()
    batcher.close()

    assert len(risks) == 1
    assert f"Redis at {server.where}" in risks[0]
