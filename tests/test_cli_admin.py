"""rapidfire stats, inspect, flush and dead list|show|requeue|purge on real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rapidfire import Batcher, BatchPolicy, RedisConfig

from .servers import own_redis

RAPIDFIRE = [sys.executable, "-m", "rapidfire.cli"]
POLICY = BatchPolicy(
    debounce=5, max_wait=10, max_attempts=1, retry_backoff=0.01, retry_backoff_max=0.1
)


def run(config: RedisConfig, *args: str, stdin: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDFIRE_")}
    env["RAPIDFIRE_REDIS_URL"] = os.environ["RAPIDFIRE_TEST_REDIS_URL"]
    env["RAPIDFIRE_NAMESPACE"] = config.namespace
    return subprocess.run(
        [*RAPIDFIRE, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_dead_letter(batcher: Batcher, conversation: str) -> str:
    batcher.push(conversation, {"text": "will fail"})
    batcher.flush(conversation)
    (batch,) = batcher.claim()
    assert batcher.nack(batch, error="ValueError: no brain") == "dead"
    return batch.id


def test_inspect_and_flush(real_config: RedisConfig):
    batcher = Batcher(real_config, POLICY)
    batcher.push("15550000001", "a")
    batcher.push("15550000001", "b")

    inspected = json.loads(run(real_config, "inspect", "15550000001", "--json").stdout)
    flushed = run(real_config, "flush", "15550000001")
    (batch,) = batcher.claim()
    again = run(real_config, "flush", "15550000001")
    batcher.close()

    assert inspected["stored_messages"] == 2
    assert inspected["batches"][0]["open"] is True
    assert flushed.returncode == 0
    assert "flushed a batch of 2 message(s)" in flushed.stdout
    assert batch.reason.value == "flush"
    assert "no open batch" in again.stdout


def test_dead_letters_listed_shown_requeued_and_handled(real_config: RedisConfig):
    batcher = Batcher(real_config, POLICY)
    dead_id = make_dead_letter(batcher, "15550000002")

    listed = json.loads(run(real_config, "dead", "list", "--json").stdout)
    shown = json.loads(run(real_config, "dead", "show", dead_id).stdout)
    requeued = run(real_config, "dead", "requeue", dead_id)
    (batch,) = batcher.claim()
    acked = batcher.ack(batch)
    after = json.loads(run(real_config, "dead", "list", "--json").stdout)
    batcher.close()

    assert [d["id"] for d in listed] == [dead_id]
    assert listed[0]["error"] == "ValueError: no brain"
    assert shown["messages"] == [{"text": "will fail"}]
    assert requeued.returncode == 0
    assert "requeued 1 message(s)" in requeued.stdout
    assert (batch.id, batch.reason.value, batch.attempt) == (dead_id, "requeued", 1)
    assert acked is True
    assert after == []


def test_purge_asks_first(real_config: RedisConfig):
    batcher = Batcher(real_config, POLICY)
    dead_id = make_dead_letter(batcher, "15550000003")

    refused = run(real_config, "dead", "purge", dead_id, stdin="")
    still = batcher.dead_letter(dead_id)
    purged = run(real_config, "dead", "purge", dead_id, "--yes")
    gone = batcher.dead_letter(dead_id)
    missing = run(real_config, "dead", "show", "1-0-999")
    batcher.close()

    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert still is not None
    assert purged.returncode == 0
    assert gone is None
    assert missing.returncode == 1


def test_doctor_reports_an_evicting_server(tmp_path: Path):
    with own_redis(tmp_path, "--maxmemory-policy", "volatile-lru") as port:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDFIRE_")}
        env["RAPIDFIRE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env["RAPIDFIRE_NAMESPACE"] = "evict"
        done = subprocess.run(
            [*RAPIDFIRE, "doctor", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    report = json.loads(done.stdout)
    errors = {
        f["check"]: f["message"] for f in report["findings"] if f["level"] == "error"
    }

    assert done.returncode == 1
    assert "volatile-lru" in errors["eviction"]
    assert report["healthy"] is False
