"""The bot's worker: one reply per batch, through the WhatsApp Cloud API.

:class:`Replier` is the handler given to ``AsyncBatcher.drain``. For each batch
it shows the typing indicator on the user's last message, asks the brain for
the reply, checks that it still holds the batch, and sends the reply quoting
that message. Returning lets drain acknowledge the batch; raising makes drain
give it back for a later attempt (with backoff, then the dead letters).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import anyio.to_thread

from rapidfire import AsyncBatcher, Batch, mask
from rapidfire.transports import (
    AsyncWhatsAppSender,
    InboundMessage,
    MessageKind,
    RetryPolicy,
    SendError,
    WhatsAppSender,
)

from settings import Brain, Settings

__all__ = ["Replier"]

log = logging.getLogger("whatsapp_bot.worker")

# Graph API errors that a person can fix (an expired or revoked token, a missing
# permission). The batch is raised, not acknowledged: after max_attempts it
# waits in the dead letters, to be requeued once the token is fixed.
OPERATOR_ERROR_CODES = frozenset({0, 10, 190, 131005, *range(200, 300)})

RECEIPT_TIMEOUT = 10.0
"""Seconds to wait for the read receipt (it is cosmetic: never retried)."""


class Replier:
    """Turns each batch into one WhatsApp reply.

    Args:
        settings: The worker's settings (access token, API URL, attempts).
        batcher: The batcher that claimed the batches (for ``owns``).
        brain: ``make_reply(messages) -> str | None``, plain or ``async def``.
    """

    def __init__(self, settings: Settings, batcher: AsyncBatcher, brain: Brain):
        self._batcher = batcher
        self._brain = brain
        self._sender = AsyncWhatsAppSender(
            WhatsAppSender(
                access_token=settings.access_token,
                api_url=settings.api_url,
                retry=RetryPolicy(max_attempts=settings.send_attempts),
            )
        )
        self._receipts = AsyncWhatsAppSender(
            WhatsAppSender(
                access_token=settings.access_token,
                api_url=settings.api_url,
                timeout=RECEIPT_TIMEOUT,
                retry=RetryPolicy(max_attempts=1),
            )
        )

    async def __call__(self, batch: Batch) -> None:
        """Handle one batch: return to have it acknowledged, raise to retry it."""
        messages = [InboundMessage.from_push(data) for data in batch.messages]
        # A reaction is not something to quote or to mark read: the anchor is
        # the last message the user wrote (None for a burst of reactions only).
        said = [m for m in messages if m.kind is not MessageKind.REACTION]
        anchor = said[-1] if said else None
        if anchor is not None:
            await self._show_typing(batch, anchor)

        reply = await self._think(messages)
        if reply is None or not reply.strip():
            log.info(
                "batch %s of %s: nothing to answer in %d message(s)",
                batch.id,
                mask(batch.conversation),
                batch.size,
            )
            return

        if not await self._batcher.owns(batch):
            log.warning(
                "batch %s of %s: lease lost before sending; another worker answers",
                batch.id,
                mask(batch.conversation),
            )
            return

        try:
            sent = await self._sender.send_text(
                (anchor or messages[-1]).reply_to,
                reply,
                context_message_id=anchor.message_id if anchor else None,
                callback_data=batch.id,
            )
        except SendError as error:
            self._send_failed(batch, error)
            return

        log.info(
            "batch %s of %s: %d message(s) answered with one reply, sent as %s"
            " (attempt %d)",
            batch.id,
            mask(batch.conversation),
            batch.size,
            ", ".join(map(mask, sent)),
            batch.attempt,
        )

    async def _show_typing(self, batch: Batch, anchor: InboundMessage) -> None:
        try:
            await self._receipts.mark_read(anchor.reply_to, anchor.message_id)
        except SendError as error:
            log.warning(
                "batch %s: read receipt not sent (code=%s, http_status=%s); replying"
                " anyway",
                batch.id,
                error.code,
                error.http_status,
            )

    async def _think(self, messages: list[InboundMessage]) -> str | None:
        if inspect.iscoroutinefunction(self._brain):
            reply: Any = await self._brain(messages)
        else:
            # A plain function may block (a model call): keep it off the loop.
            reply = await anyio.to_thread.run_sync(self._brain, messages)
            if inspect.isawaitable(reply):
                reply = await reply

        if reply is not None and not isinstance(reply, str):
            raise TypeError(f"the brain returned {type(reply).__name__}, not str")

        return reply

    def _send_failed(self, batch: Batch, error: SendError) -> None:
        """Raise to retry the batch later, or log and return to drop it."""
        where = f"batch {batch.id} of {mask(batch.conversation)}"
        if error.sent_ids:
            # Part of a long reply went out: a retry would send it twice.
            log.error(
                "%s: reply cut short after %d part(s) (code=%s); not retried",
                where,
                len(error.sent_ids),
                error.code,
            )
            return

        if error.retryable or error.code in OPERATOR_ERROR_CODES:
            log.warning(
                "%s: send failed (code=%s, http_status=%s); the batch will be retried",
                where,
                error.code,
                error.http_status,
            )
            raise error

        log.error(
            "%s: send refused for good (code=%s, http_status=%s); batch dropped",
            where,
            error.code,
            error.http_status,
        )
