"""Nothing secret or personal reaches the logs.

A full run (pushes, a worker whose handler fails and succeeds, dead letters,
stats, the doctor) against a server with a password, with every log record
captured at DEBUG: the password appears nowhere, and no message body or full
phone number appears at INFO or above.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rapidfire import Batcher, BatchPolicy, RedisConfig
from rapidfire._doctor import diagnose

from .servers import own_redis

PASSWORD = "s3cret-Pa55word"
PHONES = ["447700900123", "5511987654321", "79686484488"]
BODY = "my card number is 4111 1111 1111 1111"


def test_logs_hold_no_password_body_or_full_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with own_redis(tmp_path, "--requirepass", PASSWORD) as port:
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        config = RedisConfig.from_url(url, namespace="privacy")
        policy = BatchPolicy(
            debounce=0.05,
            max_wait=0.2,
            lease=1,
            max_attempts=2,
            retry_backoff=0.01,
            retry_backoff_max=0.05,
        )
        calls = 0

        def handler(batch):
            nonlocal calls
            calls += 1
            if batch.conversation == PHONES[0]:
                raise RuntimeError(f"could not answer {batch.messages[0]['text']!r}")

        with caplog.at_level(logging.DEBUG, logger="rapidfire"):
            batcher = Batcher(config, policy)
            for phone in PHONES:
                batcher.push(phone, {"text": BODY}, dedupe_id=f"wamid.{phone}")
                batcher.push(phone, {"text": BODY}, dedupe_id=f"wamid.{phone}")
            report = batcher.drain(handler, until_idle=True)
            dead = batcher.dead_letters()
            stats = batcher.stats()
            batcher.close()
            diagnosis = diagnose(config)
            wrong = RedisConfig.from_url(
                f"redis://:{PASSWORD}x@127.0.0.1:{port}/0", namespace="privacy"
            )
            bad = diagnose(wrong)

    everything = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
    )
    loud = "\n".join(
        r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
    )

    assert report.handled == 2
    assert report.dead_lettered == 1
    assert [d.conversation for d in dead] == [PHONES[0]]
    assert stats.stored_messages == 0
    assert calls >= 4
    assert PASSWORD not in everything
    assert PASSWORD not in repr(config) + config.describe() + diagnosis.render()
    assert PASSWORD not in bad.render()
    assert not bad.healthy
    assert "…0123" in loud  # conversations are named, masked
    for phone in PHONES:
        assert phone not in loud
    assert BODY not in loud
    assert "4111" not in loud
