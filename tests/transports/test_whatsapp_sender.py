"""The Cloud API sender, against a fake Graph API on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import pytest

from rapidfire.transports import (
    GRAPH_API_URL,
    AsyncWhatsAppSender,
    HttpRequest,
    HttpResponse,
    InvalidAddressError,
    ReplyAddress,
    RetryPolicy,
    SendError,
    TransportConfigError,
    WhatsAppSender,
)

from ._fakes import FakeClock, FakeServer, Reply
from ._payloads import BSUID_A, NUMBER_ID, PHONE_A, graph_error

TOKEN = "test-access-token-SECRET"
TO_PHONE = ReplyAddress("whatsapp", phone_number_id=NUMBER_ID, to=PHONE_A)
TO_BSUID = ReplyAddress("whatsapp", phone_number_id=NUMBER_ID, recipient=BSUID_A)


def sent(wamid: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "messages": [{"id": wamid}]}


def make_sender(server: FakeServer, clock: FakeClock, **kwargs: Any) -> WhatsAppSender:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, deadline=600))
    return WhatsAppSender(
        access_token=TOKEN,
        api_url=f"{server.url}/v25.0",
        timeout=5,
        sleep=clock.sleep,
        clock=clock,
        random=lambda: 0.5,
        **kwargs,
    )


def test_text_is_posted_with_bearer_token_and_plus(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    ids = make_sender(fake_server, clock).send_text(TO_PHONE, "hello there")

    (request,) = fake_server.requests
    assert ids == ["wamid.SENT0001"]
    assert request.path == f"/v25.0/{NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+15550000001",
        "type": "text",
        "text": {"body": "hello there", "preview_url": False},
    }


def test_phone_wins_over_bsuid_and_bsuid_alone_uses_recipient(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    sender = make_sender(fake_server, clock)
    both = ReplyAddress(
        "whatsapp", phone_number_id=NUMBER_ID, to=f"+{PHONE_A}", recipient=BSUID_A
    )

    sender.send_text(both, "one")
    sender.send_text(TO_BSUID, "two")

    first, second = (r.json() for r in fake_server.requests)
    assert first["to"] == "+15550000001"
    assert "recipient" not in first
    assert second["recipient"] == BSUID_A
    assert "to" not in second


def test_group_address_sends_to_the_group(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    group = ReplyAddress(
        "whatsapp", phone_number_id=NUMBER_ID, to="GROUP01", group=True
    )

    make_sender(fake_server, clock).send_text(group, "hi all")

    body = fake_server.requests[0].json()
    assert (body["recipient_type"], body["to"]) == ("group", "GROUP01")


def test_9000_characters_go_out_in_parts_of_at_most_4096(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    text = "\n".join(f"line {n:05d} " + "é" * 20 for n in range(300))
    assert len(text) >= 9000

    ids = make_sender(fake_server, clock).send_text(
        TO_PHONE, text, context_message_id="wamid.LAST", callback_data="batch-42"
    )

    bodies = [r.json() for r in fake_server.requests]
    assert len(bodies) == 3
    assert ids == ["wamid.SENT0001", "wamid.SENT0002", "wamid.SENT0003"]
    assert all(len(b["text"]["body"]) <= 4096 for b in bodies)
    assert "".join(b["text"]["body"] for b in bodies) == text
    assert bodies[0]["context"] == {"message_id": "wamid.LAST"}
    assert all("context" not in b for b in bodies[1:])
    assert all(b["biz_opaque_callback_data"] == "batch-42" for b in bodies)


def test_400_with_throughput_code_is_retried_then_succeeds(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(400, graph_error(130429, "(#130429) Rate limit hit")))

    ids = make_sender(fake_server, clock).send_text(TO_PHONE, "hi")

    assert ids == ["wamid.SENT0002"]
    assert len(fake_server.requests) == 2
    assert clock.sleeps == [pytest.approx(1.125)]


@pytest.mark.parametrize("code", [131047, 100, 190, 131026])
def test_400_with_a_permanent_code_is_not_retried(
    fake_server: FakeServer, clock: FakeClock, code: int
) -> None:
    fake_server.script(Reply(400, graph_error(code, f"(#{code}) refused")))

    with pytest.raises(SendError) as caught:
        make_sender(fake_server, clock).send_text(TO_PHONE, "hi")

    error = caught.value
    assert (error.code, error.http_status, error.retryable) == (code, 400, False)
    assert error.attempts == 1
    assert len(fake_server.requests) == 1
    assert clock.sleeps == []


def test_500_without_body_is_retried(fake_server: FakeServer, clock: FakeClock) -> None:
    fake_server.script(Reply(500, b"oops"), Reply(503, None))

    ids = make_sender(fake_server, clock).send_text(TO_PHONE, "hi")

    assert ids == ["wamid.SENT0003"]
    assert len(clock.sleeps) == 2
    assert clock.sleeps[1] > clock.sleeps[0]


def test_attempts_are_bounded(fake_server: FakeServer, clock: FakeClock) -> None:
    fake_server.script(*[Reply(500, graph_error(131000))] * 10)

    with pytest.raises(SendError) as caught:
        make_sender(fake_server, clock).send_text(TO_PHONE, "hi")

    assert len(fake_server.requests) == 4
    assert caught.value.attempts == 4
    assert caught.value.retryable is True
    assert caught.value.code == 131000
    assert clock.sleeps == pytest.approx([1.125, 4.5, 18.0])


def test_total_time_is_bounded(fake_server: FakeServer, clock: FakeClock) -> None:
    fake_server.script(*[Reply(400, graph_error(131056))] * 10)
    sender = make_sender(
        fake_server, clock, retry=RetryPolicy(max_attempts=10, deadline=10)
    )

    with pytest.raises(SendError) as caught:
        sender.send_text(TO_PHONE, "hi")

    assert len(fake_server.requests) == 3
    assert sum(clock.sleeps) <= 10
    assert caught.value.code == 131056


def test_mark_read_with_typing_indicator(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(200, {"success": True}), Reply(200, {"success": True}))
    sender = make_sender(fake_server, clock)

    sender.mark_read(TO_BSUID, "wamid.IN9")
    sender.mark_read(TO_BSUID, "wamid.IN9", typing=False)

    first, second = (r.json() for r in fake_server.requests)
    assert first == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN9",
        "typing_indicator": {"type": "text"},
    }
    assert "typing_indicator" not in second
    assert fake_server.requests[0].path == f"/v25.0/{NUMBER_ID}/messages"


def test_partial_failure_reports_the_parts_already_sent(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(200, sent("wamid.P1")), Reply(400, graph_error(131047)))

    with pytest.raises(SendError) as caught:
        make_sender(fake_server, clock).send_text(TO_PHONE, "x" * 5000)

    assert caught.value.sent_ids == ("wamid.P1",)


def test_token_and_text_never_appear_in_errors_or_repr(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(401, graph_error(190, "(#190) token expired")))
    sender = make_sender(fake_server, clock)

    with pytest.raises(SendError) as caught:
        sender.send_text(TO_PHONE, "private words")

    shown = str(caught.value) + repr(caught.value) + repr(sender)
    assert TOKEN not in shown
    assert "private words" not in shown
    assert PHONE_A not in shown
    assert "190" in shown


def test_refused_connection_is_retried_then_reported(clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = WhatsAppSender(
        access_token=TOKEN,
        api_url=f"http://127.0.0.1:{port}/v25.0",
        retry=RetryPolicy(max_attempts=2),
        sleep=clock.sleep,
        clock=clock,
    )

    with pytest.raises(SendError) as caught:
        sender.send_text(TO_PHONE, "hi")

    assert caught.value.retryable is True
    assert caught.value.http_status is None
    assert caught.value.attempts == 2


def test_read_timeout_is_not_resent(fake_server: FakeServer, clock: FakeClock) -> None:
    fake_server.script(Reply(200, {"messages": [{"id": "late"}]}, delay=0.5))
    sender = WhatsAppSender(
        access_token=TOKEN,
        api_url=fake_server.url,
        timeout=0.1,
        sleep=clock.sleep,
        clock=clock,
    )

    with pytest.raises(SendError, match="may have been processed") as caught:
        sender.send_text(TO_PHONE, "hi")

    assert caught.value.retryable is False
    assert len(fake_server.requests) == 1


def test_async_sender_runs_the_same_calls(
    fake_server: FakeServer, clock: FakeClock
) -> None:
    fake_server.script(Reply(200, sent("wamid.A1")), Reply(200, {"success": True}))
    sender = AsyncWhatsAppSender(make_sender(fake_server, clock))

    async def main() -> list[str]:
        ids = await sender.send_text(TO_PHONE, "async hi", callback_data="b1")
        await sender.mark_read(TO_PHONE, "wamid.IN1")
        return ids

    assert anyio.run(main) == ["wamid.A1"]
    assert fake_server.requests[0].json()["biz_opaque_callback_data"] == "b1"
    assert fake_server.requests[1].json()["status"] == "read"


class ScriptedHttp:
    """An injected HTTP function: no socket at all."""

    def __init__(self, *replies: HttpResponse) -> None:
        self.replies = list(replies)
        self.requests: list[HttpRequest] = []

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return self.replies.pop(0)


def json_reply(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, 130429, True),
        (400, 131056, True),
        (400, 131057, True),
        (400, 1, True),
        (400, 2, True),
        (400, 4, True),
        (400, 80007, True),
        (500, 131000, True),
        (503, 131016, True),
        (400, 131047, False),
        (400, 100, False),
        (400, 131048, False),
        (401, 190, False),
        (400, 131062, False),
        (500, 100, False),
        (429, None, True),
        (502, None, True),
        (400, None, False),
        (404, None, False),
    ],
)
def test_retry_decision_rests_on_the_error_code(
    clock: FakeClock, status: int, code: int | None, retryable: bool
) -> None:
    failure = graph_error(code) if code is not None else {"detail": "no code"}
    http = ScriptedHttp(json_reply(status, failure), json_reply(200, {"messages": []}))
    sender = WhatsAppSender(
        access_token=TOKEN, http=http, sleep=clock.sleep, clock=clock, random=lambda: 0
    )

    if retryable:
        assert sender.send_text(TO_PHONE, "hi") == []
        assert len(http.requests) == 2
    else:
        with pytest.raises(SendError) as caught:
            sender.send_text(TO_PHONE, "hi")
        assert caught.value.retryable is False
        assert len(http.requests) == 1


def test_default_api_url_is_graph_v25_and_only_used_when_not_overridden() -> None:
    http = ScriptedHttp(json_reply(200, {"messages": [{"id": "wamid.X"}]}))
    sender = WhatsAppSender(access_token=TOKEN, http=http)

    sender.send_text(TO_PHONE, "hi")

    assert GRAPH_API_URL == "https://graph.facebook.com/v25.0"
    assert http.requests[0].url == f"{GRAPH_API_URL}/{NUMBER_ID}/messages"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"access_token": None},
        {"access_token": ""},
        {"access_token": TOKEN, "api_url": "file:///etc/hosts"},
        {"access_token": TOKEN, "api_url": "graph.facebook.com"},
        {"access_token": TOKEN, "text_limit": 5000},
        {"access_token": TOKEN, "timeout": 0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TransportConfigError):
        WhatsAppSender(**kwargs)


def test_wrong_address_or_empty_text_is_refused(clock: FakeClock) -> None:
    http = ScriptedHttp()
    sender = WhatsAppSender(access_token=TOKEN, http=http)

    with pytest.raises(InvalidAddressError):
        sender.send_text(ReplyAddress("baileys", jid="1@s.whatsapp.net"), "hi")
    with pytest.raises(ValueError, match="empty"):
        sender.send_text(TO_PHONE, "  \n ")
    assert http.requests == []
