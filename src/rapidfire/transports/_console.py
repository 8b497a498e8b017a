"""Senders that print replies to a stream, for demos and local runs."""

from __future__ import annotations

import itertools
import sys
import threading
from typing import TextIO

from ._model import ReplyAddress

__all__ = ["AsyncConsoleSender", "ConsoleSender"]


class ConsoleSender:
    """Prints each reply to a stream instead of sending it.

    The destination is shown masked (``→ whatsapp … to=…0001``); the text is
    printed in full, since showing it is the point.

    Args:
        stream: Where to print; the current ``sys.stdout`` when None.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ConsoleSender()"

    def send_text(self, reply_to: ReplyAddress, text: str) -> list[str]:
        """Print ``text`` with its destination; return a made-up message id."""
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            message_id = f"console-{next(self._counter)}"
            stream.write(f"→ {reply_to.describe()}\n{text}\n")
            stream.flush()
        return [message_id]


class AsyncConsoleSender:
    """The async counterpart of :class:`ConsoleSender` (prints inline)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._console = ConsoleSender(stream)

    def __repr__(self) -> str:
        return "AsyncConsoleSender()"

    async def send_text(self, reply_to: ReplyAddress, text: str) -> list[str]:
        """Print ``text`` with its destination; return a made-up message id."""
        return self._console.send_text(reply_to, text)
