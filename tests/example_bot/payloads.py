"""WhatsApp Cloud API webhook bodies, written from the documented shapes.

:func:`raw` encodes a payload the way Meta puts it on the wire: ASCII only,
non-ASCII as ``\\uXXXX`` escapes and ``/`` as ``\\/``. The signature must be
computed over exactly those bytes; :func:`sign` does it with ``hmac`` directly,
independently of rapidfire's own signing code.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any

NUMBER_ID = "100000000000009"
DISPLAY_NUMBER = "15550009999"
WABA_ID = "200000000000009"
TIMESTAMP = "1760000000"

_ids = itertools.count(1)


def new_id() -> str:
    """A fresh made-up wamid."""
    return f"wamid.E2E{next(_ids):06d}"


def raw(payload: dict[str, Any]) -> bytes:
    """The payload as Meta sends it: escaped unicode and escaped slashes."""
    return json.dumps(payload, ensure_ascii=True).replace("/", "\\/").encode("ascii")


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text(
    body: str,
    *,
    phone: str | None,
    user_id: str | None = None,
    msg_id: str | None = None,
) -> dict[str, Any]:
    """One ``messages[]`` item of type text."""
    item: dict[str, Any] = {
        "id": msg_id or new_id(),
        "timestamp": TIMESTAMP,
        "type": "text",
        "text": {"body": body},
    }
    if phone is not None:
        item["from"] = phone

    if user_id is not None:
        item["from_user_id"] = user_id

    return item


def item(kind: str, body: dict[str, Any], *, phone: str) -> dict[str, Any]:
    """One ``messages[]`` item of any other type."""
    return {
        "id": new_id(),
        "from": phone,
        "timestamp": TIMESTAMP,
        "type": kind,
        kind: body,
    }


def contact(*, phone: str | None, user_id: str | None = None) -> dict[str, Any]:
    """The ``contacts[]`` entry of a sender."""
    entry: dict[str, Any] = {"profile": {"name": "Test User"}}
    if phone is not None:
        entry["wa_id"] = phone

    if user_id is not None:
        entry["user_id"] = user_id

    return entry


def webhook(
    *,
    messages: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    number_id: str = NUMBER_ID,
) -> dict[str, Any]:
    """A full webhook body with one entry and one ``messages`` change."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": DISPLAY_NUMBER,
            "phone_number_id": number_id,
        },
    }
    if contacts is not None:
        value["contacts"] = contacts

    if messages is not None:
        value["messages"] = messages

    if statuses is not None:
        value["statuses"] = statuses

    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }


def from_user(message: dict[str, Any]) -> dict[str, Any]:
    """A webhook carrying one message and its sender's contact entry."""
    sender = contact(phone=message.get("from"), user_id=message.get("from_user_id"))
    return webhook(messages=[message], contacts=[sender])


def status(wamid: str, state: str, *, recipient: str) -> dict[str, Any]:
    """One ``statuses[]`` item about a reply the bot sent."""
    return {
        "id": wamid,
        "status": state,
        "timestamp": TIMESTAMP,
        "recipient_id": recipient,
        "biz_opaque_callback_data": "batch-id",
    }
