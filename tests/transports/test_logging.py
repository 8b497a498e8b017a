"""Nothing personal or secret reaches the logs, at any level."""

from __future__ import annotations

import logging

import pytest

from rapidfire.transports import (
    BaileysWebhook,
    ReplyAddress,
    RetryPolicy,
    SendError,
    WhatsAppSender,
    WhatsAppWebhook,
)

from ._fakes import FakeClock, FakeServer, Reply
from ._payloads import (
    APP_SECRET,
    BRIDGE_SECRET,
    BSUID_A,
    NUMBER_ID,
    OTHER_NUMBER_ID,
    PHONE_A,
    bridge_headers,
    change,
    contact,
    encode,
    entry,
    envelope,
    graph_error,
    sign,
    text,
    upsert,
    wa_message,
)

TOKEN = "test-access-token-SECRET"
BODY_TEXT = "my private message"
SECRETS = (TOKEN, APP_SECRET, BRIDGE_SECRET, BODY_TEXT, PHONE_A, BSUID_A, "Ana Test")


def test_webhooks_and_senders_log_no_personal_data(
    caplog: pytest.LogCaptureFixture, fake_server: FakeServer, clock: FakeClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="rapidfire.transports")
    webhook = WhatsAppWebhook(app_secret=APP_SECRET, phone_number_ids=[NUMBER_ID])
    payload = envelope(
        entry(
            change(messages=[text(BODY_TEXT)], contacts=[contact(wa_id=PHONE_A)]),
            change(messages=[text(BODY_TEXT)], number_id=OTHER_NUMBER_ID),
            change(errors=[{"code": 130429, "title": "Rate limit hit"}]),
            change(messages=[text(BODY_TEXT, msg_id="")]),
        )
    )
    body = encode(payload)
    webhook.handle_post(body, {"X-Hub-Signature-256": sign(body)}, lambda b: None)
    webhook.handle_post(body, {"X-Hub-Signature-256": "sha256=" + "0" * 64}, print)
    bridge = BaileysWebhook(secret=BRIDGE_SECRET)
    event = encode(upsert(wa_message({"conversation": BODY_TEXT})))
    bridge.handle_post(event, bridge_headers(event), lambda b: None)

    fake_server.script(
        Reply(400, graph_error(130429)), Reply(200, {"messages": [{"id": "w1"}]})
    )
    fake_server.script(Reply(400, graph_error(131047)))
    sender = WhatsAppSender(
        access_token=TOKEN,
        api_url=fake_server.url,
        retry=RetryPolicy(max_attempts=2),
        sleep=clock.sleep,
        clock=clock,
    )
    address = ReplyAddress("whatsapp", phone_number_id=NUMBER_ID, to=PHONE_A)
    sender.send_text(address, BODY_TEXT)
    with pytest.raises(SendError):
        sender.send_text(address, BODY_TEXT)
    sender.mark_read(address, "wamid.IN")

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert len(caplog.records) >= 6
    assert any(record.levelno >= logging.WARNING for record in caplog.records)
    for secret in SECRETS:
        assert secret not in logged
