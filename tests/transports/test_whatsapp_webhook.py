"""The Cloud API POST: size cap, signature, envelope, routing, statuses, errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from rapidfire.transports import (
    MalformedPayloadError,
    MessageKind,
    PayloadTooLargeError,
    SignatureError,
    TransportConfigError,
    WebhookBatch,
    WhatsAppWebhook,
)

from ._payloads import (
    APP_SECRET,
    BSUID_A,
    BSUID_B,
    BSUID_C,
    NUMBER_ID,
    OTHER_NUMBER_ID,
    PHONE_A,
    PHONE_B,
    WABA_ID,
    change,
    contact,
    encode,
    entry,
    envelope,
    sign,
    single,
    status,
    text,
)


@pytest.fixture
def webhook() -> WhatsAppWebhook:
    return WhatsAppWebhook(app_secret=APP_SECRET, clock=lambda: 1234.0)


def parse(webhook: WhatsAppWebhook, payload: dict[str, Any]) -> WebhookBatch:
    body = encode(payload)
    return webhook.parse(body, sign(body))


def post(
    webhook: WhatsAppWebhook, body: bytes, headers: dict[str, str]
) -> tuple[int, list[WebhookBatch]]:
    delivered: list[WebhookBatch] = []
    answer = webhook.handle_post(body, headers, delivered.append)
    return answer.status, delivered


@pytest.mark.parametrize("secret", [None, "", b""])
def test_no_app_secret_refuses_to_construct(secret: str | bytes | None) -> None:
    with pytest.raises(TransportConfigError, match="app_secret") as caught:
        WhatsAppWebhook(app_secret=secret)

    assert caught.value.field == "app_secret"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"phone_number_ids": []},
        {"phone_number_ids": NUMBER_ID},
        {"tenant": "a:b"},
        {"tenant": ""},
        {"tenant": "two words"},
        {"max_body_bytes": 0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TransportConfigError):
        WhatsAppWebhook(app_secret=APP_SECRET, **kwargs)


def test_handle_post_delivers_a_signed_body(webhook: WhatsAppWebhook) -> None:
    body = encode(single(text("hello")))

    status_code, delivered = post(webhook, body, {"X-Hub-Signature-256": sign(body)})

    assert status_code == 200
    assert [m.text for m in delivered[0].messages] == ["hello"]


@pytest.mark.parametrize("name", ["x-hub-signature-256", "X-HUB-SIGNATURE-256"])
def test_signature_header_name_is_case_insensitive(
    webhook: WhatsAppWebhook, name: str
) -> None:
    body = encode(single(text("hello")))

    assert post(webhook, body, {name: sign(body)})[0] == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Hub-Signature-256": "sha256=" + "0" * 64}, {"X-Hub-Signature": "sha1=00"}],
)
def test_bad_or_missing_signature_is_forbidden_and_not_delivered(
    webhook: WhatsAppWebhook, headers: dict[str, str]
) -> None:
    status_code, delivered = post(webhook, encode(single(text("hi"))), headers)

    assert status_code == 403
    assert delivered == []


def test_signature_of_other_secret_is_refused(webhook: WhatsAppWebhook) -> None:
    body = encode(single(text("hi")))

    with pytest.raises(SignatureError):
        webhook.parse(body, sign(body, "another-secret"))


def test_oversized_body_is_refused_before_the_signature() -> None:
    webhook = WhatsAppWebhook(app_secret=APP_SECRET, max_body_bytes=100)
    body = encode(single(text("x" * 200)))

    with pytest.raises(PayloadTooLargeError) as caught:
        webhook.parse(body, "sha256=bad")

    assert caught.value.status == 413


def test_declared_content_length_over_the_cap_is_413() -> None:
    webhook = WhatsAppWebhook(app_secret=APP_SECRET, max_body_bytes=1000)
    body = encode(single(text("short")))
    headers = {"Content-Length": "5000000", "X-Hub-Signature-256": sign(body)}

    assert post(webhook, body, headers) == (413, [])


def test_default_cap_is_four_mib_and_accepts_three_mb(webhook: WhatsAppWebhook) -> None:
    body = encode(single(text("a" * 3_000_000)))

    batch = webhook.parse(body, sign(body))

    assert webhook.max_body_bytes == 4 * 1024 * 1024
    assert len(batch.messages[0].text or "") == 3_000_000


def test_truncated_body_with_the_full_body_signature_is_forbidden(
    webhook: WhatsAppWebhook,
) -> None:
    body = encode(single(text("hello")))

    with pytest.raises(SignatureError):
        webhook.parse(body[:-10], sign(body))


@pytest.mark.parametrize(
    "body", [b'{"object": "whatsapp_business_acc', b"not json", b"[1, 2]", b"\xff\xfe{"]
)
def test_signed_body_that_is_not_a_json_object_is_a_bad_request(
    webhook: WhatsAppWebhook, body: bytes
) -> None:
    with pytest.raises(MalformedPayloadError) as caught:
        webhook.parse(body, sign(body))

    assert caught.value.status == 400
    assert post(webhook, body, {"X-Hub-Signature-256": sign(body)}) == (400, [])


def test_deeply_nested_json_is_a_bad_request(webhook: WhatsAppWebhook) -> None:
    body = b"[" * 100_000 + b"]" * 100_000

    with pytest.raises(MalformedPayloadError):
        webhook.parse(body, sign(body))


def test_other_objects_are_ignored_with_200(webhook: WhatsAppWebhook) -> None:
    body = encode({"object": "page", "entry": [{"id": "1", "changes": []}]})

    status_code, delivered = post(webhook, body, {"X-Hub-Signature-256": sign(body)})

    assert status_code == 200
    assert delivered[0].messages == ()
    assert delivered[0].ignored == 1


def test_deliver_failure_answers_500_so_meta_retries(webhook: WhatsAppWebhook) -> None:
    body = encode(single(text("hello")))

    def deliver(batch: WebhookBatch) -> None:
        raise RuntimeError("redis is down")

    answer = webhook.handle_post(body, {"X-Hub-Signature-256": sign(body)}, deliver)

    assert answer.status == 500


def test_non_messages_fields_are_ignored(webhook: WhatsAppWebhook) -> None:
    payload = envelope(
        entry(
            {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
            change(messages=[text("kept")], contacts=[contact(wa_id=PHONE_A)]),
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}},
            {
                "field": "smb_message_echoes",
                "value": {"message_echoes": [text("echo")]},
            },
            # Shaped like a messages change in every way but its field name.
            {
                **change(messages=[text("history", msg_id="wamid.H")]),
                "field": "history",
            },
        )
    )

    batch = parse(webhook, payload)

    assert [m.text for m in batch.messages] == ["kept"]
    assert batch.ignored == 4


def test_every_entry_and_change_is_read_in_order(webhook: WhatsAppWebhook) -> None:
    payload = envelope(
        entry(
            change(
                messages=[text("one", msg_id="wamid.1"), text("two", msg_id="wamid.2")]
            ),
            change(messages=[text("three", msg_id="wamid.3")]),
        ),
        entry(
            change(
                messages=[text("four", msg_id="wamid.4")], number_id=OTHER_NUMBER_ID
            ),
            waba_id="200000000000002",
        ),
    )

    batch = parse(webhook, payload)

    assert [m.text for m in batch.messages] == ["one", "two", "three", "four"]
    assert batch.messages[3].reply_to.phone_number_id == OTHER_NUMBER_ID


def test_contacts_are_matched_by_id_not_by_position(webhook: WhatsAppWebhook) -> None:
    messages = [
        text("from a", msg_id="wamid.A", sender=PHONE_A, user_id=None),
        text("from b", msg_id="wamid.B", sender=PHONE_B, user_id=BSUID_B),
        text("from c", msg_id="wamid.C", sender=None, user_id=BSUID_C),
    ]
    contacts = [
        contact(user_id=BSUID_C, name="Cy Username", username="cy.test"),
        contact(wa_id=PHONE_B, user_id=BSUID_B, name="Bo Example"),
        contact(wa_id=PHONE_A, user_id=BSUID_A, name="Ana Test"),
    ]

    batch = parse(
        webhook, envelope(entry(change(messages=messages, contacts=contacts)))
    )

    names = {m.message_id: m.sender.name for m in batch.messages}
    assert names == {
        "wamid.A": "Ana Test",
        "wamid.B": "Bo Example",
        "wamid.C": "Cy Username",
    }
    assert batch.messages[2].sender.username == "cy.test"
    # The contact carried the BSUID the message lacked: the key uses it.
    assert batch.messages[0].sender.user_id == BSUID_A
    assert batch.messages[0].conversation == f"wa:{NUMBER_ID}:u:{BSUID_A}"


def test_username_only_user_is_keyed_and_answered_by_bsuid(
    webhook: WhatsAppWebhook,
) -> None:
    item = text("hi", sender=None, user_id=BSUID_C)
    payload = envelope(
        entry(change(messages=[item], contacts=[contact(user_id=BSUID_C)]))
    )

    (message_,) = parse(webhook, payload).messages

    assert message_.sender.phone is None
    assert message_.sender.user_id == BSUID_C
    assert message_.conversation == f"wa:{NUMBER_ID}:u:{BSUID_C}"
    assert message_.reply_to.to is None
    assert message_.reply_to.recipient == BSUID_C


def test_phone_only_user_is_keyed_by_digits_and_answered_with_plus(
    webhook: WhatsAppWebhook,
) -> None:
    item = text("hi", sender="+1 (555) 000-0001", user_id=None)

    (message_,) = parse(webhook, envelope(entry(change(messages=[item])))).messages

    assert message_.conversation == f"wa:{NUMBER_ID}:p:{PHONE_A}"
    assert message_.reply_to.to == f"+{PHONE_A}"
    assert message_.sender.phone == f"+{PHONE_A}"


def test_message_without_any_sender_or_id_is_skipped(webhook: WhatsAppWebhook) -> None:
    items: list[Any] = [
        text("no sender", sender=None, user_id=None),
        {"from": PHONE_A, "type": "text", "text": {"body": "no id"}},
        "not an object",
        text("kept"),
    ]

    batch = parse(webhook, envelope(entry(change(messages=items))))

    assert [m.text for m in batch.messages] == ["kept"]
    assert batch.ignored == 3


def test_malformed_structure_does_not_crash(webhook: WhatsAppWebhook) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            "junk",
            {"id": WABA_ID, "changes": "junk"},
            {"id": WABA_ID, "changes": ["junk", {"field": "messages", "value": []}]},
            {
                "id": WABA_ID,
                "changes": [{"field": "messages", "value": {"messages": []}}],
            },
        ],
    }

    batch = parse(webhook, payload)

    assert batch.messages == ()
    assert batch.ignored == 5


def test_group_message_is_keyed_and_answered_by_group(webhook: WhatsAppWebhook) -> None:
    item = text("hello group", group_id="GROUPTEST0001")

    (message_,) = parse(webhook, single(item)).messages

    assert message_.conversation == f"wa:{NUMBER_ID}:g:GROUPTEST0001"
    assert message_.reply_to.group is True
    assert message_.reply_to.to == "GROUPTEST0001"
    assert message_.sender.user_id == BSUID_A


def test_keys_differ_across_business_numbers_and_tenants() -> None:
    first = WhatsAppWebhook(app_secret=APP_SECRET)
    tenant = WhatsAppWebhook(app_secret=APP_SECRET, tenant="acme")
    item = text("same user")

    keys = {
        parse(first, single(item)).messages[0].conversation,
        parse(first, single(item, number_id=OTHER_NUMBER_ID)).messages[0].conversation,
        parse(tenant, single(item)).messages[0].conversation,
    }

    assert keys == {
        f"wa:{NUMBER_ID}:u:{BSUID_A}",
        f"wa:{OTHER_NUMBER_ID}:u:{BSUID_A}",
        f"wa:acme:{NUMBER_ID}:u:{BSUID_A}",
    }


def test_redelivery_gives_the_same_dedupe_id(webhook: WhatsAppWebhook) -> None:
    payload = single(text("hello", msg_id="wamid.REDELIVERED"))

    first = parse(webhook, payload).messages[0].to_push()
    second = parse(webhook, payload).messages[0].to_push()

    assert first == second
    assert first[2] == "wamid.REDELIVERED"


def test_timestamp_is_float_seconds_with_clock_fallback(
    webhook: WhatsAppWebhook,
) -> None:
    items = [text("a", msg_id="wamid.1"), text("b", msg_id="wamid.2", timestamp="soon")]

    batch = parse(webhook, envelope(entry(change(messages=items))))

    assert [m.timestamp for m in batch.messages] == [1760000000.0, 1234.0]


def test_statuses_are_reported_never_as_messages(webhook: WhatsAppWebhook) -> None:
    failure = {
        "code": 131026,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "Message Undeliverable."},
    }
    statuses = [
        status("wamid.OUT1", "sent", biz_opaque_callback_data="batch-7"),
        status("wamid.OUT1", "read", timestamp="1760000009", recipient_user_id=BSUID_A),
        status("wamid.OUT1", "delivered", timestamp="1760000005"),
        status("wamid.OUT2", "failed", errors=[failure]),
        {"status": "sent"},
    ]

    batch = parse(webhook, envelope(entry(change(statuses=statuses))))

    assert batch.messages == ()
    assert [(s.message_id, s.status) for s in batch.statuses] == [
        ("wamid.OUT1", "sent"),
        ("wamid.OUT1", "read"),
        ("wamid.OUT1", "delivered"),
        ("wamid.OUT2", "failed"),
    ]
    assert batch.statuses[0].callback_data == "batch-7"
    assert batch.statuses[1].timestamp == 1760000009.0
    assert batch.statuses[1].recipient_user_id == BSUID_A
    assert batch.statuses[3].errors[0].code == 131026
    assert batch.statuses[3].errors[0].details == "Message Undeliverable."
    assert batch.statuses[0].phone_number_id == NUMBER_ID
    assert batch.ignored == 1


def test_value_errors_are_reported(webhook: WhatsAppWebhook) -> None:
    errors = [
        {
            "code": 130429,
            "title": "Rate limit hit",
            "message": "Rate limit hit",
            "error_data": {"details": "Cloud API message throughput reached"},
        }
    ]

    batch = parse(webhook, envelope(entry(change(errors=errors))))

    (report,) = batch.errors
    assert (report.waba_id, report.phone_number_id) == (WABA_ID, NUMBER_ID)
    assert report.error.code == 130429
    assert batch.messages == ()


def test_a_thousand_messages_in_one_post(webhook: WhatsAppWebhook) -> None:
    users = [f"1555{n:07d}" for n in range(1000)]
    messages = [
        text(f"message {n}", msg_id=f"wamid.N{n:04d}", sender=user, user_id=None)
        for n, user in enumerate(users)
    ]
    contacts = [contact(wa_id=user, name=f"User {n}") for n, user in enumerate(users)]
    body = encode(envelope(entry(change(messages=messages, contacts=contacts[::-1]))))

    started = time.perf_counter()
    batch = webhook.parse(body, sign(body))
    elapsed = time.perf_counter() - started

    assert len(batch.messages) == 1000
    assert len({m.conversation for m in batch.messages}) == 1000
    assert batch.messages[999].sender.name == "User 999"
    assert elapsed < 0.5


def test_unknown_business_number_is_dropped_but_the_post_succeeds() -> None:
    webhook = WhatsAppWebhook(app_secret=APP_SECRET, phone_number_ids=[NUMBER_ID])
    payload = envelope(
        entry(
            change(messages=[text("ours", msg_id="wamid.OK")]),
            change(
                messages=[text("theirs", msg_id="wamid.NO")],
                statuses=[status("wamid.X", "sent")],
                number_id=OTHER_NUMBER_ID,
            ),
        )
    )
    body = encode(payload)

    status_code, delivered = post(webhook, body, {"X-Hub-Signature-256": sign(body)})

    assert status_code == 200
    assert [m.message_id for m in delivered[0].messages] == ["wamid.OK"]
    assert [m.message_id for m in delivered[0].dropped] == ["wamid.NO"]
    assert delivered[0].statuses == ()


def test_push_dict_of_a_parsed_message_is_compact_json(
    webhook: WhatsAppWebhook,
) -> None:
    (message_,) = parse(webhook, single(text("hello"))).messages

    conversation, data, dedupe_id = message_.to_push()

    assert json.loads(json.dumps(data)) == data
    assert "raw" not in data
    assert data["sender"]["name"] == "Ana Test"
    assert data["reply_to"]["to"] == f"+{PHONE_A}"
    assert (conversation, dedupe_id) == (message_.conversation, "wamid.TEST0001")
    assert message_.kind is MessageKind.TEXT
