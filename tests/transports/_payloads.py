"""Builders for the test payloads, written from the documented shapes.

Every number, id and name here is made up.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rapidfire.transports import bridge_signature, hub_signature

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
BRIDGE_SECRET = "test-bridge-secret"

WABA_ID = "200000000000001"
NUMBER_ID = "100000000000001"
OTHER_NUMBER_ID = "100000000000002"
DISPLAY_NUMBER = "15550009999"

PHONE_A = "15550000001"
PHONE_B = "15550000002"
BSUID_A = "US.TESTUSER0000000001"
BSUID_B = "US.TESTUSER0000000002"
BSUID_C = "US.TESTUSER0000000003"

TS = "1760000000"


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return hub_signature(secret, body)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def envelope(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def entry(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {"id": waba_id, "changes": list(changes)}


def change(
    *,
    messages: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    number_id: str = NUMBER_ID,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": DISPLAY_NUMBER,
            "phone_number_id": number_id,
        },
    }
    for key, items in (
        ("contacts", contacts),
        ("messages", messages),
        ("statuses", statuses),
        ("errors", errors),
    ):
        if items is not None:
            value[key] = items
    return {"field": "messages", "value": value}


def contact(
    *,
    wa_id: str | None = None,
    user_id: str | None = None,
    name: str = "Ana Test",
    username: str | None = None,
) -> dict[str, Any]:
    profile: dict[str, Any] = {"name": name}
    if username is not None:
        profile["username"] = username
    item: dict[str, Any] = {"profile": profile}
    if wa_id is not None:
        item["wa_id"] = wa_id
    if user_id is not None:
        item["user_id"] = user_id
    return item


def message(
    msg_type: str,
    body: Any = None,
    *,
    msg_id: str = "wamid.TEST0001",
    sender: str | None = PHONE_A,
    user_id: str | None = BSUID_A,
    timestamp: str = TS,
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": msg_id, "timestamp": timestamp, "type": msg_type}
    if sender is not None:
        item["from"] = sender
    if user_id is not None:
        item["from_user_id"] = user_id
    if body is not None:
        item[msg_type] = body
    item.update(extra)
    return item


def text(body: str, **kwargs: Any) -> dict[str, Any]:
    return message("text", {"body": body}, **kwargs)


def single(item: dict[str, Any], **change_kwargs: Any) -> dict[str, Any]:
    """One message with a matching contact, in a full envelope."""
    contacts = [contact(wa_id=item.get("from"), user_id=item.get("from_user_id"))]
    return envelope(entry(change(messages=[item], contacts=contacts, **change_kwargs)))


def status(
    wamid: str, state: str, *, timestamp: str = TS, **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": state,
        "timestamp": timestamp,
        "recipient_id": PHONE_A,
    }
    item.update(extra)
    return item


def graph_error(code: int, message: str = "(#0) test error") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "test"},
            "fbtrace_id": "TESTTRACE",
        }
    }


# Baileys


def wa_message(
    content: dict[str, Any] | None,
    *,
    remote_jid: str = f"{PHONE_A}@s.whatsapp.net",
    msg_id: str = "3EB0TEST0001",
    from_me: bool = False,
    participant: str | None = None,
    timestamp: Any = 1760000000,
    push_name: str | None = "Ana Test",
    **key_extra: Any,
) -> dict[str, Any]:
    key: dict[str, Any] = {"remoteJid": remote_jid, "fromMe": from_me, "id": msg_id}
    if participant is not None:
        key["participant"] = participant
    key.update(key_extra)
    item: dict[str, Any] = {"key": key, "messageTimestamp": timestamp}
    if content is not None:
        item["message"] = content
    if push_name is not None:
        item["pushName"] = push_name
    return item


def upsert(*items: dict[str, Any], kind: str = "notify") -> dict[str, Any]:
    return {"type": kind, "messages": list(items)}


def bridge_headers(
    body: bytes, *, now: float | None = None, secret: str = BRIDGE_SECRET
) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {
        "X-Rapidfire-Timestamp": timestamp,
        "X-Rapidfire-Signature": bridge_signature(secret, timestamp, body),
    }
