"""Transport adapters: from chat platforms to rapidfire batches and back.

Inbound, a webhook adapter verifies a request and turns it into
:class:`InboundMessage` values; :meth:`InboundMessage.to_push` gives each one's
``(conversation, message, dedupe_id)`` for the batcher, so one POST is pushed in
one round trip with ``batcher.push_many([m.to_push() for m in batch.messages])``.
Outbound, the worker rebuilds the batch's messages with
:meth:`InboundMessage.from_push` and answers once through a :class:`Sender` (or
:class:`AsyncSender`) with ``message.reply_to``.

Adapters:

- WhatsApp Cloud API: :class:`WhatsAppWebhook`, :class:`WhatsAppSender`,
  :class:`AsyncWhatsAppSender`.
- A Baileys (WhatsApp Web) bridge: :class:`BaileysWebhook`,
  :class:`BaileysSender`, :class:`AsyncBaileysSender`.
- The console, for demos: :class:`ConsoleSender`, :class:`AsyncConsoleSender`.
"""

from __future__ import annotations

from ._baileys import DEFAULT_TOLERANCE, BaileysWebhook
from ._baileys_messages import normalize_jid
from ._baileys_sender import AsyncBaileysSender, BaileysSender
from ._console import AsyncConsoleSender, ConsoleSender
from ._errors import (
    InvalidAddressError,
    MalformedPayloadError,
    PayloadTooLargeError,
    SendError,
    SignatureError,
    TransportConfigError,
    TransportError,
    WebhookError,
)
from ._http import HttpCall, HttpRequest, HttpResponse, urllib_call
from ._keys import baileys_conversation_key, whatsapp_conversation_key
from ._model import (
    PUSH_FORMAT_VERSION,
    Author,
    ErrorDetail,
    InboundMessage,
    MediaRef,
    MessageContext,
    MessageKind,
    Platform,
    ReplyAddress,
)
from ._protocols import AsyncSender, Sender
from ._results import ErrorReport, StatusUpdate, WebhookBatch, WebhookResponse
from ._retry import RetryPolicy
from ._signing import (
    BRIDGE_SIGNATURE_HEADER,
    BRIDGE_TIMESTAMP_HEADER,
    HUB_SIGNATURE_HEADER,
    bridge_signature,
    hub_signature,
    verify_hub_signature,
)
from ._split import WHATSAPP_TEXT_LIMIT, split_text
from ._whatsapp import DEFAULT_MAX_BODY_BYTES, WhatsAppWebhook
from ._whatsapp_sender import (
    GRAPH_API_URL,
    RETRYABLE_ERROR_CODES,
    AsyncWhatsAppSender,
    WhatsAppSender,
)

__all__ = [
    "BRIDGE_SIGNATURE_HEADER",
    "BRIDGE_TIMESTAMP_HEADER",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE",
    "GRAPH_API_URL",
    "HUB_SIGNATURE_HEADER",
    "PUSH_FORMAT_VERSION",
    "RETRYABLE_ERROR_CODES",
    "WHATSAPP_TEXT_LIMIT",
    "AsyncBaileysSender",
    "AsyncConsoleSender",
    "AsyncSender",
    "AsyncWhatsAppSender",
    "Author",
    "BaileysSender",
    "BaileysWebhook",
    "ConsoleSender",
    "ErrorDetail",
    "ErrorReport",
    "HttpCall",
    "HttpRequest",
    "HttpResponse",
    "InboundMessage",
    "InvalidAddressError",
    "MalformedPayloadError",
    "MediaRef",
    "MessageContext",
    "MessageKind",
    "PayloadTooLargeError",
    "Platform",
    "ReplyAddress",
    "RetryPolicy",
    "SendError",
    "Sender",
    "SignatureError",
    "StatusUpdate",
    "TransportConfigError",
    "TransportError",
    "WebhookBatch",
    "WebhookError",
    "WebhookResponse",
    "WhatsAppSender",
    "WhatsAppWebhook",
    "baileys_conversation_key",
    "bridge_signature",
    "hub_signature",
    "normalize_jid",
    "split_text",
    "urllib_call",
    "verify_hub_signature",
    "whatsapp_conversation_key",
]
