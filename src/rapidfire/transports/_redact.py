"""Masking of identifiers before they reach a log line."""

from __future__ import annotations

__all__ = ["mask"]


def mask(value: str | None) -> str:
    """Return ``value`` reduced to its last four characters, for logging.

    Phone numbers, user ids, JIDs and business number ids all go through this
    before they are logged, so a log line never holds a full identifier.

    Args:
        value: The identifier, or None.

    Returns:
        ``"…1234"`` for a longer value, ``"…"`` for a value of four characters or
        fewer (too short to reveal a part of), and ``"-"`` for None or empty.
    """
    if not value:
        return "-"
    if len(value) <= 4:
        return "…"
    return "…" + value[-4:]
