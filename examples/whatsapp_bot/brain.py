"""The bot's reply logic: one plain function, easy to replace.

The worker calls :func:`make_reply` once per batch, with every message of the
user's burst in the order they arrived, and sends what it returns as ONE
WhatsApp message. Returning None sends nothing.

This default answers with the burst itself, one message per line, so anyone
watching can see that nothing was lost, duplicated or reordered. To put a
language model (or anything else) here, write a function with the same
signature and point ``BOT_BRAIN=module:function`` at it; see the README.
"""

from __future__ import annotations

from rapidfire.transports import InboundMessage, MessageKind

__all__ = ["make_reply", "render"]

# Kinds that are not something the user said to the bot: a reaction to one of
# its replies, a notice that the user's id changed. They are never answered.
SILENT_KINDS = frozenset({MessageKind.REACTION, MessageKind.SYSTEM})


def render(message: InboundMessage) -> str | None:
    """One line for one message, or None when there is nothing to say about it.

    A text message is its text. Anything else is a short placeholder naming
    its kind, followed by the text WhatsApp gave with it, if any (an image's
    caption, a document's file name, a shared location, a tapped button's
    title): ``[image] holiday``, ``[sticker]``.
    """
    if message.kind in SILENT_KINDS:
        return None

    if message.kind is MessageKind.TEXT:
        return message.text or None

    placeholder = f"[{message.kind.value}]"
    return f"{placeholder} {message.text}" if message.text else placeholder


def make_reply(messages: list[InboundMessage]) -> str | None:
    """Answer a burst with every one of its messages, in order, one per line.

    Args:
        messages: The burst, oldest first; never empty.

    Returns:
        The reply text, or None when the burst holds nothing to answer (for
        example only reactions).
    """
    lines = [line for line in map(render, messages) if line is not None]
    return "\n".join(lines) if lines else None
