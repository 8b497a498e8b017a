"""The Baileys bridge webhook: authentication, filters, JIDs, text, timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from rapidfire.transports import (
    BaileysWebhook,
    InboundMessage,
    MessageKind,
    SignatureError,
    TransportConfigError,
    WebhookBatch,
    normalize_jid,
)

from ._payloads import (
    BRIDGE_SECRET,
    PHONE_A,
    PHONE_B,
    bridge_headers,
    encode,
    upsert,
    wa_message,
)

NOW = 1760000100.0
PN_A = f"{PHONE_A}@s.whatsapp.net"
PN_B = f"{PHONE_B}@s.whatsapp.net"
LID_A = "100000000000011@lid"
LID_B = "100000000000012@lid"
GROUP = "120363000000000001@g.us"


def make_webhook(**kwargs: Any) -> BaileysWebhook:
    return BaileysWebhook(secret=BRIDGE_SECRET, clock=lambda: NOW, **kwargs)


def parse(event: dict[str, Any], **kwargs: Any) -> WebhookBatch:
    body = encode(event)
    headers = bridge_headers(body, now=NOW)
    return make_webhook(**kwargs).parse(
        body,
        timestamp=headers["X-Rapidfire-Timestamp"],
        signature=headers["X-Rapidfire-Signature"],
    )


def parse_one(content: dict[str, Any] | None, **item: Any) -> InboundMessage:
    (message,) = parse(upsert(wa_message(content, **item))).messages
    return message


# Authentication


@pytest.mark.parametrize("secret", [None, "", b""])
def test_no_secret_refuses_to_construct(secret: str | bytes | None) -> None:
    with pytest.raises(TransportConfigError, match="secret"):
        BaileysWebhook(secret=secret)


def test_signed_request_is_delivered() -> None:
    body = encode(upsert(wa_message({"conversation": "hi"})))
    delivered: list[WebhookBatch] = []

    answer = make_webhook().handle_post(
        body, bridge_headers(body, now=NOW), delivered.append
    )

    assert answer.status == 200
    assert [m.text for m in delivered[0].messages] == ["hi"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.update({"X-Rapidfire-Signature": "sha256=" + "0" * 64}),
        lambda h: h.pop("X-Rapidfire-Signature"),
        lambda h: h.pop("X-Rapidfire-Timestamp"),
        lambda h: h.update({"X-Rapidfire-Timestamp": str(int(NOW) + 1)}),
    ],
)
def test_bad_or_missing_authentication_is_forbidden(mutate: Any) -> None:
    body = encode(upsert(wa_message({"conversation": "hi"})))
    headers = bridge_headers(body, now=NOW)
    mutate(headers)
    delivered: list[WebhookBatch] = []

    answer = make_webhook().handle_post(body, headers, delivered.append)

    assert answer.status == 403
    assert delivered == []


@pytest.mark.parametrize(
    ("signed_at", "accepted"), [(NOW - 299, True), (NOW - 301, False)]
)
def test_requests_more_than_five_minutes_old_are_refused(
    signed_at: float, accepted: bool
) -> None:
    body = encode(upsert(wa_message({"conversation": "hi"})))
    headers = bridge_headers(body, now=signed_at)
    webhook = make_webhook()

    def call() -> WebhookBatch:
        return webhook.parse(
            body,
            timestamp=headers["X-Rapidfire-Timestamp"],
            signature=headers["X-Rapidfire-Signature"],
        )

    if accepted:
        assert len(call().messages) == 1
    else:
        with pytest.raises(SignatureError, match="window"):
            call()


def test_signature_from_another_secret_is_refused() -> None:
    body = encode(upsert(wa_message({"conversation": "hi"})))
    headers = bridge_headers(body, now=NOW, secret="another-secret")

    answer = make_webhook().handle_post(body, headers, lambda batch: None)

    assert answer.status == 403


def test_event_without_a_messages_list_is_a_bad_request() -> None:
    body = encode({"type": "notify", "messages": {"not": "a list"}})

    answer = make_webhook().handle_post(
        body, bridge_headers(body, now=NOW), lambda batch: None
    )

    assert answer.status == 400


# Filters


def test_only_notify_upserts_are_acted_on() -> None:
    batch = parse(upsert(wa_message({"conversation": "old"}), kind="append"))

    assert batch.messages == ()
    assert batch.ignored == 1


@pytest.mark.parametrize(
    "item",
    [
        wa_message({"conversation": "mine"}, from_me=True),
        wa_message({"conversation": "story"}, remote_jid="status@broadcast"),
        wa_message({"conversation": "list"}, remote_jid="1760000000@broadcast"),
        wa_message(
            {"conversation": "channel"}, remote_jid="120363000000000009@newsletter"
        ),
        wa_message(None),
        {**wa_message(None), "message": None, "messageStubType": 20},
        wa_message({"protocolMessage": {"type": 0, "key": {"id": "3EB0OLD"}}}),
        wa_message({"senderKeyDistributionMessage": {"groupId": GROUP}}),
        wa_message(
            {"ephemeralMessage": {"message": {"protocolMessage": {"type": 14}}}}
        ),
        wa_message({"conversation": "no id"}, msg_id=""),
        wa_message({"conversation": "bad jid"}, remote_jid="not-a-jid"),
        {"message": {"conversation": "no key"}},
        "not an object",
    ],
)
def test_filtered_items_are_skipped(item: Any) -> None:
    batch = parse(upsert(item, wa_message({"conversation": "kept"}, msg_id="3EB0KEPT")))

    assert [m.text for m in batch.messages] == ["kept"]
    assert batch.ignored == 1


def test_groups_can_be_turned_off() -> None:
    event = upsert(
        wa_message({"conversation": "group"}, remote_jid=GROUP, participant=PN_B)
    )

    assert parse(event, include_groups=False).messages == ()
    assert len(parse(event).messages) == 1


# JIDs and senders


@pytest.mark.parametrize(
    ("jid", "normalized"),
    [
        (f"{PHONE_A}:3@s.whatsapp.net", PN_A),
        (f"{PHONE_A}@c.us", PN_A),
        ("100000000000011:12@lid", LID_A),
        (f"{PHONE_A}_1:2@s.whatsapp.net", PN_A),
        (GROUP, GROUP),
        (f"{PHONE_A}@S.WHATSAPP.NET", PN_A),
        ("no-at-sign", None),
        ("@s.whatsapp.net", None),
        ("a@b@c", None),
        (None, None),
    ],
)
def test_jid_normalization(jid: str | None, normalized: str | None) -> None:
    assert normalize_jid(jid) == normalized


def test_direct_chat_by_phone() -> None:
    message = parse_one(
        {"conversation": "hi"}, remote_jid=f"{PHONE_A}:7@s.whatsapp.net"
    )

    assert message.conversation == f"wa-web:{PN_A}"
    assert message.reply_to.jid == PN_A
    assert message.sender.phone == f"+{PHONE_A}"
    assert message.sender.name == "Ana Test"
    assert message.dedupe_id == f"wa-web:{PN_A}/3EB0TEST0001"


def test_direct_chat_by_lid_takes_the_phone_from_the_alt_jid() -> None:
    message = parse_one({"conversation": "hi"}, remote_jid=LID_A, remoteJidAlt=PN_A)

    assert message.conversation == f"wa-web:{LID_A}"
    assert message.sender.user_id == LID_A
    assert message.sender.phone == f"+{PHONE_A}"


def test_group_sender_comes_from_the_participant() -> None:
    message = parse_one(
        {"conversation": "hello group"},
        remote_jid=GROUP,
        participant="100000000000012:4@lid",
        participantAlt=f"{PHONE_B}:4@s.whatsapp.net",
    )

    assert message.conversation == f"wa-web:{GROUP}"
    assert message.reply_to.jid == GROUP
    assert message.sender.jid == LID_B
    assert message.sender.user_id == LID_B
    assert message.sender.phone == f"+{PHONE_B}"


def test_legacy_sender_pn_field_gives_the_phone() -> None:
    message = parse_one(
        {"conversation": "hi"}, remote_jid=LID_A, senderPn=f"{PHONE_A}@s.whatsapp.net"
    )

    assert message.sender.phone == f"+{PHONE_A}"


def test_account_prefix_keeps_two_linked_accounts_apart() -> None:
    event = upsert(wa_message({"conversation": "same chat"}))

    one = parse(event, account="shop-1").messages[0]
    two = parse(event, account="shop-2").messages[0]

    assert one.conversation == f"wa-web:shop-1:{PN_A}"
    assert two.conversation == f"wa-web:shop-2:{PN_A}"
    assert one.dedupe_id != two.dedupe_id
    assert one.reply_to.account == "shop-1"


def test_invalid_account_is_refused() -> None:
    with pytest.raises(TransportConfigError, match="account"):
        BaileysWebhook(secret=BRIDGE_SECRET, account="a:b")


# Text sources


@pytest.mark.parametrize(
    ("content", "kind", "text", "payload"),
    [
        ({"conversation": "plain"}, MessageKind.TEXT, "plain", None),
        (
            {"extendedTextMessage": {"text": "with preview"}},
            MessageKind.TEXT,
            "with preview",
            None,
        ),
        (
            {"imageMessage": {"caption": "a photo", "mimetype": "image/jpeg"}},
            MessageKind.IMAGE,
            "a photo",
            None,
        ),
        ({"videoMessage": {"caption": "a clip"}}, MessageKind.VIDEO, "a clip", None),
        (
            {"documentMessage": {"caption": "the file", "fileName": "a.pdf"}},
            MessageKind.DOCUMENT,
            "the file",
            None,
        ),
        (
            {"documentMessage": {"fileName": "a.pdf"}},
            MessageKind.DOCUMENT,
            "a.pdf",
            None,
        ),
        (
            {
                "buttonsResponseMessage": {
                    "selectedButtonId": "b1",
                    "selectedDisplayText": "Yes",
                }
            },
            MessageKind.INTERACTIVE,
            "Yes",
            "b1",
        ),
        (
            {
                "listResponseMessage": {
                    "title": "Large",
                    "singleSelectReply": {"selectedRowId": "row-2"},
                }
            },
            MessageKind.INTERACTIVE,
            "Large",
            "row-2",
        ),
        (
            {
                "templateButtonReplyMessage": {
                    "selectedId": "t1",
                    "selectedDisplayText": "Stop",
                }
            },
            MessageKind.BUTTON,
            "Stop",
            "t1",
        ),
        (
            {"audioMessage": {"ptt": True, "mimetype": "audio/ogg"}},
            MessageKind.AUDIO,
            None,
            None,
        ),
        (
            {"stickerMessage": {"mimetype": "image/webp"}},
            MessageKind.STICKER,
            None,
            None,
        ),
        (
            {
                "locationMessage": {
                    "degreesLatitude": 1.25,
                    "degreesLongitude": 2.5,
                    "name": "Spot",
                }
            },
            MessageKind.LOCATION,
            "Spot (1.25, 2.5)",
            None,
        ),
        (
            {"contactMessage": {"displayName": "Dee Fake"}},
            MessageKind.CONTACTS,
            "Dee Fake",
            None,
        ),
        (
            {
                "contactsArrayMessage": {
                    "contacts": [{"displayName": "Dee"}, {"displayName": "Eve"}]
                }
            },
            MessageKind.CONTACTS,
            "Dee; Eve",
            None,
        ),
        (
            {"pollCreationMessageV3": {"name": "Lunch?"}},
            MessageKind.UNKNOWN,
            "Lunch?",
            None,
        ),
        (
            {
                "messageContextInfo": {"deviceListMetadata": {}},
                "conversation": "after info",
            },
            MessageKind.TEXT,
            "after info",
            None,
        ),
    ],
)
def test_text_sources(
    content: dict[str, Any], kind: MessageKind, text: str | None, payload: str | None
) -> None:
    message = parse_one(content)

    assert (message.kind, message.text, message.payload) == (kind, text, payload)


def test_media_fields_and_voice_flag() -> None:
    message = parse_one(
        {"audioMessage": {"ptt": True, "mimetype": "audio/ogg; codecs=opus"}}
    )

    assert message.media is not None
    assert message.media.voice is True
    assert message.media.mime_type == "audio/ogg; codecs=opus"


def test_quoted_reply_context() -> None:
    content = {
        "extendedTextMessage": {
            "text": "answering",
            "contextInfo": {
                "stanzaId": "3EB0QUOTED",
                "participant": PN_B,
                "isForwarded": True,
            },
        }
    }

    message = parse_one(content)

    assert message.context is not None
    assert message.context.quoted_message_id == "3EB0QUOTED"
    assert message.context.quoted_sender == PN_B
    assert message.context.forwarded is True


def test_reaction_and_removed_reaction() -> None:
    added = parse_one(
        {"reactionMessage": {"key": {"id": "3EB0OURS"}, "text": "\u2764"}}
    )
    removed = parse_one({"reactionMessage": {"key": {"id": "3EB0OURS"}, "text": ""}})

    assert (added.kind, added.text) == (MessageKind.REACTION, "\u2764")
    assert added.context is not None
    assert added.context.quoted_message_id == "3EB0OURS"
    assert removed.text is None


@pytest.mark.parametrize(
    "wrapper",
    [
        "ephemeralMessage",
        "viewOnceMessage",
        "viewOnceMessageV2",
        "viewOnceMessageV2Extension",
        "editedMessage",
    ],
)
def test_wrappers_are_unwrapped(wrapper: str) -> None:
    content = {wrapper: {"message": {"imageMessage": {"caption": "inside"}}}}

    message = parse_one(content)

    assert (message.kind, message.text) == (MessageKind.IMAGE, "inside")
    assert message.platform_type == "imageMessage"


def test_document_with_caption_and_nested_wrappers() -> None:
    content = {
        "ephemeralMessage": {
            "message": {
                "viewOnceMessageV2": {
                    "message": {
                        "documentWithCaptionMessage": {
                            "message": {
                                "documentMessage": {
                                    "caption": "deep",
                                    "fileName": "d.pdf",
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    message = parse_one(content)

    assert (message.kind, message.text) == (MessageKind.DOCUMENT, "deep")
    assert message.media is not None
    assert message.media.filename == "d.pdf"


# Timestamps


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1760000000, 1760000000.0),
        ("1760000000", 1760000000.0),
        ({"low": 1760000000, "high": 0, "unsigned": False}, 1760000000.0),
        ({"low": 1760000000, "high": 0, "unsigned": True}, 1760000000.0),
        ({"low": -1294967296, "high": 0, "unsigned": True}, 3000000000.0),
        ({"low": 5, "high": 1}, 4294967301.0),
        ({"low": -1, "high": -1, "unsigned": False}, -1.0),
        ({"low": -1, "high": -1, "unsigned": True}, float(2**64 - 1)),
        ("soon", NOW),
        ({"low": "1", "high": 0}, NOW),
        (True, NOW),
        (None, NOW),
    ],
)
def test_timestamp_forms(raw: Any, expected: float) -> None:
    assert parse_one({"conversation": "t"}, timestamp=raw).timestamp == expected


def test_several_messages_in_one_event_are_all_kept() -> None:
    items = [
        wa_message({"conversation": f"m{n}"}, msg_id=f"3EB0{n:04d}") for n in range(5)
    ]

    batch = parse(upsert(*items))

    assert [m.text for m in batch.messages] == ["m0", "m1", "m2", "m3", "m4"]
    assert len({m.dedupe_id for m in batch.messages}) == 5
