"""Codecs turn messages into the bytes Redis stores, and back."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

__all__ = ["Codec", "JsonCodec"]


@runtime_checkable
class Codec(Protocol):
    """Encodes a message to bytes and decodes it again.

    ``encode`` raises ``TypeError`` or ``ValueError`` for a message it cannot
    encode; rapidfire reports that as :class:`ArgumentTypeError` and stores
    nothing.
    """

    def encode(self, message: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """Compact UTF-8 JSON: anything ``json.dumps`` takes, NaN and infinities not."""

    def encode(self, message: Any) -> bytes:
        return json.dumps(
            message, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"
