"""The push format end to end through rapidfire's own batcher (memory://)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rapidfire import Batcher, BatchPolicy, RedisConfig
from rapidfire.transports import InboundMessage, WhatsAppWebhook

from ._payloads import APP_SECRET, change, encode, entry, envelope, sign, text


@pytest.fixture
def batcher() -> Iterator[Batcher]:
    batcher = Batcher(RedisConfig.from_url("memory://"), BatchPolicy())
    try:
        yield batcher
    finally:
        batcher.close()


def test_a_redelivered_post_becomes_one_batch(batcher: Batcher) -> None:
    webhook = WhatsAppWebhook(app_secret=APP_SECRET)
    items = [text("first é \\/", msg_id="wamid.1"), text("second", msg_id="wamid.2")]
    body = encode(envelope(entry(change(messages=items))))

    first = webhook.parse(body, sign(body))
    batcher.push_many([m.to_push() for m in first.messages])
    again = webhook.parse(body, sign(body))  # Meta redelivers the same POST
    receipts = batcher.push_many([m.to_push() for m in again.messages])
    batcher.flush(first.messages[0].conversation)
    (claimed,) = batcher.claim()
    rebuilt = [InboundMessage.from_push(m) for m in claimed.messages]

    assert [r.duplicate for r in receipts] == [True, True]
    assert rebuilt == list(first.messages)
    assert rebuilt[0].text == "first é \\/"
    assert rebuilt[-1].reply_to.to == "+15550000001"
