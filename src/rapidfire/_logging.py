"""Log helpers: what rapidfire may say about a conversation.

Conversation ids are usually phone numbers. At INFO and above rapidfire shows
them masked to their last four characters; message bodies never appear in its
logs at any level.
"""

from __future__ import annotations

__all__ = ["mask"]

_SHOW_FULL_IDS = False


def show_full_ids(enabled: bool) -> None:
    """Show conversation ids unmasked in rapidfire's logs (for debugging)."""
    global _SHOW_FULL_IDS
    _SHOW_FULL_IDS = enabled


def mask(conversation: str) -> str:
    """``"…4488"`` for ``"79686484488"``: the last four characters only."""
    if _SHOW_FULL_IDS:
        return conversation
    if len(conversation) <= 4:
        return "…" + "*" * len(conversation)
    return "…" + conversation[-4:]
