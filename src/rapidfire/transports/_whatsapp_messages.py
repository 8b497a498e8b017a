"""Normalizing the items of a Cloud API ``messages`` webhook value.

Matching a message to its ``contacts[]`` entry (by id, never by position),
choosing the sender's identity and reply address, and reading each message
type's body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._keys import whatsapp_conversation_key
from ._model import (
    Author,
    ErrorDetail,
    InboundMessage,
    MediaRef,
    MessageContext,
    MessageKind,
    ReplyAddress,
)
from ._reading import digits, list_of, mapping_of, render_location, text_of

__all__ = [
    "ContactIndex",
    "parse_message",
    "parse_timestamp",
]

_MEDIA_KINDS = {
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "audio": MessageKind.AUDIO,
    "document": MessageKind.DOCUMENT,
    "sticker": MessageKind.STICKER,
}
_GENERIC_TEXT_FIELDS = ("body", "text", "caption", "title")


@dataclass(frozen=True)
class ContactIndex:
    """The ``contacts[]`` of one webhook value, looked up by id, never by position."""

    by_user_id: Mapping[str, Mapping[str, Any]]
    by_phone: Mapping[str, Mapping[str, Any]]

    @classmethod
    def build(cls, contacts: object) -> ContactIndex:
        """Index a ``contacts[]`` array by ``user_id`` and by ``wa_id`` digits."""
        by_user_id: dict[str, Mapping[str, Any]] = {}
        by_phone: dict[str, Mapping[str, Any]] = {}
        for contact in contacts if isinstance(contacts, list) else []:
            if not isinstance(contact, Mapping):
                continue
            user_id = text_of(contact, "user_id")
            if user_id is not None:
                by_user_id.setdefault(user_id, contact)
            phone = digits(contact.get("wa_id"))
            if phone is not None:
                by_phone.setdefault(phone, contact)
        return cls(by_user_id=by_user_id, by_phone=by_phone)

    def find(self, user_id: str | None, phone: str | None) -> Mapping[str, Any]:
        """Return the contact for a BSUID or phone digits, or an empty mapping."""
        if user_id is not None and user_id in self.by_user_id:
            return self.by_user_id[user_id]
        if phone is not None and phone in self.by_phone:
            return self.by_phone[phone]
        return {}


def parse_message(
    item: Mapping[str, Any],
    *,
    phone_number_id: str,
    contacts: ContactIndex,
    tenant: str | None,
    clock: Callable[[], float],
) -> InboundMessage | None:
    """Normalize one ``messages[]`` item; None when it has no id or no sender."""
    message_id = text_of(item, "id")
    phone = digits(item.get("from"))
    user_id = text_of(item, "from_user_id")
    group_id = text_of(item, "group_id")
    contact = contacts.find(user_id, phone)
    phone = phone or digits(contact.get("wa_id"))
    user_id = user_id or text_of(contact, "user_id")
    if message_id is None or not (phone or user_id):
        return None

    profile = mapping_of(contact, "profile")
    platform_type = text_of(item, "type") or "unknown"
    kind, text, media, payload = _read_body(item, platform_type)
    context = _read_context(item)
    if kind is MessageKind.REACTION:
        target = text_of(mapping_of(item, "reaction"), "message_id")
        context = MessageContext(quoted_message_id=target)
    errors: tuple[ErrorDetail, ...] = ()
    if kind is MessageKind.UNSUPPORTED:
        errors = tuple(ErrorDetail.from_json(e) for e in list_of(item, "errors"))

    e164 = f"+{phone}" if phone else None
    reply_to = ReplyAddress(
        platform="whatsapp",
        phone_number_id=phone_number_id,
        to=group_id or e164,
        recipient=None if group_id else user_id,
        group=group_id is not None,
    )
    return InboundMessage(
        platform="whatsapp",
        conversation=whatsapp_conversation_key(
            phone_number_id,
            group_id=group_id,
            user_id=user_id,
            phone=phone,
            tenant=tenant,
        ),
        message_id=message_id,
        sender=Author(
            phone=e164,
            user_id=user_id,
            name=text_of(profile, "name"),
            username=text_of(profile, "username"),
        ),
        timestamp=parse_timestamp(item.get("timestamp"), clock),
        kind=kind,
        text=text,
        reply_to=reply_to,
        platform_type=platform_type,
        media=media,
        context=context,
        payload=payload,
        errors=errors,
        raw=item,
    )


def parse_timestamp(value: object, clock: Callable[[], float]) -> float:
    """Read a Cloud API timestamp (seconds as a string); ``clock()`` if unreadable."""
    if isinstance(value, str) and value.strip().isdigit():
        return float(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return clock()


def _read_context(item: Mapping[str, Any]) -> MessageContext | None:
    context = item.get("context")
    if not isinstance(context, Mapping):
        return None
    return MessageContext(
        quoted_message_id=text_of(context, "id"),
        quoted_sender=text_of(context, "from"),
        forwarded=context.get("forwarded") is True,
        frequently_forwarded=context.get("frequently_forwarded") is True,
    )


_Body = tuple[MessageKind, str | None, MediaRef | None, str | None]


def _read_body(item: Mapping[str, Any], platform_type: str) -> _Body:
    """Return (kind, text, media, payload) for the item's type."""
    body = mapping_of(item, platform_type)
    if platform_type == "text":
        return MessageKind.TEXT, text_of(body, "body"), None, None
    if platform_type in _MEDIA_KINDS:
        media = MediaRef(
            id=text_of(body, "id"),
            mime_type=text_of(body, "mime_type"),
            url=text_of(body, "url"),
            filename=text_of(body, "filename"),
            caption=text_of(body, "caption"),
            sha256=text_of(body, "sha256"),
            voice=body.get("voice") is True,
        )
        text = media.caption
        if platform_type == "document":
            text = text or media.filename
        return _MEDIA_KINDS[platform_type], text, media, None
    if platform_type == "location":
        location = render_location(
            body.get("latitude"),
            body.get("longitude"),
            text_of(body, "name"),
            text_of(body, "address"),
        )
        return MessageKind.LOCATION, location, None, None
    if platform_type == "contacts":
        return MessageKind.CONTACTS, _render_contacts(item), None, None
    if platform_type == "interactive":
        reply = mapping_of(body, text_of(body, "type") or "")
        text = text_of(reply, "title") or text_of(reply, "body")
        payload = text_of(reply, "id") or text_of(reply, "response_json")
        return MessageKind.INTERACTIVE, text, None, payload
    if platform_type == "button":
        return MessageKind.BUTTON, text_of(body, "text"), None, text_of(body, "payload")
    if platform_type == "reaction":
        return MessageKind.REACTION, text_of(body, "emoji"), None, None
    if platform_type == "unsupported":
        return MessageKind.UNSUPPORTED, None, None, text_of(body, "type")
    if platform_type == "system":
        return MessageKind.SYSTEM, text_of(body, "body"), None, text_of(body, "type")
    if platform_type == "order":
        return MessageKind.ORDER, text_of(body, "text"), None, None
    if platform_type == "request_welcome":
        return MessageKind.REQUEST_WELCOME, None, None, None
    return MessageKind.UNKNOWN, _generic_text(body), None, None


def _generic_text(body: Mapping[str, Any]) -> str | None:
    for name in _GENERIC_TEXT_FIELDS:
        value = text_of(body, name)
        if value is not None:
            return value
    return None


def _render_contacts(item: Mapping[str, Any]) -> str | None:
    cards = []
    for card in list_of(item, "contacts"):
        name = text_of(mapping_of(card, "name"), "formatted_name")
        phones = [text_of(p, "phone") for p in list_of(card, "phones")]
        phone = next((p for p in phones if p), None)
        if name and phone:
            cards.append(f"{name} ({phone})")
        elif name or phone:
            cards.append(name or phone or "")
    return "; ".join(cards) or None
