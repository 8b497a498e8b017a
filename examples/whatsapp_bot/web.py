"""The bot's HTTP side: Meta's webhook and a health check, as a Starlette app.

The POST handler does only what must happen before Meta gets its 200: read the
raw body (capped), verify the signature, parse, and push every message to
Redis in one round trip. Anything slow (the reply, the typing indicator)
happens in the worker, so a burst is acknowledged in a few milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rapidfire import (
    AsyncBatcher,
    InvalidArgumentError,
    RapidfireError,
    StoreError,
    mask,
)
from rapidfire.transports import (
    HUB_SIGNATURE_HEADER,
    PayloadTooLargeError,
    WebhookBatch,
    WebhookError,
    WebhookResponse,
    WhatsAppWebhook,
)

__all__ = ["create_app"]

log = logging.getLogger("whatsapp_bot.web")

PUSH_TIMEOUT = 3.0
"""Seconds a POST may spend pushing (Redis retries included) before it answers
503. Meta gives up on a slow answer after a few seconds and sends the update
again; answering first keeps the retry prompt. The dedupe ids make a push that
did land harmless to repeat."""

HEALTH_TIMEOUT = 2.0
"""Seconds /healthz waits for Redis before it reports it down."""


def create_app(
    *,
    role: str,
    webhook: WhatsAppWebhook,
    batcher: AsyncBatcher,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    worker_alive: Callable[[], bool] | None = None,
) -> Starlette:
    """Build the app serving ``/webhook`` (GET and POST) and ``/healthz``.

    Args:
        role: Shown by ``/healthz``.
        webhook: Verifies and parses Meta's requests.
        batcher: Where the messages go.
        lifespan: Runs around the server's life (the worker, in role ``all``).
        worker_alive: Tells ``/healthz`` whether the worker runs, if there is one.
    """

    async def handshake(request: Request) -> Response:
        return _response(webhook.handle_get(request.query_params))

    async def receive(request: Request) -> Response:
        try:
            body = await _read_body(request, webhook.max_body_bytes)
            update = webhook.parse(body, request.headers.get(HUB_SIGNATURE_HEADER))
        except WebhookError as error:
            log.warning("webhook POST refused (%d): %s", error.status, error.reason)
            return Response(error.reason, status_code=error.status)

        items = [m.to_push() for m in update.messages]
        try:
            with anyio.fail_after(PUSH_TIMEOUT):
                try:
                    receipts = await batcher.push_many(items)
                except InvalidArgumentError:
                    receipts = await _push_valid_ones(batcher, items)
        except (StoreError, TimeoutError) as error:
            log.error(
                "push failed (%s); answering 503 so that Meta sends the update again",
                type(error).__name__,
            )
            return Response("try again later", status_code=503)
        except RapidfireError as error:
            # Never the error's text: it may quote a message.
            log.error("push refused (%s); answering 500", type(error).__name__)
            return Response("delivery failed", status_code=500)

        duplicates = sum(receipt.duplicate for receipt in receipts)
        _log_update(update, duplicates)
        return Response("ok")

    async def health(request: Request) -> Response:
        redis_ok = False
        with anyio.move_on_after(HEALTH_TIMEOUT):
            try:
                await batcher.ping()
                redis_ok = True
            except RapidfireError as error:
                log.warning("health check: Redis does not answer (%s)", error)

        status: dict[str, Any] = {"role": role, "redis": redis_ok}
        healthy = redis_ok
        if worker_alive is not None:
            status["worker"] = worker_alive()
            healthy = healthy and status["worker"]

        return JSONResponse(status, status_code=200 if healthy else 503)

    return Starlette(
        routes=[
            Route("/webhook", handshake, methods=["GET"]),
            Route("/webhook", receive, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _response(answer: WebhookResponse) -> Response:
    return Response(
        answer.body, status_code=answer.status, media_type=answer.content_type
    )


async def _read_body(request: Request, cap: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``cap``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLargeError("content-length over the size cap")

    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLargeError("body over the size cap")

        chunks.append(chunk)

    return b"".join(chunks)


async def _push_valid_ones(batcher: AsyncBatcher, items: list[Any]) -> list[Any]:
    """push_many refused the update because of one bad message (too big, an id
    too long): push the others one by one and drop that one, so that a single
    unusable message does not make Meta redeliver the whole update for days."""
    receipts = []
    for item in items:
        try:
            receipts += await batcher.push_many([item])
        except InvalidArgumentError as error:
            # Never the error's text: it may quote the message or the number.
            log.warning("dropped one unusable message (%s)", type(error).__name__)
    return receipts


def _log_update(update: WebhookBatch, duplicates: int) -> None:
    if update.messages:
        log.info(
            "webhook POST: %d new message(s), %d duplicate(s)",
            len(update.messages) - duplicates,
            duplicates,
        )

    if update.dropped:
        log.warning(
            "webhook POST: %d message(s) to a business number not served here",
            len(update.dropped),
        )

    for status in update.statuses:
        if status.status == "failed":
            log.warning(
                "reply %s (batch %s) failed: error code(s) %s",
                mask(status.message_id),
                status.callback_data or "-",
                ", ".join(str(e.code) for e in status.errors) or "none given",
            )
        else:
            log.debug(
                "reply %s (batch %s) is %s",
                mask(status.message_id),
                status.callback_data or "-",
                status.status,
            )
