"""Errors raised by the transport adapters.

Every error here derives from one root, itself a :class:`RapidfireError`, so a
caller can catch the whole family::

    TransportError                (a RapidfireError)
    ├── TransportConfigError      (also ValueError) an adapter was built wrongly
    ├── InvalidAddressError       (also ValueError) a reply address cannot be used
    ├── WebhookError              an inbound request must be refused; has ``status``
    │   ├── PayloadTooLargeError  413: the body is over the size cap
    │   ├── SignatureError        403: signature or timestamp missing or wrong
    │   └── MalformedPayloadError 400 (also ValueError): not the JSON we expect
    └── SendError                 an outbound message was not accepted

No message here ever carries a secret, an access token or a message body.
"""

from __future__ import annotations

from .._errors import RapidfireError

__all__ = [
    "InvalidAddressError",
    "MalformedPayloadError",
    "PayloadTooLargeError",
    "SendError",
    "SignatureError",
    "TransportConfigError",
    "TransportError",
    "WebhookError",
]


class TransportError(RapidfireError):
    """Root of every error raised by :mod:`rapidfire.transports`."""


class TransportConfigError(TransportError, ValueError):
    """An adapter was given a missing or invalid setting.

    Attributes:
        field: Name of the offending constructor argument.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class InvalidAddressError(TransportError, ValueError):
    """A reply address is incomplete or belongs to another platform."""


class WebhookError(TransportError):
    """An inbound webhook request must be refused.

    Attributes:
        status: The HTTP status to answer with.
    """

    status: int = 400

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        if status is not None:
            self.status = status
        self.reason = reason


class PayloadTooLargeError(WebhookError):
    """The request body is larger than the configured cap (HTTP 413)."""

    status = 413


class SignatureError(WebhookError):
    """The signature, or the timestamp it covers, is missing or wrong (HTTP 403)."""

    status = 403


class MalformedPayloadError(WebhookError, ValueError):
    """The body is not the JSON shape the adapter expects (HTTP 400)."""

    status = 400


class SendError(TransportError):
    """The platform did not accept an outbound message.

    Attributes:
        code: The platform's error code (``error.code`` in a Graph API reply), or
            None when the reply carried none (network failure, bare HTTP error).
        http_status: The HTTP status of the last attempt, or None when no reply
            came back at all.
        retryable: Whether the failure is of a kind that may succeed later. True
            after retries ran out on a transient error, so a caller can requeue.
        attempts: How many requests were made for the failing part.
        sent_ids: Ids of the parts of a split message that were sent before the
            failure, in order.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        retryable: bool = False,
        attempts: int = 1,
        sent_ids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.retryable = retryable
        self.attempts = attempts
        self.sent_ids = sent_ids

    def __str__(self) -> str:
        base = super().__str__()
        return (
            f"{base} (code={self.code}, http_status={self.http_status}, "
            f"retryable={self.retryable}, attempts={self.attempts})"
        )
