"""The sender interfaces the worker codes against."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._model import ReplyAddress

__all__ = ["AsyncSender", "Sender"]


@runtime_checkable
class Sender(Protocol):
    """Sends replies from synchronous code."""

    def send_text(self, reply_to: ReplyAddress, text: str) -> list[str]:
        """Send ``text`` to ``reply_to``.

        Args:
            reply_to: Where to send, usually ``InboundMessage.reply_to``.
            text: The reply. A sender may split it into several messages.

        Returns:
            The ids of the messages sent, in order.
        """
        ...


@runtime_checkable
class AsyncSender(Protocol):
    """Sends replies from async code."""

    async def send_text(self, reply_to: ReplyAddress, text: str) -> list[str]:
        """Send ``text`` to ``reply_to``; see :meth:`Sender.send_text`."""
        ...
