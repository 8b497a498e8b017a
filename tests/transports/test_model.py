"""The inbound model and its push format."""

from __future__ import annotations

import json

import pytest

from rapidfire.transports import (
    Author,
    ErrorDetail,
    InboundMessage,
    InvalidAddressError,
    MalformedPayloadError,
    MediaRef,
    MessageContext,
    MessageKind,
    ReplyAddress,
    TransportError,
)

from ._payloads import BSUID_A, NUMBER_ID, PHONE_A


def make_message(**overrides: object) -> InboundMessage:
    fields: dict[str, object] = {
        "platform": "whatsapp",
        "conversation": f"wa:{NUMBER_ID}:u:{BSUID_A}",
        "message_id": "wamid.TEST0001",
        "sender": Author(phone=f"+{PHONE_A}", user_id=BSUID_A, name="Ana Test"),
        "timestamp": 1760000000.0,
        "kind": MessageKind.IMAGE,
        "text": "a caption with é and /",
        "reply_to": ReplyAddress(
            "whatsapp", phone_number_id=NUMBER_ID, to=f"+{PHONE_A}", recipient=BSUID_A
        ),
        "platform_type": "image",
        "media": MediaRef(id="MEDIA1", mime_type="image/jpeg", caption="a caption"),
        "context": MessageContext(quoted_message_id="wamid.Q", forwarded=True),
        "payload": None,
        "errors": (ErrorDetail(code=131051, title="Unsupported"),),
        "raw": {"id": "wamid.TEST0001", "secret-ish": "raw only"},
    }
    fields.update(overrides)
    return InboundMessage(**fields)  # type: ignore[arg-type]


def test_to_push_returns_key_compact_dict_and_dedupe_id() -> None:
    message = make_message()

    conversation, data, dedupe_id = message.to_push()

    assert conversation == f"wa:{NUMBER_ID}:u:{BSUID_A}"
    assert dedupe_id == "wamid.TEST0001"
    assert data["v"] == 1
    assert data["kind"] == "image"
    assert data["text"] == "a caption with é and /"
    assert data["id"] == "wamid.TEST0001"
    assert data["ts"] == 1760000000.0
    assert data["sender"] == {
        "name": "Ana Test",
        "phone": "+15550000001",
        "user_id": BSUID_A,
    }
    assert data["reply_to"] == {
        "platform": "whatsapp",
        "phone_number_id": NUMBER_ID,
        "to": "+15550000001",
        "recipient": BSUID_A,
    }
    assert data["media"] == {
        "id": "MEDIA1",
        "mime_type": "image/jpeg",
        "caption": "a caption",
    }
    assert data["context"] == {"quoted_message_id": "wamid.Q", "forwarded": True}
    assert "raw" not in data
    assert "payload" not in data


def test_push_dict_survives_json_and_rebuilds_equal() -> None:
    message = make_message(payload="btn-1")

    _, data, _ = message.to_push()
    rebuilt = InboundMessage.from_push(json.loads(json.dumps(data)))

    assert rebuilt == message
    assert rebuilt.raw == {}
    assert rebuilt.dedupe_id == message.dedupe_id


def test_include_raw_keeps_the_platform_item() -> None:
    message = make_message()

    _, data, _ = message.to_push(include_raw=True)

    assert data["raw"] == {"id": "wamid.TEST0001", "secret-ish": "raw only"}
    assert InboundMessage.from_push(data).raw == data["raw"]


def test_text_none_is_kept_as_null() -> None:
    message = make_message(text=None, media=None, context=None, errors=())

    _, data, _ = message.to_push()

    assert data["text"] is None
    assert not {"media", "context", "errors"} & data.keys()
    assert InboundMessage.from_push(data) == message


def test_baileys_dedupe_id_carries_the_chat() -> None:
    message = make_message(
        platform="baileys",
        conversation=f"wa-web:{PHONE_A}@s.whatsapp.net",
        message_id="3EB0AA",
        reply_to=ReplyAddress("baileys", jid=f"{PHONE_A}@s.whatsapp.net"),
    )

    assert message.to_push()[2] == f"wa-web:{PHONE_A}@s.whatsapp.net/3EB0AA"


def test_unknown_kind_from_a_newer_pusher_becomes_unknown() -> None:
    _, data, _ = make_message().to_push()
    data["kind"] = "hologram"

    assert InboundMessage.from_push(data).kind is MessageKind.UNKNOWN


@pytest.mark.parametrize(
    ("key", "value"),
    [("v", 2), ("id", None), ("ts", "1760000000"), ("ts", True), ("platform", "sms")],
)
def test_from_push_rejects_malformed_fields(key: str, value: object) -> None:
    _, data, _ = make_message().to_push()
    data[key] = value

    with pytest.raises(MalformedPayloadError):
        InboundMessage.from_push(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"platform": "whatsapp", "to": "+15550000001"},
        {"platform": "whatsapp", "phone_number_id": NUMBER_ID},
        {
            "platform": "whatsapp",
            "phone_number_id": NUMBER_ID,
            "recipient": "x",
            "group": True,
        },
        {"platform": "baileys"},
        {"platform": "telegram", "jid": "x"},
    ],
)
def test_incomplete_reply_addresses_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidAddressError) as caught:
        ReplyAddress(**kwargs)  # type: ignore[arg-type]

    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TransportError)


def test_repr_hides_text_and_full_identifiers() -> None:
    shown = repr(make_message())

    assert PHONE_A not in shown
    assert BSUID_A not in shown
    assert "caption" not in shown
    assert "…0001" in shown


def test_message_kind_is_a_str_enum() -> None:
    assert MessageKind("text") is MessageKind.TEXT
    assert isinstance(MessageKind.REACTION, str)
    assert MessageKind.REACTION.value == "reaction"
    assert MessageKind.parse("nope") is MessageKind.UNKNOWN
