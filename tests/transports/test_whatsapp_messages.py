"""Every Cloud API inbound message type, normalized."""

from __future__ import annotations

from typing import Any

import pytest

from rapidfire.transports import InboundMessage, MessageKind, WhatsAppWebhook

from ._payloads import APP_SECRET, encode, message, sign, single


def parse_one(item: dict[str, Any]) -> InboundMessage:
    webhook = WhatsAppWebhook(app_secret=APP_SECRET)
    body = encode(single(item))
    (parsed,) = webhook.parse(body, sign(body)).messages
    return parsed


MEDIA = {"mime_type": "image/jpeg", "sha256": "SHA==", "id": "MEDIA0001"}


@pytest.mark.parametrize(
    ("item", "kind", "text"),
    [
        (message("text", {"body": "plain text"}), MessageKind.TEXT, "plain text"),
        (message("image", {**MEDIA, "caption": "look"}), MessageKind.IMAGE, "look"),
        (message("image", MEDIA), MessageKind.IMAGE, None),
        (message("video", {**MEDIA, "caption": "clip"}), MessageKind.VIDEO, "clip"),
        (message("sticker", {**MEDIA, "animated": False}), MessageKind.STICKER, None),
        (
            message("document", {**MEDIA, "filename": "invoice.pdf", "caption": "pay"}),
            MessageKind.DOCUMENT,
            "pay",
        ),
        (
            message("document", {**MEDIA, "filename": "invoice.pdf"}),
            MessageKind.DOCUMENT,
            "invoice.pdf",
        ),
        (
            message(
                "location",
                {
                    "latitude": 37.48,
                    "longitude": -122.14,
                    "name": "Test Cafe",
                    "address": "1 Fake Street",
                },
            ),
            MessageKind.LOCATION,
            "Test Cafe, 1 Fake Street (37.48, -122.14)",
        ),
        (
            message("location", {"latitude": 1.5, "longitude": 2}),
            MessageKind.LOCATION,
            "1.5, 2",
        ),
        (
            message("button", {"payload": "STOP_PROMO", "text": "Stop promotions"}),
            MessageKind.BUTTON,
            "Stop promotions",
        ),
        (
            message("order", {"catalog_id": "C1", "text": "two please"}),
            MessageKind.ORDER,
            "two please",
        ),
        (message("request_welcome"), MessageKind.REQUEST_WELCOME, None),
        (
            message("poll_future", {"title": "Pick one"}),
            MessageKind.UNKNOWN,
            "Pick one",
        ),
        (message("brand_new_type", {"weird": [1, 2]}), MessageKind.UNKNOWN, None),
        (message("brand_new_type", "not an object"), MessageKind.UNKNOWN, None),
    ],
)
def test_each_type_gives_kind_and_text(
    item: dict[str, Any], kind: MessageKind, text: str | None
) -> None:
    parsed = parse_one(item)

    assert parsed.kind is kind
    assert parsed.text == text
    assert parsed.platform_type == item["type"]


def test_media_reference_is_kept_without_fetching() -> None:
    item = message(
        "document",
        {
            **MEDIA,
            "mime_type": "application/pdf",
            "filename": "a.pdf",
            "url": "https://x",
        },
    )

    media = parse_one(item).media

    assert media is not None
    assert (media.id, media.mime_type, media.filename) == (
        "MEDIA0001",
        "application/pdf",
        "a.pdf",
    )
    assert media.url == "https://x"
    assert media.sha256 == "SHA=="


def test_voice_note_is_audio_without_text() -> None:
    item = message(
        "audio", {"mime_type": "audio/ogg; codecs=opus", "id": "AUD1", "voice": True}
    )

    parsed = parse_one(item)

    assert parsed.kind is MessageKind.AUDIO
    assert parsed.text is None
    assert parsed.media is not None
    assert parsed.media.voice is True


def test_contacts_are_rendered_by_name_and_phone() -> None:
    cards = [
        {
            "name": {"formatted_name": "Dee Fake", "first_name": "Dee"},
            "phones": [
                {"phone": "+1 555 000 0007", "wa_id": "15550000007", "type": "CELL"}
            ],
        },
        {"name": {"formatted_name": "Eve Nophone"}},
    ]

    parsed = parse_one(message("contacts", contacts=cards))

    assert parsed.kind is MessageKind.CONTACTS
    assert parsed.text == "Dee Fake (+1 555 000 0007); Eve Nophone"


@pytest.mark.parametrize(
    ("interactive", "text", "payload"),
    [
        (
            {"type": "button_reply", "button_reply": {"id": "yes-1", "title": "Yes"}},
            "Yes",
            "yes-1",
        ),
        (
            {
                "type": "list_reply",
                "list_reply": {
                    "id": "row-2",
                    "title": "Large",
                    "description": "16 inch",
                },
            },
            "Large",
            "row-2",
        ),
        (
            {
                "type": "nfm_reply",
                "nfm_reply": {
                    "name": "flow",
                    "body": "Sent",
                    "response_json": '{"a":1}',
                },
            },
            "Sent",
            '{"a":1}',
        ),
    ],
)
def test_interactive_replies_give_title_and_payload(
    interactive: dict[str, Any], text: str, payload: str
) -> None:
    item = message(
        "interactive", interactive, context={"from": "15550009999", "id": "wamid.MENU"}
    )

    parsed = parse_one(item)

    assert parsed.kind is MessageKind.INTERACTIVE
    assert (parsed.text, parsed.payload) == (text, payload)
    assert parsed.context is not None
    assert parsed.context.quoted_message_id == "wamid.MENU"
    assert parsed.context.quoted_sender == "15550009999"


def test_reaction_points_at_the_reacted_message() -> None:
    item = message("reaction", {"message_id": "wamid.OURS", "emoji": "\U0001f44d"})

    parsed = parse_one(item)

    assert parsed.kind is MessageKind.REACTION
    assert parsed.text == "\U0001f44d"
    assert parsed.context is not None
    assert parsed.context.quoted_message_id == "wamid.OURS"


def test_removed_reaction_has_no_emoji_and_no_text() -> None:
    parsed = parse_one(message("reaction", {"message_id": "wamid.OURS"}))

    assert parsed.kind is MessageKind.REACTION
    assert parsed.text is None


def test_unsupported_message_carries_its_errors() -> None:
    errors = [
        {
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ]
    item = message("unsupported", {"type": "poll_creation"}, errors=errors)

    parsed = parse_one(item)

    assert parsed.kind is MessageKind.UNSUPPORTED
    assert parsed.text is None
    assert parsed.payload == "poll_creation"
    assert [e.code for e in parsed.errors] == [131051]
    assert parsed.errors[0].details == "Message type is currently not supported."


def test_system_message_gives_body_and_subtype() -> None:
    item = message(
        "system", {"body": "User changed their id", "type": "user_changed_user_id"}
    )

    parsed = parse_one(item)

    assert parsed.kind is MessageKind.SYSTEM
    assert parsed.text == "User changed their id"
    assert parsed.payload == "user_changed_user_id"


@pytest.mark.parametrize(
    ("context", "forwarded", "frequently"),
    [({"forwarded": True}, True, False), ({"frequently_forwarded": True}, False, True)],
)
def test_forward_flags_are_read(
    context: dict[str, Any], forwarded: bool, frequently: bool
) -> None:
    parsed = parse_one(message("text", {"body": "fwd"}, context=context))

    assert parsed.context is not None
    assert parsed.context.quoted_message_id is None
    assert (parsed.context.forwarded, parsed.context.frequently_forwarded) == (
        forwarded,
        frequently,
    )


def test_raw_item_is_kept_for_new_fields() -> None:
    item = message("text", {"body": "from an ad"}, referral={"source_type": "ad"})

    parsed = parse_one(item)

    assert parsed.raw["referral"] == {"source_type": "ad"}
    assert "referral" not in parsed.to_push()[1]
