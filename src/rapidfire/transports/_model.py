"""The platform-neutral model of one inbound chat message.

Adapters turn a platform's webhook item into an :class:`InboundMessage`. The
webhook side hands it to the batcher with :meth:`InboundMessage.to_push`; the
worker side rebuilds a light view with :meth:`InboundMessage.from_push` and
answers through a sender with :attr:`InboundMessage.reply_to`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ._errors import InvalidAddressError, MalformedPayloadError
from ._redact import mask

__all__ = [
    "PUSH_FORMAT_VERSION",
    "Author",
    "ErrorDetail",
    "InboundMessage",
    "MediaRef",
    "MessageContext",
    "MessageKind",
    "Platform",
    "ReplyAddress",
]

Platform = Literal["whatsapp", "baileys"]
"""``"whatsapp"`` for the Cloud API, ``"baileys"`` for a WhatsApp Web bridge."""

PUSH_FORMAT_VERSION = 1
"""Value of the ``"v"`` key in every dict made by :meth:`InboundMessage.to_push`."""

_PLATFORMS: frozenset[str] = frozenset({"whatsapp", "baileys"})


class MessageKind(str, enum.Enum):
    """What an inbound message holds, named the same way on every platform."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    ORDER = "order"
    SYSTEM = "system"
    REQUEST_WELCOME = "request_welcome"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str) -> MessageKind:
        """Return the kind named ``value``, or :attr:`UNKNOWN` for a new name."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, repr=False)
class Author:
    """Who sent a message, as far as the platform tells.

    Attributes:
        phone: Phone number in E.164 form with a leading ``+``, when known.
        user_id: A user id that is not a phone number: the Cloud API's
            business-scoped user id (BSUID) or a Baileys LID JID.
        name: The display name the user chose. Untrusted, may be anything.
        username: The WhatsApp username, when the platform sends it.
        jid: For Baileys, the sender's normalized JID (the participant in a group).
    """

    phone: str | None = None
    user_id: str | None = None
    name: str | None = None
    username: str | None = None
    jid: str | None = None

    def __repr__(self) -> str:
        return (
            f"Author(phone={mask(self.phone)!r}, user_id={mask(self.user_id)!r}, "
            f"jid={mask(self.jid)!r})"
        )


@dataclass(frozen=True, repr=False)
class ReplyAddress:
    """Everything a sender needs to answer in the same conversation.

    For the Cloud API: the business number to send from (``phone_number_id``)
    and either ``to`` (a phone number with ``+``, or a group id when ``group``
    is set) or ``recipient`` (a BSUID). When both ``to`` and ``recipient`` are
    known the sender uses ``to``. For Baileys: the chat ``jid`` and the linked
    ``account`` it arrived on, if the bridge serves several.

    Raises:
        InvalidAddressError: When the fields required by ``platform`` are missing.
    """

    platform: Platform
    phone_number_id: str | None = None
    to: str | None = None
    recipient: str | None = None
    group: bool = False
    jid: str | None = None
    account: str | None = None

    def __post_init__(self) -> None:
        if self.platform == "whatsapp":
            if not self.phone_number_id:
                raise InvalidAddressError("a WhatsApp address needs phone_number_id")
            if not (self.to or self.recipient):
                raise InvalidAddressError("a WhatsApp address needs to or recipient")
            if self.group and not self.to:
                raise InvalidAddressError("a WhatsApp group address needs to")
        elif self.platform == "baileys":
            if not self.jid:
                raise InvalidAddressError("a Baileys address needs jid")
        else:
            raise InvalidAddressError(f"unknown platform {self.platform!r}")

    def __repr__(self) -> str:
        return f"ReplyAddress({self.describe()})"

    def describe(self) -> str:
        """Return a short, masked description that is safe to log."""
        if self.platform == "whatsapp":
            target = self.to or self.recipient
            kind = "group" if self.group else ("to" if self.to else "recipient")
            return f"whatsapp from={mask(self.phone_number_id)} {kind}={mask(target)}"
        return f"baileys jid={mask(self.jid)} account={self.account or '-'}"

    def to_dict(self) -> dict[str, Any]:
        """Return the address as a compact JSON-ready dict (unset fields left out)."""
        data: dict[str, Any] = {"platform": self.platform}
        for name in ("phone_number_id", "to", "recipient", "jid", "account"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.group:
            data["group"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplyAddress:
        """Rebuild an address from :meth:`to_dict` output.

        Raises:
            MalformedPayloadError: When a field has the wrong type.
            InvalidAddressError: When required fields are missing.
        """
        platform = data.get("platform")
        if platform not in _PLATFORMS:
            raise InvalidAddressError(f"unknown platform {platform!r}")
        return cls(
            platform=cast(Platform, platform),
            phone_number_id=_opt_str(data, "phone_number_id"),
            to=_opt_str(data, "to"),
            recipient=_opt_str(data, "recipient"),
            group=_bool(data, "group"),
            jid=_opt_str(data, "jid"),
            account=_opt_str(data, "account"),
        )


@dataclass(frozen=True)
class MediaRef:
    """A reference to media attached to a message; the bytes are not fetched.

    Attributes:
        id: The platform's media id (Cloud API), or None.
        mime_type: The MIME type the platform reported.
        url: A download URL when the platform gave one. For the Cloud API it is
            fetched with the access token; for Baileys it is encrypted and only
            usable by the bridge.
        filename: The file name of a document.
        caption: The caption the user wrote.
        sha256: The checksum the platform reported, as given.
        voice: True for a voice note.
    """

    id: str | None = None
    mime_type: str | None = None
    url: str | None = field(default=None, repr=False)
    filename: str | None = field(default=None, repr=False)
    caption: str | None = field(default=None, repr=False)
    sha256: str | None = None
    voice: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the reference as a compact JSON-ready dict."""
        data: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("id", "mime_type", "url", "filename", "caption", "sha256")
            if getattr(self, name) is not None
        }
        if self.voice:
            data["voice"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MediaRef:
        """Rebuild a reference from :meth:`to_dict` output."""
        return cls(
            id=_opt_str(data, "id"),
            mime_type=_opt_str(data, "mime_type"),
            url=_opt_str(data, "url"),
            filename=_opt_str(data, "filename"),
            caption=_opt_str(data, "caption"),
            sha256=_opt_str(data, "sha256"),
            voice=_bool(data, "voice"),
        )


@dataclass(frozen=True)
class MessageContext:
    """What a message refers to: a quoted message, a reacted-to one, a forward.

    Attributes:
        quoted_message_id: Id of the message this one replies or reacts to.
        quoted_sender: Who sent the quoted message (a phone number, business
            number or JID, as the platform gives it).
        forwarded: The user forwarded this message.
        frequently_forwarded: It has been forwarded many times (Cloud API only).
    """

    quoted_message_id: str | None = None
    quoted_sender: str | None = field(default=None, repr=False)
    forwarded: bool = False
    frequently_forwarded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the context as a compact JSON-ready dict."""
        data: dict[str, Any] = {}
        if self.quoted_message_id is not None:
            data["quoted_message_id"] = self.quoted_message_id
        if self.quoted_sender is not None:
            data["quoted_sender"] = self.quoted_sender
        if self.forwarded:
            data["forwarded"] = True
        if self.frequently_forwarded:
            data["frequently_forwarded"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MessageContext:
        """Rebuild a context from :meth:`to_dict` output."""
        return cls(
            quoted_message_id=_opt_str(data, "quoted_message_id"),
            quoted_sender=_opt_str(data, "quoted_sender"),
            forwarded=_bool(data, "forwarded"),
            frequently_forwarded=_bool(data, "frequently_forwarded"),
        )


@dataclass(frozen=True)
class ErrorDetail:
    """One error object as the platform reports it.

    Meta asks that decisions rest on ``code`` and ``details``; titles are
    informative only.
    """

    code: int | None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> ErrorDetail:
        """Read an error object leniently; fields of the wrong type become None."""
        if not isinstance(obj, Mapping):
            return cls(code=None)
        code = obj.get("code")
        error_data = obj.get("error_data")
        details = None
        if isinstance(error_data, Mapping):
            details = _str_or_none(error_data.get("details"))
        return cls(
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            title=_str_or_none(obj.get("title")),
            message=_str_or_none(obj.get("message")),
            details=details,
            href=_str_or_none(obj.get("href")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the error as a compact JSON-ready dict."""
        return {
            name: getattr(self, name)
            for name in ("code", "title", "message", "details", "href")
            if getattr(self, name) is not None
        }


@dataclass(frozen=True, repr=False)
class InboundMessage:
    """One inbound message, normalized from any platform.

    Attributes:
        platform: Which adapter produced it.
        conversation: The batching key. Built by the adapter so that it cannot
            collide across business numbers, linked accounts or tenants.
        message_id: The platform's message id.
        sender: Who wrote the message.
        timestamp: When it was sent, in Unix seconds.
        kind: What the message holds.
        text: The text a bot can read: the body, a caption, a file name, a
            button title, or a short rendering (location, contacts). None when
            there is nothing to read (a sticker, a voice note, a removed reaction).
        reply_to: Where an answer goes.
        platform_type: The type as the platform spells it (``"text"``,
            ``"imageMessage"``, ``"request_welcome"``...), kept for new types.
        media: The attached media, if any.
        context: The quoted, reacted-to or forwarded context, if any.
        payload: Machine-readable detail: the id of a tapped button or list row,
            the payload of a template button, or the subtype of a system or
            unsupported message.
        errors: The errors attached to an unsupported message.
        raw: The platform's item as received. Not part of equality, and left out
            of :meth:`to_push` unless asked for.
    """

    platform: Platform
    conversation: str
    message_id: str
    sender: Author
    timestamp: float
    kind: MessageKind
    text: str | None
    reply_to: ReplyAddress
    platform_type: str
    media: MediaRef | None = None
    context: MessageContext | None = None
    payload: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return (
            f"InboundMessage(platform={self.platform!r}, "
            f"conversation={mask(self.conversation)!r}, "
            f"message_id={self.message_id!r}, kind={self.kind.value!r}, "
            f"timestamp={self.timestamp!r}, sender={self.sender!r})"
        )

    @property
    def dedupe_id(self) -> str:
        """The id under which redeliveries of this message are recognised.

        The Cloud API's wamid is used as is. A Baileys id is unique only within
        a chat, so it is prefixed by the conversation key (which holds the chat
        JID and the account).
        """
        if self.platform == "baileys":
            return f"{self.conversation}/{self.message_id}"
        return self.message_id

    def to_push(self, *, include_raw: bool = False) -> tuple[str, dict[str, Any], str]:
        """Return ``(conversation, message, dedupe_id)`` for the batcher.

        The tuple is the item shape ``Batcher.push_many`` takes; for one
        message, ``batcher.push(conversation, message, dedupe_id=dedupe_id)``.

        Args:
            include_raw: Also store the platform's raw item under ``"raw"``.
                Off by default: it is large and holds personal data.

        Returns:
            The conversation key, a compact JSON-ready dict, and the dedupe id.
        """
        sender = {
            name: getattr(self.sender, name)
            for name in ("name", "phone", "user_id", "username", "jid")
            if getattr(self.sender, name) is not None
        }
        message: dict[str, Any] = {
            "v": PUSH_FORMAT_VERSION,
            "platform": self.platform,
            "conversation": self.conversation,
            "id": self.message_id,
            "kind": self.kind.value,
            "type": self.platform_type,
            "ts": self.timestamp,
            "text": self.text,
            "sender": sender,
            "reply_to": self.reply_to.to_dict(),
        }
        if self.media is not None:
            message["media"] = self.media.to_dict()
        if self.context is not None:
            message["context"] = self.context.to_dict()
        if self.payload is not None:
            message["payload"] = self.payload
        if self.errors:
            message["errors"] = [error.to_dict() for error in self.errors]
        if include_raw:
            message["raw"] = dict(self.raw)
        return self.conversation, message, self.dedupe_id

    @classmethod
    def from_push(cls, data: Mapping[str, Any]) -> InboundMessage:
        """Rebuild a message from the dict made by :meth:`to_push`.

        Everything but ``raw`` comes back equal; ``raw`` is empty unless the
        dict was made with ``include_raw=True``. An unknown ``kind`` becomes
        :attr:`MessageKind.UNKNOWN`.

        Raises:
            MalformedPayloadError: When a field is missing or has the wrong type.
            InvalidAddressError: When ``reply_to`` is incomplete.
        """
        if data.get("v") != PUSH_FORMAT_VERSION:
            raise MalformedPayloadError(f"unsupported push format {data.get('v')!r}")
        platform = data.get("platform")
        if platform not in _PLATFORMS:
            raise MalformedPayloadError(f"unknown platform {platform!r}")
        timestamp = data.get("ts")
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
            raise MalformedPayloadError("ts must be a number")
        sender = _mapping(data, "sender") or {}
        media = _mapping(data, "media")
        context = _mapping(data, "context")
        errors = data.get("errors", [])
        if not isinstance(errors, list):
            raise MalformedPayloadError("errors must be a list")
        raw = _mapping(data, "raw") or {}
        return cls(
            platform=cast(Platform, platform),
            conversation=_req_str(data, "conversation"),
            message_id=_req_str(data, "id"),
            sender=Author(
                phone=_opt_str(sender, "phone"),
                user_id=_opt_str(sender, "user_id"),
                name=_opt_str(sender, "name"),
                username=_opt_str(sender, "username"),
                jid=_opt_str(sender, "jid"),
            ),
            timestamp=float(timestamp),
            kind=MessageKind.parse(_req_str(data, "kind")),
            text=_opt_str(data, "text"),
            reply_to=ReplyAddress.from_dict(_mapping(data, "reply_to") or {}),
            platform_type=_req_str(data, "type"),
            media=MediaRef.from_dict(media) if media is not None else None,
            context=MessageContext.from_dict(context) if context is not None else None,
            payload=_opt_str(data, "payload"),
            errors=tuple(ErrorDetail.from_json(error) for error in errors),
            raw=dict(raw),
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedPayloadError(f"{key} must be a string")


def _req_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise MalformedPayloadError(f"{key} must be a string")
    return value


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise MalformedPayloadError(f"{key} must be a boolean")
    return value


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    raise MalformedPayloadError(f"{key} must be an object")
