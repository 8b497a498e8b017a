"""The Baileys bridge sender, against a fake bridge on 127.0.0.1."""

from __future__ import annotations

import anyio
import pytest

from rapidfire.transports import (
    AsyncBaileysSender,
    BaileysSender,
    InvalidAddressError,
    ReplyAddress,
    RetryPolicy,
    SendError,
    TransportConfigError,
)
from rapidfire.transports._signing import check_bridge_signature

from ._fakes import FakeClock, FakeServer, Reply
from ._payloads import BRIDGE_SECRET, NUMBER_ID, PHONE_A

CHAT = ReplyAddress("baileys", jid=f"{PHONE_A}@s.whatsapp.net")
WALL = 1760000000.0


def make_sender(server: FakeServer, clock: FakeClock) -> BaileysSender:
    return BaileysSender(
        url=f"{server.url}/send",
        secret=BRIDGE_SECRET,
        timeout=5,
        retry=RetryPolicy(max_attempts=3),
        sleep=clock.sleep,
        clock=clock,
        wall_clock=lambda: WALL,
        random=lambda: 0.0,
    )


def test_reply_is_posted_as_signed_jid_and_text(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(200, {"id": "3EB0SENT"}))

    ids = make_sender(fake_server, clock).send_text(CHAT, "héllo / there")

    (request,) = fake_server.requests
    assert ids == ["3EB0SENT"]
    assert request.path == "/send"
    assert request.json() == {
        "jid": f"{PHONE_A}@s.whatsapp.net",
        "text": "héllo / there",
    }
    assert request.headers["x-rapidfire-timestamp"] == "1760000000"
    check_bridge_signature(
        BRIDGE_SECRET,
        request.body,
        timestamp=request.headers["x-rapidfire-timestamp"],
        signature=request.headers["x-rapidfire-signature"],
        now=WALL,
        tolerance=300,
    )


def test_account_is_forwarded_and_ids_list_is_read(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(200, {"ids": ["A", "B", 3]}))
    address = ReplyAddress("baileys", jid=CHAT.jid, account="shop-1")

    ids = make_sender(fake_server, clock).send_text(address, "hi")

    assert ids == ["A", "B"]
    assert fake_server.requests[0].json()["account"] == "shop-1"


def test_5xx_is_retried_and_4xx_is_not(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(502, None), Reply(200, {"id": "OK"}), Reply(400, None))
    sender = make_sender(fake_server, clock)

    assert sender.send_text(CHAT, "first") == ["OK"]
    with pytest.raises(SendError) as caught:
        sender.send_text(CHAT, "second")

    assert (caught.value.http_status, caught.value.retryable) == (400, False)
    assert len(fake_server.requests) == 3
    assert clock.sleeps == [1.0]


def test_async_bridge_sender(fake_server: FakeServer, clock: FakeClock) -> None:
    fake_server.script(Reply(200, {"id": "ASYNC1"}))
    sender = AsyncBaileysSender(make_sender(fake_server, clock))

    async def main() -> list[str]:
        return await sender.send_text(CHAT, "hi")

    assert anyio.run(main) == ["ASYNC1"]


def test_wrong_address_and_settings_are_refused() -> None:
    sender = BaileysSender(url="http://127.0.0.1:9/send", secret=BRIDGE_SECRET)

    with pytest.raises(InvalidAddressError):
        sender.send_text(
            ReplyAddress("whatsapp", phone_number_id=NUMBER_ID, to="1"), "x"
        )
    with pytest.raises(TransportConfigError, match="secret"):
        BaileysSender(url="http://127.0.0.1:9/send", secret="")
    with pytest.raises(TransportConfigError, match="url"):
        BaileysSender(url="ftp://127.0.0.1/send", secret=BRIDGE_SECRET)
