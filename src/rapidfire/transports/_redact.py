"""Masking of identifiers before they reach a log line or a repr."""

from __future__ import annotations

from .._logging import mask as _mask_id

__all__ = ["mask"]


def mask(value: str | None) -> str:
    """Return ``value`` masked the way rapidfire masks conversation ids.

    Phone numbers, user ids, business number ids, conversation keys and JIDs
    all go through this, so a log line never holds a full identifier. It
    follows ``rapidfire.show_full_ids``. In a JID only the user part is masked,
    so ``15550000001@s.whatsapp.net`` shows as ``…0001@s.whatsapp.net``.

    Args:
        value: The identifier, or None.

    Returns:
        The masked form, or ``"-"`` for None or an empty string.
    """
    if not value:
        return "-"
    user, at, server = value.rpartition("@")
    if at and user:
        return f"{_mask_id(user)}@{server}"
    return _mask_id(value)
