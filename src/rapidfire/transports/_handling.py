"""Request handling shared by the webhook adapters: size cap, JSON, delivery."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import MalformedPayloadError, PayloadTooLargeError, WebhookError
from ._http import get_header
from ._results import WebhookBatch, WebhookResponse

__all__ = ["check_size", "decode_object", "respond"]

logger = logging.getLogger(__name__)


def check_size(body: bytes, cap: int, headers: Mapping[str, Any] | None = None) -> None:
    """Refuse a body over ``cap`` bytes, by its length or its Content-Length.

    Raises:
        PayloadTooLargeError: When either is over the cap.
    """
    declared = None if headers is None else get_header(headers, "content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > cap:
        raise PayloadTooLargeError("content-length over the size cap")
    if len(body) > cap:
        raise PayloadTooLargeError("body over the size cap")


def decode_object(body: bytes) -> dict[str, Any]:
    """Parse an already verified body that must hold a JSON object.

    Raises:
        MalformedPayloadError: When it is not valid JSON or not an object.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise MalformedPayloadError("body is not valid JSON") from error
    if not isinstance(payload, dict):
        raise MalformedPayloadError("body is not a JSON object")
    return payload


def respond(
    parse: Callable[[], WebhookBatch], deliver: Callable[[WebhookBatch], None]
) -> WebhookResponse:
    """Run ``parse`` then ``deliver`` and turn the outcome into an HTTP answer.

    Returns:
        The :class:`WebhookError` status when ``parse`` refused the request;
        500 when ``deliver`` raised, so the sender delivers the request again;
        200 otherwise.
    """
    try:
        batch = parse()
    except WebhookError as error:
        logger.warning("webhook POST refused (%d): %s", error.status, error.reason)
        return WebhookResponse(error.status, error.reason)

    try:
        deliver(batch)
    except Exception as error:
        logger.error(
            "deliver failed (%s); answering 500 so the update is sent again",
            type(error).__name__,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        return WebhookResponse(500, "delivery failed")
    return WebhookResponse(200, "ok")
