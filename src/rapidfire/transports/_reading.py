"""Lenient readers for platform JSON, and the short renderings built from it.

Webhook payloads are untrusted and change over time, so every read checks the
type it gets and falls back to "absent" instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "digits",
    "is_number",
    "list_of",
    "mapping_of",
    "render_location",
    "text_of",
]

_NON_DIGITS = re.compile(r"\D")


def digits(phone: object) -> str | None:
    """Return the digits of a phone number (``"+1 555-0100"`` -> ``"15550100"``)."""
    if not isinstance(phone, str):
        return None
    return _NON_DIGITS.sub("", phone) or None


def text_of(obj: object, key: str) -> str | None:
    """Return ``obj[key]`` when ``obj`` is a mapping and the value a non-empty str."""
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def mapping_of(obj: object, key: str) -> Mapping[str, Any]:
    """Return ``obj[key]`` when it is a mapping, else an empty one."""
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, Mapping):
            return value
    return {}


def list_of(obj: object, key: str) -> list[Any]:
    """Return ``obj[key]`` when it is a list, else an empty one."""
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, list):
            return value
    return []


def is_number(value: object) -> bool:
    """Return whether ``value`` is an int or float (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def render_location(
    latitude: object, longitude: object, name: str | None, address: str | None
) -> str | None:
    """Render a shared location as text: ``"Name, Address (lat, lon)"``.

    Parts that are missing are left out; None when nothing is known.
    """
    words = ", ".join(word for word in (name, address) if word)
    coordinates = None
    if is_number(latitude) and is_number(longitude):
        coordinates = f"{latitude}, {longitude}"
    if words and coordinates:
        return f"{words} ({coordinates})"
    return words or coordinates
