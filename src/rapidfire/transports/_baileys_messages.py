"""Normalizing the ``WAMessage`` items of a Baileys ``messages.upsert`` event.

The bridge forwards Baileys' JSON as is; this module owns every rule that
turns it into :class:`InboundMessage` values: JID normalization, the filters
(own messages, broadcasts, channels, stubs), wrapper unwrapping, timestamps in
their three serialized forms, and text extraction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._keys import baileys_conversation_key
from ._model import (
    Author,
    InboundMessage,
    MediaRef,
    MessageContext,
    MessageKind,
    ReplyAddress,
)
from ._reading import render_location, text_of

__all__ = [
    "content_type",
    "normalize_jid",
    "parse_item",
    "parse_long_timestamp",
    "unwrap",
]

_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
_MAX_WRAPPER_DEPTH = 6
_SKIPPED_SERVERS = frozenset({"broadcast", "newsletter"})
_SKIPPED_CONTENT = frozenset({"protocolMessage"})
_NOT_CONTENT = frozenset({"senderKeyDistributionMessage", "messageContextInfo"})
_PHONE_SERVER = "s.whatsapp.net"
_LID_SERVER = "lid"
_GROUP_SERVER = "g.us"
_MEDIA = {
    "imageMessage": MessageKind.IMAGE,
    "videoMessage": MessageKind.VIDEO,
    "audioMessage": MessageKind.AUDIO,
    "documentMessage": MessageKind.DOCUMENT,
    "stickerMessage": MessageKind.STICKER,
}


def normalize_jid(jid: object) -> str | None:
    """Return ``jid`` as ``user@server``, without agent or device suffix.

    ``15550000001:3@s.whatsapp.net`` becomes ``15550000001@s.whatsapp.net``
    and the legacy ``@c.us`` server becomes ``@s.whatsapp.net``. None when
    ``jid`` is not a string of that shape.
    """
    if not isinstance(jid, str) or jid.count("@") != 1:
        return None
    user, server = jid.split("@")
    server = server.strip().lower()
    if server == "c.us":
        server = _PHONE_SERVER
    user = user.strip().split(":", 1)[0]
    if server in (_PHONE_SERVER, _LID_SERVER):
        user = user.split("_", 1)[0]
    if not user or not server:
        return None
    return f"{user}@{server}"


def _server(jid: str) -> str:
    return jid.rsplit("@", 1)[1]


def unwrap(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """Peel the wrapper types (ephemeral, view-once, edited...) off a message."""
    for _ in range(_MAX_WRAPPER_DEPTH):
        for wrapper in _WRAPPERS:
            inner = message.get(wrapper)
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), Mapping):
                message = inner["message"]
                break
        else:
            return message
    return message


def content_type(message: Mapping[str, Any]) -> str | None:
    """Return the key of the message's content (``conversation``, ``*Message``)."""
    for key, value in message.items():
        if value is None or key in _NOT_CONTENT:
            continue
        if key == "conversation" or "Message" in key:
            return key
    return None


def parse_long_timestamp(value: object) -> float | None:
    """Read ``messageTimestamp``: a number, a numeric string or a protobuf Long.

    A Long is ``{"low": int, "high": int, "unsigned": bool}`` with 32-bit
    halves, the low half possibly written as a signed number.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    if isinstance(value, Mapping):
        low, high = value.get("low"), value.get("high")
        if not isinstance(low, int) or not isinstance(high, int):
            return None
        if isinstance(low, bool) or isinstance(high, bool):
            return None
        high &= 0xFFFFFFFF
        if value.get("unsigned") is not True and high >= 0x80000000:
            high -= 1 << 32
        return float((high << 32) + (low & 0xFFFFFFFF))
    return None


def parse_item(
    item: Mapping[str, Any],
    *,
    account: str | None,
    include_groups: bool,
    clock: Callable[[], float],
) -> InboundMessage | None:
    """Normalize one ``WAMessage``; None when a filter drops it."""
    key = item.get("key")
    if not isinstance(key, Mapping) or key.get("fromMe") is True:
        return None
    chat = normalize_jid(key.get("remoteJid"))
    message_id = text_of(key, "id")
    if chat is None or message_id is None or _server(chat) in _SKIPPED_SERVERS:
        return None
    is_group = _server(chat) == _GROUP_SERVER
    message = item.get("message")
    if (is_group and not include_groups) or not isinstance(message, Mapping):
        return None
    message = unwrap(message)
    ctype = content_type(message)
    if ctype is None or ctype in _SKIPPED_CONTENT:
        return None

    kind, text, media, payload = _read_content(message, ctype)
    body = message.get(ctype)
    context = _read_context(body)
    if kind is MessageKind.REACTION:
        target = text_of(body.get("key") if isinstance(body, Mapping) else None, "id")
        context = MessageContext(quoted_message_id=target)
    timestamp = parse_long_timestamp(item.get("messageTimestamp"))
    return InboundMessage(
        platform="baileys",
        conversation=baileys_conversation_key(chat, account=account),
        message_id=message_id,
        sender=_author(item, key, chat, is_group),
        timestamp=clock() if timestamp is None else timestamp,
        kind=kind,
        text=text,
        reply_to=ReplyAddress(platform="baileys", jid=chat, account=account),
        platform_type=ctype,
        media=media,
        context=context,
        payload=payload,
        raw=item,
    )


def _author(
    item: Mapping[str, Any], key: Mapping[str, Any], chat: str, is_group: bool
) -> Author:
    if is_group:
        sender = normalize_jid(key.get("participant"))
        alternates = ("participantAlt", "participantPn")
        username = text_of(key, "participantUsername")
    else:
        sender = chat
        alternates = ("remoteJidAlt", "senderPn")
        username = text_of(key, "remoteJidUsername")
    jids = [sender, *(normalize_jid(key.get(name)) for name in alternates)]
    known = [jid for jid in jids if jid is not None]
    phone = next((j for j in known if _server(j) == _PHONE_SERVER), None)
    lid = next((j for j in known if _server(j) == _LID_SERVER), None)
    return Author(
        phone="+" + phone.split("@")[0] if phone else None,
        user_id=lid,
        name=text_of(item, "pushName"),
        username=username,
        jid=sender,
    )


_Content = tuple[MessageKind, str | None, MediaRef | None, str | None]


def _read_content(message: Mapping[str, Any], ctype: str) -> _Content:
    """Return (kind, text, media, payload) for the content under ``ctype``."""
    body = message.get(ctype)
    if ctype == "conversation":
        return (
            MessageKind.TEXT,
            body if isinstance(body, str) and body else None,
            None,
            None,
        )
    if not isinstance(body, Mapping):
        return MessageKind.UNKNOWN, None, None, None
    if ctype == "extendedTextMessage":
        return MessageKind.TEXT, text_of(body, "text"), None, None
    if ctype in _MEDIA:
        media = MediaRef(
            mime_type=text_of(body, "mimetype"),
            url=text_of(body, "url"),
            filename=text_of(body, "fileName"),
            caption=text_of(body, "caption"),
            voice=body.get("ptt") is True,
        )
        text = media.caption
        if ctype == "documentMessage":
            text = text or media.filename
        return _MEDIA[ctype], text, media, None
    if ctype in ("locationMessage", "liveLocationMessage"):
        location = render_location(
            body.get("degreesLatitude"),
            body.get("degreesLongitude"),
            text_of(body, "name"),
            text_of(body, "address"),
        )
        return MessageKind.LOCATION, location, None, None
    if ctype == "contactMessage":
        return MessageKind.CONTACTS, text_of(body, "displayName"), None, None
    if ctype == "contactsArrayMessage":
        cards = body.get("contacts")
        names = [
            text_of(c, "displayName") for c in cards or [] if isinstance(c, Mapping)
        ]
        text = "; ".join(name for name in names if name) or text_of(body, "displayName")
        return MessageKind.CONTACTS, text, None, None
    if ctype == "buttonsResponseMessage":
        text = text_of(body, "selectedDisplayText")
        return MessageKind.INTERACTIVE, text, None, text_of(body, "selectedButtonId")
    if ctype == "listResponseMessage":
        row = body.get("singleSelectReply")
        payload = text_of(row, "selectedRowId")
        return MessageKind.INTERACTIVE, text_of(body, "title"), None, payload
    if ctype == "templateButtonReplyMessage":
        text = text_of(body, "selectedDisplayText")
        return MessageKind.BUTTON, text, None, text_of(body, "selectedId")
    if ctype == "reactionMessage":
        return MessageKind.REACTION, text_of(body, "text"), None, None
    text = text_of(body, "text") or text_of(body, "caption") or text_of(body, "name")
    return MessageKind.UNKNOWN, text, None, None


def _read_context(body: object) -> MessageContext | None:
    info = body.get("contextInfo") if isinstance(body, Mapping) else None
    if not isinstance(info, Mapping):
        return None
    quoted = text_of(info, "stanzaId")
    forwarded = info.get("isForwarded") is True
    if quoted is None and not forwarded:
        return None
    return MessageContext(
        quoted_message_id=quoted,
        quoted_sender=text_of(info, "participant"),
        forwarded=forwarded,
    )
