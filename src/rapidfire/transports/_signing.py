"""HMAC-SHA256 request signatures: Meta's ``X-Hub-Signature-256`` and the bridge's.

Both schemes hash the raw request bytes exactly as received. Parsing the JSON
and serialising it again gives different bytes (escaped unicode such as
``\\u00e9`` and escaped slashes ``\\/`` come back unescaped), so verification
must happen before any parsing.

The bridge scheme, for a Node (or any) bridge that forwards Baileys events and
receives replies, signs ``<timestamp> + "." + <raw body>``:

- ``X-Rapidfire-Timestamp``: Unix seconds as decimal digits;
- ``X-Rapidfire-Signature``: ``sha256=`` and the lowercase hex HMAC-SHA256 of
  the timestamp, one ``.`` and the raw body, keyed with the shared secret.

A request whose timestamp is more than the tolerance (5 minutes by default)
away from the receiver's clock is refused, which bounds replays.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ._errors import SignatureError, TransportConfigError

__all__ = [
    "BRIDGE_SIGNATURE_HEADER",
    "BRIDGE_TIMESTAMP_HEADER",
    "HUB_SIGNATURE_HEADER",
    "bridge_signature",
    "check_bridge_signature",
    "check_hub_signature",
    "hub_signature",
    "secret_bytes",
    "verify_hub_signature",
]

HUB_SIGNATURE_HEADER = "X-Hub-Signature-256"
BRIDGE_TIMESTAMP_HEADER = "X-Rapidfire-Timestamp"
BRIDGE_SIGNATURE_HEADER = "X-Rapidfire-Signature"

_PREFIX = "sha256="
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def secret_bytes(field: str, secret: str | bytes | None) -> bytes:
    """Return ``secret`` as bytes, refusing a missing or empty one.

    Raises:
        TransportConfigError: When ``secret`` is None or empty; naming ``field``.
    """
    if secret is None or len(secret) == 0:
        raise TransportConfigError(field, "is required and must not be empty")
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _hex_hmac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _check(secret: str | bytes, message: bytes, header: str | None) -> None:
    if header is None or not header.strip():
        raise SignatureError("signature header missing")
    header = header.strip()
    if not header.startswith(_PREFIX):
        raise SignatureError("signature must start with sha256=")
    received = header[len(_PREFIX) :]
    if _HEX_DIGEST.fullmatch(received) is None:
        raise SignatureError("signature must be 64 hex characters")
    if not hmac.compare_digest(_hex_hmac(secret, message), received.lower()):
        raise SignatureError("signature does not match")


def hub_signature(app_secret: str | bytes, body: bytes) -> str:
    """Return the ``X-Hub-Signature-256`` value Meta would send for ``body``."""
    return _PREFIX + _hex_hmac(app_secret, body)


def check_hub_signature(
    app_secret: str | bytes, body: bytes, header: str | None
) -> None:
    """Check an ``X-Hub-Signature-256`` value against the raw body.

    The hex digest may be in either case; the ``sha256=`` prefix is required.
    The comparison runs in constant time.

    Raises:
        SignatureError: When the header is missing, malformed or does not match.
    """
    _check(app_secret, body, header)


def verify_hub_signature(
    app_secret: str | bytes, body: bytes, header: str | None
) -> bool:
    """Return whether ``header`` is a valid ``X-Hub-Signature-256`` for ``body``."""
    try:
        _check(app_secret, body, header)
    except SignatureError:
        return False
    return True


def bridge_signature(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """Return the ``X-Rapidfire-Signature`` value for ``body`` sent at ``timestamp``."""
    return _PREFIX + _hex_hmac(secret, timestamp.encode("ascii") + b"." + body)


def check_bridge_signature(
    secret: str | bytes,
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float,
    tolerance: float,
) -> None:
    """Check a bridge request's timestamp and signature.

    Args:
        secret: The shared secret.
        body: The raw request body.
        timestamp: The ``X-Rapidfire-Timestamp`` header value.
        signature: The ``X-Rapidfire-Signature`` header value.
        now: The receiver's current time, in Unix seconds.
        tolerance: How many seconds the timestamp may differ from ``now``.

    Raises:
        SignatureError: When either header is missing or malformed, the
            timestamp is too far from ``now``, or the signature does not match.
    """
    if timestamp is None or _TIMESTAMP.fullmatch(timestamp.strip()) is None:
        raise SignatureError("timestamp header missing or not decimal seconds")
    timestamp = timestamp.strip()
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError("timestamp outside the allowed window")
    _check(secret, timestamp.encode("ascii") + b"." + body, signature)
