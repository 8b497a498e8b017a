"""Signature checks: Meta's X-Hub-Signature-256 and the bridge's HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidfire.transports import SignatureError, bridge_signature, verify_hub_signature
from rapidfire.transports._signing import check_bridge_signature, check_hub_signature

SECRET = "test-app-secret"

# As on the wire: non-ASCII escaped as \u00e9 and slashes escaped as \/.
ESCAPED_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"200000000000001",'
    b'"changes":[{"field":"messages","value":{"messages":[{"id":"wamid.T",'
    b'"type":"text","text":{"body":"mang\\u00e9 https:\\/\\/example.test\\/x"}}]}}]}]}'
)


def digest(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_escaped_body_verifies_from_raw_bytes() -> None:
    assert verify_hub_signature(SECRET, ESCAPED_BODY, "sha256=" + digest(ESCAPED_BODY))


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_escaped_body_does_not_verify_once_reserialised(ensure_ascii: bool) -> None:
    header = "sha256=" + digest(ESCAPED_BODY)
    reserialised = json.dumps(
        json.loads(ESCAPED_BODY), separators=(",", ":"), ensure_ascii=ensure_ascii
    ).encode()

    assert json.loads(reserialised) == json.loads(ESCAPED_BODY)
    assert reserialised != ESCAPED_BODY
    assert not verify_hub_signature(SECRET, reserialised, header)


def test_uppercase_hex_digest_is_accepted() -> None:
    header = "sha256=" + digest(ESCAPED_BODY).upper()

    assert verify_hub_signature(SECRET, ESCAPED_BODY, header)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("SHA256=" + "a" * 64, "sha256="),
        ("sha1=" + "a" * 40, "sha256="),
        ("sha256=" + "a" * 63, "64 hex"),
        ("sha256=" + "a" * 65, "64 hex"),
        ("sha256=" + "g" * 64, "64 hex"),
        ("sha256=" + "a" * 64, "does not match"),
        ("sha256=" + digest(b"other body"), "does not match"),
        ("sha256=" + digest(ESCAPED_BODY, "wrong-secret"), "does not match"),
    ],
)
def test_bad_signatures_are_refused(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as caught:
        check_hub_signature(SECRET, ESCAPED_BODY, header)

    assert caught.value.status == 403
    assert not verify_hub_signature(SECRET, ESCAPED_BODY, header)


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512))
def test_any_body_verifies_and_any_flipped_byte_does_not(
    secret: bytes, body: bytes
) -> None:
    header = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()

    assert verify_hub_signature(secret, body, header)
    if body:
        flipped = bytes([body[0] ^ 1]) + body[1:]
        assert not verify_hub_signature(secret, flipped, header)
    assert not verify_hub_signature(secret, body + b" ", header)


def check_bridge(
    body: bytes, timestamp: str | None, signature: str | None, now: float
) -> None:
    check_bridge_signature(
        SECRET, body, timestamp=timestamp, signature=signature, now=now, tolerance=300
    )


def test_bridge_signature_covers_timestamp_and_body() -> None:
    body = b'{"type":"notify","messages":[]}'
    expected = hmac.new(SECRET.encode(), b"1760000000." + body, hashlib.sha256)

    assert (
        bridge_signature(SECRET, "1760000000", body) == "sha256=" + expected.hexdigest()
    )
    check_bridge(
        body, "1760000000", bridge_signature(SECRET, "1760000000", body), 1760000100
    )


@pytest.mark.parametrize("now", [1760000301.0, 1759999699.0])
def test_bridge_request_more_than_five_minutes_off_is_refused(now: float) -> None:
    body = b"{}"
    signature = bridge_signature(SECRET, "1760000000", body)

    with pytest.raises(SignatureError, match="window"):
        check_bridge(body, "1760000000", signature, now)


@pytest.mark.parametrize(
    ("timestamp", "signed_timestamp", "body"),
    [
        ("1760000000", "1760000001", b"{}"),
        ("1760000000", "1760000000", b"{ }"),
        (None, "1760000000", b"{}"),
        ("1760000000.5", "1760000000.5", b"{}"),
        ("-5", "-5", b"{}"),
    ],
)
def test_bridge_request_with_bad_timestamp_or_signature_is_refused(
    timestamp: str | None, signed_timestamp: str, body: bytes
) -> None:
    signature = bridge_signature(SECRET, signed_timestamp, b"{}")

    with pytest.raises(SignatureError):
        check_bridge(body, timestamp, signature, 1760000000)
