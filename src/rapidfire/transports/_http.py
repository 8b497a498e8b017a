"""The small HTTP layer the senders use: a request value, a reply value, urllib.

Senders take any callable with the :data:`HttpCall` shape, so tests and
applications can swap the transport. The default, :func:`urllib_call`, uses only
the standard library, follows no redirects (a redirect would carry the
``Authorization`` header to another URL) and returns error replies instead of
raising on them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any

from ._errors import SendError, TransportConfigError

__all__ = [
    "HttpCall",
    "HttpRequest",
    "HttpResponse",
    "check_http_url",
    "get_header",
    "json_object",
    "post_once",
    "urllib_call",
]


@dataclass(frozen=True)
class HttpRequest:
    """One POST to make.

    Attributes:
        url: The full URL.
        body: The request body.
        headers: The request headers.
        timeout: Seconds to wait for the reply.
    """

    url: str
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    timeout: float


@dataclass(frozen=True)
class HttpResponse:
    """The reply to an :class:`HttpRequest`, whatever its status."""

    status: int
    body: bytes = field(repr=False)


HttpCall = Callable[[HttpRequest], HttpResponse]
"""Makes one request and returns the reply; raises ``OSError`` when no reply came."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def urllib_call(request: HttpRequest) -> HttpResponse:
    """Make ``request`` with :mod:`urllib.request`.

    Proxies come from the environment as usual in urllib; redirects are not
    followed and come back as their 3xx reply.

    Raises:
        OSError: When no reply came (refused connection, DNS failure, timeout).
    """
    req = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers), method="POST"
    )
    try:
        with _OPENER.open(req, timeout=request.timeout) as reply:
            return HttpResponse(status=reply.status, body=reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(status=error.code, body=error.read())


def get_header(headers: Mapping[str, Any], name: str) -> str | None:
    """Return the header ``name`` from any mapping, ignoring the name's case.

    Works on plain dicts as well as framework header objects. When a framework
    gives a list of values, the first is used.
    """
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            return value if isinstance(value, str) else None
    return None


def post_once(http: HttpCall, request: HttpRequest, what: str) -> HttpResponse:
    """Make one request, turning a missing reply into a :class:`SendError`.

    A :class:`urllib.error.URLError` means the request could not be sent
    (refused connection, DNS failure, connect timeout): the error is marked
    retryable. Any other ``OSError`` came after the request went out (for
    example a read timeout), so the platform may have acted on it; that error
    is not retryable, because sending again could deliver a message twice.

    Raises:
        SendError: When no reply came.
    """
    try:
        return http(request)
    except urllib.error.URLError as error:
        reason = type(error.reason).__name__
        raise SendError(
            f"{what}: request not sent ({reason})", retryable=True
        ) from error
    except OSError as error:
        raise SendError(
            f"{what}: no reply ({type(error).__name__}); it may have been processed"
        ) from error


def check_http_url(field: str, url: str) -> str:
    """Return ``url`` without a trailing slash after checking it is http(s).

    Raises:
        TransportConfigError: When it is not an absolute http or https URL.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TransportConfigError(field, "must be an absolute http(s) URL")
    return url.rstrip("/")


def json_object(body: bytes) -> dict[str, Any]:
    """Parse a reply body that should hold a JSON object; ``{}`` when it does not."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
