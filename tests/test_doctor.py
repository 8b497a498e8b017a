"""rapidfire doctor: healthy, the two-database incident, overdue work, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from rapidfire import Batcher, BatchPolicy, RedisConfig

from .conftest import delete_namespace, real_redis_url, unique_namespace

RAPIDFIRE = [sys.executable, "-m", "rapidfire.cli"]
FAST = BatchPolicy(debounce=0.05, max_wait=0.1)


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


@pytest.fixture
def two_databases() -> Iterator[tuple[RedisConfig, RedisConfig]]:
    """The test server's database and another one, sharing a namespace."""
    url = real_redis_url()
    ours = RedisConfig.from_url(url, namespace=unique_namespace("doctor"))
    # A second database of the test server; nothing else may use it either.
    other_db = int(os.environ.get("RAPIDFIRE_TEST_OTHER_DB", "11"))
    if other_db == ours.db:
        pytest.fail("RAPIDFIRE_TEST_OTHER_DB must differ from the test database")
    other = RedisConfig.from_url(with_db(url, other_db), namespace=ours.namespace)
    yield ours, other
    delete_namespace(ours)
    delete_namespace(other)


def doctor(config: RedisConfig, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDFIRE_")}
    env["RAPIDFIRE_REDIS_URL"] = with_db(real_redis_url(), config.db or 0)
    env["RAPIDFIRE_NAMESPACE"] = config.namespace
    return subprocess.run(
        [*RAPIDFIRE, "doctor", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_healthy_namespace_exits_zero(two_databases):
    ours, _ = two_databases
    batcher = Batcher(ours, FAST)
    batcher.heartbeat("worker")
    batcher.push("15550000001", "hi")
    batcher.close()

    done = doctor(ours)

    assert done.returncode == 0, done.stdout
    assert "1 live worker(s)" in done.stdout
    assert "is in no other database" in done.stdout
    assert done.stdout.rstrip().endswith("healthy")


def test_producer_on_another_database_is_found_and_named(two_databases, caplog):
    ours, other = two_databases
    producer = Batcher(other, FAST)
    with caplog.at_level("WARNING", logger="rapidfire.batcher"):
        producer.push("15550000001", {"text": "hello?"}, dedupe_id="wamid.1")
    producer.close()

    done = doctor(ours)
    as_json = json.loads(doctor(ours, "--json").stdout)

    assert done.returncode == 1
    assert f"is also in db {other.db}" in done.stdout
    assert f"this process is configured for db {ours.db}" in done.stdout
    assert "1 pending batch(es)" in done.stdout
    assert as_json["healthy"] is False
    errors = [f for f in as_json["findings"] if f["level"] == "error"]
    assert [f["check"] for f in errors] == ["databases"]
    assert f"db {other.db}" in errors[0]["message"]
    assert any("no worker was ever seen" in r.getMessage() for r in caplog.records)


def test_overdue_batches_without_a_worker_are_an_error(two_databases):
    ours, _ = two_databases
    batcher = Batcher(ours, FAST)
    batcher.push("15550000001", "anyone?")
    batcher.close()
    time.sleep(0.2)

    done = doctor(ours)

    assert done.returncode == 1
    assert "waiting past their deadline" in done.stdout
    assert "no worker has ever been seen" in done.stdout


def test_the_doctor_writes_nothing(two_databases):
    ours, _ = two_databases
    client = ours.client()

    done = doctor(ours)
    keys = list(client.scan_iter(match=f"{ours.namespace}:*"))
    client.close()

    assert done.returncode == 0
    assert "has never been used" in done.stdout
    assert keys == []


def test_the_producer_warning_is_quiet_when_a_worker_is_alive(two_databases, caplog):
    ours, _ = two_databases
    worker = Batcher(ours, FAST)
    worker.heartbeat("worker")
    producer = Batcher(ours, FAST)

    with caplog.at_level("WARNING", logger="rapidfire.batcher"):
        producer.push("15550000001", "hi")
    worker.close()
    producer.close()

    assert not any("no worker" in r.getMessage() for r in caplog.records)
