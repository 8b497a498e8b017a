"""Sending replies back through a Baileys bridge.

The bridge exposes one URL. Each reply is a POST of the JSON object
``{"jid": <chat jid>, "text": <text>}`` (plus ``"account"`` when the reply
address names one), signed with the same timestamp and HMAC headers as the
bridge's own requests. The bridge answers 2xx with ``{"id": "<message id>"}``
or ``{"ids": [...]}`` after ``sock.sendMessage(jid, {text})``; 429 and 5xx
answers are retried.
"""

from __future__ import annotations

import functools
import json
import logging
import random as _random
import time
from collections.abc import Callable
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
from ._retry import RetryPolicy, call_with_retries
from ._signing import (
    BRIDGE_SIGNATURE_HEADER,
    BRIDGE_TIMESTAMP_HEADER,
    bridge_signature,
    secret_bytes,
)

__all__ = ["AsyncBaileysSender", "BaileysSender"]

logger = logging.getLogger(__name__)


class BaileysSender:
    """Sends text replies through a Baileys bridge.

    Args:
        url: The bridge's send URL, e.g. ``http://127.0.0.1:3000/send``.
        secret: The secret shared with the bridge. Required.
        timeout: Seconds to wait for each reply.
        retry: Retry bounds for 429, 5xx and connection failures.
        http: Makes one HTTP request; :func:`urllib_call` by default.
        sleep: Waits between retries.
        clock: Monotonic seconds, for the retry deadline.
        wall_clock: Unix seconds, for the signed timestamp.
        random: Returns a number in [0, 1), for the retry jitter.

    Raises:
        TransportConfigError: When ``secret`` is missing or ``url`` is not an
            http(s) URL.
    """

    def __init__(
        self,
        *,
        url: str,
        secret: str | bytes | None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: HttpCall = urllib_call,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.url = check_http_url("url", url)
        self._secret = secret_bytes("secret", secret)
        if timeout <= 0:
            raise TransportConfigError("timeout", "must be positive")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._http = http
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._random = random

    def __repr__(self) -> str:
        return f"BaileysSender(url={self.url!r})"

    def send_text(self, reply_to: ReplyAddress, text: str) -> list[str]:
        """Send ``text`` to the chat of ``reply_to``.

        Returns:
            The message ids the bridge reported (may be empty).

        Raises:
            InvalidAddressError: ``reply_to`` is not a Baileys address.
            ValueError: ``text`` is empty or only whitespace.
            SendError: The bridge refused the request or could not be reached.
        """
        if reply_to.platform != "baileys":
            raise InvalidAddressError(f"not a Baileys address: {reply_to.platform}")
        if not text.strip():
            raise ValueError("text is empty")
        payload: dict[str, Any] = {"jid": reply_to.jid, "text": text}
        if reply_to.account is not None:
            payload["account"] = reply_to.account
        body = json.dumps(payload, separators=(",", ":")).encode("ascii")
        what = f"bridge send to {reply_to.describe()}"
        return call_with_retries(
            functools.partial(self._attempt, body, what),
            self._retry,
            sleep=self._sleep,
            clock=self._clock,
            random=self._random,
            what=what,
        )

    def _attempt(self, body: bytes, what: str) -> list[str]:
        timestamp = str(int(self._wall_clock()))
        request = HttpRequest(
            url=self.url,
            body=body,
            headers={
                "Content-Type": "application/json",
                BRIDGE_TIMESTAMP_HEADER: timestamp,
                BRIDGE_SIGNATURE_HEADER: bridge_signature(
                    self._secret, timestamp, body
                ),
            },
            timeout=self._timeout,
        )
        reply = post_once(self._http, request, what)
        if not 200 <= reply.status < 300:
            raise SendError(
                f"{what}: HTTP {reply.status}",
                http_status=reply.status,
                retryable=reply.status == 429 or reply.status >= 500,
            )
        logger.debug("%s: accepted", what)
        return _reported_ids(reply.body)


class AsyncBaileysSender:
    """The async face of a :class:`BaileysSender`: each call runs in a thread."""

    def __init__(
        self, sender: BaileysSender, *, limiter: anyio.CapacityLimiter | None = None
    ) -> None:
        self.sender = sender
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"AsyncBaileysSender({self.sender!r})"

    async def send_text(self, reply_to: ReplyAddress, text: str) -> list[str]:
        """Send ``text``; see :meth:`BaileysSender.send_text`."""
        call = functools.partial(self.sender.send_text, reply_to, text)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)


def _reported_ids(body: bytes) -> list[str]:
    reply = json_object(body)
    if isinstance(reply.get("id"), str):
        return [reply["id"]]
    ids = reply.get("ids")
    if isinstance(ids, list):
        return [item for item in ids if isinstance(item, str)]
    return []
