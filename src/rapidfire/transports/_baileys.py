"""The Baileys bridge webhook: a Node process forwards ``messages.upsert`` events.

The bridge POSTs the event argument unchanged,
``{"type": "notify" | "append", "messages": [WAMessage, ...]}``, signed as
described in :mod:`rapidfire.transports._signing` (timestamp and HMAC headers).
Only ``notify`` events are acted on; ``append`` carries history and sync.

Usage, framework-neutral::

    webhook = BaileysWebhook(secret=..., account="shop-1")
    answer = webhook.handle_post(raw_body, request.headers, deliver)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._baileys_messages import parse_item
from ._errors import MalformedPayloadError, TransportConfigError
from ._handling import check_size, decode_object, respond
from ._http import get_header
from ._keys import check_tenant
from ._redact import mask
from ._results import WebhookBatch, WebhookResponse
from ._signing import (
    BRIDGE_SIGNATURE_HEADER,
    BRIDGE_TIMESTAMP_HEADER,
    check_bridge_signature,
    secret_bytes,
)
from ._whatsapp import DEFAULT_MAX_BODY_BYTES

__all__ = ["DEFAULT_TOLERANCE", "BaileysWebhook"]

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 300.0
"""Seconds a bridge request's timestamp may differ from the receiver's clock."""


class BaileysWebhook:
    """Receives ``messages.upsert`` events forwarded by a Baileys bridge.

    Args:
        secret: The secret shared with the bridge. Required.
        account: Name of the linked WhatsApp account the bridge serves; it
            becomes part of conversation keys so two accounts cannot collide.
        include_groups: Deliver group messages (``@g.us``). When False they
            are counted as ignored.
        max_body_bytes: Larger bodies are refused with 413.
        tolerance: Seconds a request's timestamp may be off (default 5 min).
        clock: Returns Unix seconds; for the timestamp check and for messages
            without a timestamp.

    Raises:
        TransportConfigError: When ``secret`` is missing or empty, or another
            argument is invalid. Its ``field`` names the argument.
    """

    def __init__(
        self,
        *,
        secret: str | bytes | None,
        account: str | None = None,
        include_groups: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret_bytes("secret", secret)
        self._account = check_tenant("account", account)
        self._include_groups = include_groups
        if max_body_bytes < 1:
            raise TransportConfigError("max_body_bytes", "must be positive")
        if tolerance <= 0:
            raise TransportConfigError("tolerance", "must be positive")
        self.max_body_bytes = max_body_bytes
        self._tolerance = tolerance
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"BaileysWebhook(account={self._account!r}, "
            f"include_groups={self._include_groups})"
        )

    def verify(
        self, body: bytes, *, timestamp: str | None, signature: str | None
    ) -> None:
        """Check the size cap, the timestamp window and the signature.

        Raises:
            PayloadTooLargeError: The body is over ``max_body_bytes``.
            SignatureError: A header is missing or malformed, the timestamp is
                stale, or the signature does not match.
        """
        check_size(body, self.max_body_bytes)
        check_bridge_signature(
            self._secret,
            body,
            timestamp=timestamp,
            signature=signature,
            now=self._clock(),
            tolerance=self._tolerance,
        )

    def parse(
        self, body: bytes, *, timestamp: str | None, signature: str | None
    ) -> WebhookBatch:
        """Verify and parse one bridge POST.

        Raises:
            PayloadTooLargeError: The body is over ``max_body_bytes`` (413).
            SignatureError: Authentication failed (403).
            MalformedPayloadError: The body is not an upsert event (400).
        """
        self.verify(body, timestamp=timestamp, signature=signature)
        event = decode_object(body)
        items = event.get("messages")
        if not isinstance(items, list):
            raise MalformedPayloadError("messages must be a list")
        if event.get("type") != "notify":
            logger.debug("ignored upsert of type %r", event.get("type"))
            return WebhookBatch(ignored=max(1, len(items)))

        messages = []
        ignored = 0
        for item in items:
            message = None
            if isinstance(item, Mapping):
                message = parse_item(
                    item,
                    account=self._account,
                    include_groups=self._include_groups,
                    clock=self._clock,
                )
            if message is None:
                ignored += 1
                continue
            logger.debug(
                "message %s kind=%s in %s",
                mask(message.message_id),
                message.kind.value,
                mask(message.conversation),
            )
            messages.append(message)

        return WebhookBatch(messages=tuple(messages), ignored=ignored)

    def handle_post(
        self,
        body: bytes,
        headers: Mapping[str, Any],
        deliver: Callable[[WebhookBatch], None],
    ) -> WebhookResponse:
        """Verify, parse and deliver one POST; return the answer for the bridge.

        Returns:
            200 when delivered; 400, 403 or 413 when refused; 500 when
            ``deliver`` raised.
        """

        def parse() -> WebhookBatch:
            check_size(body, self.max_body_bytes, headers)
            return self.parse(
                body,
                timestamp=get_header(headers, BRIDGE_TIMESTAMP_HEADER),
                signature=get_header(headers, BRIDGE_SIGNATURE_HEADER),
            )

        return respond(parse, deliver)
