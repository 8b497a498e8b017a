"""The Cloud API verification GET."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from rapidfire.transports import TransportConfigError, WhatsAppWebhook

from ._payloads import APP_SECRET, VERIFY_TOKEN


@pytest.fixture
def webhook() -> WhatsAppWebhook:
    return WhatsAppWebhook(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)


def params(
    mode: str = "subscribe", token: str = VERIFY_TOKEN, challenge: str = "x"
) -> dict[str, str]:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}


@pytest.mark.parametrize("challenge", ["1158201444", "007", "abc-Ωé_12/3", " 12 "])
def test_good_token_echoes_the_challenge_verbatim(
    webhook: WhatsAppWebhook, challenge: str
) -> None:
    answer = webhook.handle_get(params(challenge=challenge))

    assert answer.status == 200
    assert answer.body == challenge
    assert answer.content_type.startswith("text/plain")


def test_parse_qs_lists_are_accepted(webhook: WhatsAppWebhook) -> None:
    query = parse_qs(
        f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=0042"
    )

    answer = webhook.handle_get(query)

    assert (answer.status, answer.body) == (200, "0042")


@pytest.mark.parametrize(
    "query",
    [
        params(token="wrong-token"),
        params(token=VERIFY_TOKEN + "x"),
        params(token=""),
        params(mode="unsubscribe"),
        params(mode="SUBSCRIBE"),
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {
            "hub_mode": "subscribe",
            "hub_verify_token": VERIFY_TOKEN,
            "hub_challenge": "1",
        },
        {
            "hub.mode": "subscribe",
            "hub.verify_token": [VERIFY_TOKEN, "x"],
            "hub.challenge": "1",
        },
    ],
)
def test_anything_else_is_forbidden(
    webhook: WhatsAppWebhook, query: dict[str, object]
) -> None:
    answer = webhook.handle_get(query)

    assert answer.status == 403
    assert "1" not in answer.body


def test_missing_challenge_is_a_bad_request(webhook: WhatsAppWebhook) -> None:
    answer = webhook.handle_get(
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
    )

    assert answer.status == 400


def test_without_a_verify_token_every_get_is_forbidden() -> None:
    webhook = WhatsAppWebhook(app_secret=APP_SECRET)

    assert webhook.handle_get(params()).status == 403


def test_an_empty_verify_token_is_refused_at_construction() -> None:
    with pytest.raises(TransportConfigError) as caught:
        WhatsAppWebhook(app_secret=APP_SECRET, verify_token="")

    assert caught.value.field == "verify_token"
