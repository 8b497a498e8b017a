"""Sending replies through the WhatsApp Cloud API (its `/messages` endpoint)."""

from __future__ import annotations

import functools
import json
import logging
import random as _random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import anyio.to_thread

from ._errors import InvalidAddressError, SendError, TransportConfigError
from ._http import (
    HttpCall,
    HttpRequest,
    check_http_url,
    json_object,
    post_once,
    urllib_call,
)
from ._model import ReplyAddress
from ._reading import digits
from ._redact import mask
from ._retry import RetryPolicy, call_with_retries
from ._split import WHATSAPP_TEXT_LIMIT, split_text

__all__ = [
    "GRAPH_API_URL",
    "RETRYABLE_ERROR_CODES",
    "AsyncWhatsAppSender",
    "WhatsAppSender",
]

logger = logging.getLogger(__name__)

GRAPH_API_URL = "https://graph.facebook.com/v25.0"
"""Default base URL: Meta's Graph API with a current version."""

RETRYABLE_ERROR_CODES: frozenset[int] = frozenset(
    {1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057}
)
"""Graph API error codes worth retrying: rate limits, throttling, temporary faults."""

_MAX_ERROR_TEXT = 200


class WhatsAppSender:
    """Sends text replies and read receipts through the Cloud API.

    Args:
        access_token: A system-user or business access token. Required.
        api_url: Base URL, version included. Point it at a fake server in tests.
        timeout: Seconds to wait for each HTTP reply.
        retry: Retry bounds for transient failures.
        text_limit: Longest part of a split reply, in UTF-16 code units.
        http: Makes one HTTP request; :func:`urllib_call` by default.
        sleep: Waits between retries.
        clock: Monotonic seconds, for the retry deadline.
        random: Returns a number in [0, 1), for the retry jitter.

    Whether a failure is retried is decided by ``error.code`` in the reply body
    when there is one (:data:`RETRYABLE_ERROR_CODES`); only a reply without a
    code falls back to its HTTP status (429 and 5xx are retried). So a 400
    carrying 130429 is retried and a 400 carrying 131047 is not.

    Raises:
        TransportConfigError: When ``access_token`` is missing or ``api_url``
            is not an http(s) URL.
    """

    def __init__(
        self,
        *,
        access_token: str | None,
        api_url: str = GRAPH_API_URL,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        text_limit: int = WHATSAPP_TEXT_LIMIT,
        http: HttpCall = urllib_call,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not access_token:
            raise TransportConfigError("access_token", "is required")
        if not 2 <= text_limit <= WHATSAPP_TEXT_LIMIT:
            raise TransportConfigError("text_limit", "must be between 2 and 4096")
        if timeout <= 0:
            raise TransportConfigError("timeout", "must be positive")
        self._token = access_token
        self.api_url = check_http_url("api_url", api_url)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._text_limit = text_limit
        self._http = http
        self._sleep = sleep
        self._clock = clock
        self._random = random

    def __repr__(self) -> str:
        return f"WhatsAppSender(api_url={self.api_url!r})"

    def send_text(
        self,
        reply_to: ReplyAddress,
        text: str,
        *,
        context_message_id: str | None = None,
        callback_data: str | None = None,
        preview_url: bool = False,
    ) -> list[str]:
        """Send ``text``, split into parts of at most 4096 characters.

        Args:
            reply_to: A ``"whatsapp"`` address, usually ``message.reply_to``.
            text: The reply; parts that are only whitespace are not sent.
            context_message_id: Quote this wamid (on the first part only).
            callback_data: Sent as ``biz_opaque_callback_data`` with every
                part, and echoed back in their status webhooks (a batch id).
            preview_url: Let WhatsApp render a link preview.

        Returns:
            The wamid of each part sent, in order.

        Raises:
            InvalidAddressError: ``reply_to`` is not a WhatsApp address.
            ValueError: ``text`` has nothing to send.
            SendError: A part was refused; ``sent_ids`` lists the parts sent
                before it.
        """
        _check_address(reply_to)
        parts = [part for part in split_text(text, self._text_limit) if part.strip()]
        if not parts:
            raise ValueError("text is empty")
        sent: list[str] = []
        for number, part in enumerate(parts):
            payload = _text_payload(reply_to, part, preview_url)
            if context_message_id is not None and number == 0:
                payload["context"] = {"message_id": context_message_id}
            if callback_data is not None:
                payload["biz_opaque_callback_data"] = callback_data
            what = f"send part {number + 1}/{len(parts)} to {reply_to.describe()}"
            try:
                reply = self._post(reply_to, payload, what)
            except SendError as error:
                error.sent_ids = tuple(sent)
                raise
            ids = _message_ids(reply)
            logger.debug("%s: accepted as %s", what, ", ".join(map(mask, ids)))
            sent.extend(ids)

        return sent

    def mark_read(
        self, reply_to: ReplyAddress, message_id: str, typing: bool = True
    ) -> None:
        """Mark ``message_id`` (and every earlier message) read.

        Args:
            reply_to: The conversation's address; only its business number is
                used.
            message_id: The inbound wamid, usually the last of a batch.
            typing: Also show the typing indicator, which lasts until the reply
                or 25 seconds. Only ask for it when a reply is coming.

        Raises:
            InvalidAddressError: ``reply_to`` is not a WhatsApp address.
            SendError: The request was refused.
        """
        _check_address(reply_to)
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing:
            payload["typing_indicator"] = {"type": "text"}
        self._post(reply_to, payload, f"mark read {mask(message_id)}")

    def _post(
        self, reply_to: ReplyAddress, payload: Mapping[str, Any], what: str
    ) -> Mapping[str, Any]:
        number = urllib.parse.quote(reply_to.phone_number_id or "", safe="")
        request = HttpRequest(
            url=f"{self.api_url}/{number}/messages",
            body=json.dumps(payload, separators=(",", ":")).encode("ascii"),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=self._timeout,
        )
        return call_with_retries(
            functools.partial(self._attempt, request, what),
            self._retry,
            sleep=self._sleep,
            clock=self._clock,
            random=self._random,
            what=what,
        )

    def _attempt(self, request: HttpRequest, what: str) -> Mapping[str, Any]:
        reply = post_once(self._http, request, what)
        body = json_object(reply.body)
        if 200 <= reply.status < 300:
            return body
        raise _graph_error(reply.status, body, what)


class AsyncWhatsAppSender:
    """The async face of a :class:`WhatsAppSender`: each call runs in a thread.

    Args:
        sender: The configured sync sender.
        limiter: Caps how many calls run at once; anyio's default otherwise.
    """

    def __init__(
        self, sender: WhatsAppSender, *, limiter: anyio.CapacityLimiter | None = None
    ) -> None:
        self.sender = sender
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"AsyncWhatsAppSender({self.sender!r})"

    async def send_text(
        self,
        reply_to: ReplyAddress,
        text: str,
        *,
        context_message_id: str | None = None,
        callback_data: str | None = None,
        preview_url: bool = False,
    ) -> list[str]:
        """Send ``text``; see :meth:`WhatsAppSender.send_text`."""
        call = functools.partial(
            self.sender.send_text,
            reply_to,
            text,
            context_message_id=context_message_id,
            callback_data=callback_data,
            preview_url=preview_url,
        )
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def mark_read(
        self, reply_to: ReplyAddress, message_id: str, typing: bool = True
    ) -> None:
        """Mark a message read; see :meth:`WhatsAppSender.mark_read`."""
        call = functools.partial(self.sender.mark_read, reply_to, message_id, typing)
        await anyio.to_thread.run_sync(call, limiter=self._limiter)


def _check_address(reply_to: ReplyAddress) -> None:
    if reply_to.platform != "whatsapp":
        raise InvalidAddressError(f"not a WhatsApp address: {reply_to.platform}")


def _text_payload(reply_to: ReplyAddress, part: str, preview: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "group" if reply_to.group else "individual",
    }
    if reply_to.group:
        payload["to"] = reply_to.to
    elif reply_to.to:
        payload["to"] = "+" + (digits(reply_to.to) or "")
    else:
        payload["recipient"] = reply_to.recipient
    payload["type"] = "text"
    payload["text"] = {"body": part, "preview_url": preview}
    return payload


def _message_ids(reply: Mapping[str, Any]) -> list[str]:
    messages = reply.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        item["id"]
        for item in messages
        if isinstance(item, Mapping) and isinstance(item.get("id"), str)
    ]


def _graph_error(status: int, body: Mapping[str, Any], what: str) -> SendError:
    error = body.get("error")
    error = error if isinstance(error, Mapping) else {}
    code = error.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        code = None
    if code is not None:
        retryable = code in RETRYABLE_ERROR_CODES
    else:
        retryable = status == 429 or status >= 500
    message = error.get("message")
    detail = message[:_MAX_ERROR_TEXT] if isinstance(message, str) else "no detail"
    return SendError(
        f"{what}: HTTP {status}: {detail}",
        code=code,
        http_status=status,
        retryable=retryable,
    )
