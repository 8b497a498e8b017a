"""What a webhook adapter returns: parsed batches and HTTP answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._model import ErrorDetail, InboundMessage

__all__ = ["ErrorReport", "StatusUpdate", "WebhookBatch", "WebhookResponse"]


@dataclass(frozen=True)
class WebhookResponse:
    """A framework-neutral HTTP answer: copy it into your framework's response.

    Attributes:
        status: The HTTP status code.
        body: The body text.
        content_type: The value for the ``Content-Type`` header.
    """

    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery report for a message the business sent (Cloud API).

    Statuses arrive out of order: compare ``timestamp`` values, and never let a
    late ``delivered`` replace a ``read``.

    Attributes:
        message_id: The wamid of the outbound message.
        status: ``sent``, ``delivered``, ``read``, ``failed``, ``played``, or a
            newer value passed through as given.
        timestamp: When the status happened, in Unix seconds.
        phone_number_id: The business number the message was sent from.
        recipient_id: The recipient's phone number or group id, as given.
        recipient_user_id: The recipient's BSUID, when given.
        callback_data: The ``biz_opaque_callback_data`` sent with the message.
        errors: Why a ``failed`` message failed.
        raw: The status item as received (pricing and the like are there).
    """

    message_id: str
    status: str
    timestamp: float
    phone_number_id: str | None
    recipient_id: str | None = field(default=None, repr=False)
    recipient_user_id: str | None = field(default=None, repr=False)
    callback_data: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ErrorReport:
    """An error the platform reported outside any message or status.

    Attributes:
        waba_id: The WhatsApp Business Account the error concerns, if given.
        phone_number_id: The business number, if given.
        error: The error itself.
    """

    waba_id: str | None
    phone_number_id: str | None
    error: ErrorDetail


@dataclass(frozen=True)
class WebhookBatch:
    """Everything one webhook request carried, sorted by what to do with it.

    Attributes:
        messages: Inbound messages to push to the batcher, in payload order.
        statuses: Delivery reports; record them, never push them as messages.
        errors: Platform errors reported at the account or app level.
        dropped: Messages addressed to a business number outside the allow-list.
            They are reported, not delivered, and the request still succeeds.
        ignored: How many other parts were skipped: other objects or fields,
            malformed items, and for Baileys the filtered messages.
    """

    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    errors: tuple[ErrorReport, ...] = ()
    dropped: tuple[InboundMessage, ...] = ()
    ignored: int = 0
