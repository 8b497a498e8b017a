"""The rapidfire command: demo, worker and stats, as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rapidfire import Batcher, BatchPolicy, RedisConfig

RAPIDFIRE = [sys.executable, "-m", "rapidfire.cli"]


def env_for(config: RedisConfig | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDFIRE_")}
    env.pop("REDIS_URL", None)
    if config is not None:
        env["RAPIDFIRE_REDIS_URL"] = os.environ["RAPIDFIRE_TEST_REDIS_URL"]
        env["RAPIDFIRE_NAMESPACE"] = config.namespace
    env.update(extra)
    return env


def test_demo_answers_every_message_on_the_embedded_server():
    done = subprocess.run(
        [*RAPIDFIRE, "demo"],
        env=env_for(None),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "embedded in-process server" in done.stdout
    assert "15 messages pushed, 15 answered" in done.stdout
    assert "0 lost" in done.stdout
    assert done.stdout.count("batch for ") >= 4


def test_worker_refuses_to_run_without_a_redis_url():
    done = subprocess.run(
        [*RAPIDFIRE, "worker", "json:dumps"],
        env=env_for(None),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert "RAPIDFIRE_REDIS_URL is not set" in done.stderr


HANDLER = """
import json, os, time

def handle(batch):
    time.sleep(float(os.environ.get("SLOW", "0")))
    with open(os.environ["OUT"], "a") as out:
        out.write(json.dumps([batch.conversation, list(batch.messages)]) + "\\n")
"""


def start_worker(
    tmp_path: Path, config: RedisConfig, **extra: str
) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLER))
    out = tmp_path / "handled.jsonl"
    env = env_for(
        config,
        OUT=str(out),
        PYTHONPATH=str(tmp_path),
        RAPIDFIRE_DEBOUNCE="0.1",
        RAPIDFIRE_MAX_WAIT="1",
        **extra,
    )
    process = subprocess.Popen(
        [*RAPIDFIRE, "worker", "handlers:handle"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, out


def wait_for_lines(path: Path, count: int, timeout: float = 15.0) -> list[list[object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"handler wrote fewer than {count} lines in {timeout}s")


def test_worker_handles_batches_and_stops_cleanly_on_sigterm(
    real_config: RedisConfig, tmp_path: Path
):
    process, out = start_worker(tmp_path, real_config)
    try:
        batcher = Batcher(real_config, BatchPolicy(debounce=0.1, max_wait=1))
        batcher.push("15550000001", "a")
        batcher.push("15550000001", "b")
        batcher.push("15550000002", "c")
        handled = wait_for_lines(out, 2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        stats = batcher.stats()
        batcher.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, output
    assert sorted(map(tuple, [(c, tuple(m)) for c, m in handled])) == [
        ("15550000001", ("a", "b")),
        ("15550000002", ("c",)),
    ]
    assert stats.stored_messages == 0
    assert real_config.describe() in output
    assert "SIGTERM" in output


def test_sigterm_lets_the_batch_in_hand_finish(
    real_config: RedisConfig, tmp_path: Path
):
    process, out = start_worker(tmp_path, real_config, SLOW="1.5")
    try:
        batcher = Batcher(real_config, BatchPolicy(debounce=0.1, max_wait=1))
        batcher.push("15550000003", "slow one")
        deadline = time.monotonic() + 15
        while batcher.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        handled = wait_for_lines(out, 1, timeout=1)
        stats = batcher.stats()
        batcher.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, output
    assert handled == [["15550000003", ["slow one"]]]
    assert (stats.stored_messages, stats.in_flight, stats.acked) == (0, 0, 1)


@pytest.mark.usefixtures("real_config")
def test_stats_prints_json(real_config: RedisConfig):
    batcher = Batcher(real_config)
    batcher.push("15550000004", "x")
    batcher.close()

    done = subprocess.run(
        [*RAPIDFIRE, "stats", "--json"],
        env=env_for(real_config),
        capture_output=True,
        text=True,
        timeout=30,
    )
    data = json.loads(done.stdout)

    assert done.returncode == 0
    assert data["pending"] == 1
    assert data["stored_messages"] == 1
    assert data["config"] == real_config.describe()
