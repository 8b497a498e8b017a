"""Splitting a long reply into parts that each fit one chat message."""

from __future__ import annotations

import unicodedata

__all__ = ["WHATSAPP_TEXT_LIMIT", "split_text", "utf16_length"]

WHATSAPP_TEXT_LIMIT = 4096
"""Most characters the Cloud API accepts in one text message body."""

_ZWJ = "\u200d"


def utf16_length(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units.

    An emoji outside the Basic Multilingual Plane counts as two. Counting this
    way is the stricter reading of a "characters" limit, so a part that fits
    here fits however the platform counts [inferred].
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def split_text(text: str, limit: int = WHATSAPP_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 code units each.

    A part ends, by preference, after a blank line, then after a line break,
    then after any other whitespace, as long as that keeps the part at least
    half full; otherwise it is cut between characters, avoiding a cut before a
    combining mark, a variation selector or around a zero-width joiner where
    one close by allows it. A cut never falls inside a surrogate pair. Nothing
    is dropped or added: ``"".join(split_text(t)) == t``.

    Args:
        text: The text to split.
        limit: Most UTF-16 code units per part; at least 2.

    Returns:
        The parts in order; an empty list for empty text.

    Raises:
        ValueError: When ``limit`` is below 2.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    start = 0
    while start < len(text):
        end = _window_end(text, start, limit)
        if end < len(text):
            end = _best_cut(text, start, end)
        parts.append(text[start:end])
        start = end
    return parts


def _window_end(text: str, start: int, limit: int) -> int:
    """Return the largest end such that text[start:end] fits in ``limit`` units."""
    units = 0
    index = start
    while index < len(text):
        units += 2 if ord(text[index]) > 0xFFFF else 1
        if units > limit:
            break
        index += 1
    return index


def _best_cut(text: str, start: int, end: int) -> int:
    floor = start + (end - start) // 2
    for separator in ("\n\n", "\n"):
        found = text.rfind(separator, floor, end)
        if found != -1:
            return found + len(separator)

    for index in range(end - 1, floor - 1, -1):
        if text[index].isspace():
            return index + 1

    lowest = max(start + 1, end - 32)
    for cut in range(end, lowest - 1, -1):
        if _clean_boundary(text, cut):
            return cut

    return end - 1 if _inside_pair(text, end) and end - 1 > start else end


def _inside_pair(text: str, cut: int) -> bool:
    return "\ud800" <= text[cut - 1] <= "\udbff" and "\udc00" <= text[cut] <= "\udfff"


def _clean_boundary(text: str, cut: int) -> bool:
    before, after = text[cut - 1], text[cut]
    if _inside_pair(text, cut) or _ZWJ in (before, after):
        return False
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
        return False
    if 0x1F3FB <= code <= 0x1F3FF:
        return False
    return unicodedata.combining(after) == 0
