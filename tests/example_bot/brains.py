"""Replacement brains for the ``BOT_BRAIN`` test, importable as
``example_bot.brains`` when ``tests/`` is on ``PYTHONPATH``."""

from __future__ import annotations

from rapidfire.transports import InboundMessage


async def shout(messages: list[InboundMessage]) -> str | None:
    """An ``async def`` brain: the burst's texts in capitals, on one line."""
    texts = [m.text for m in messages if m.text]
    return " / ".join(texts).upper() if texts else None
