"""The WhatsApp Cloud API webhook: verification handshake, signature, parsing.

A web framework needs two routes on the callback URL; both calls below are
framework-neutral and return a :class:`WebhookResponse` to copy out::

    webhook = WhatsAppWebhook(app_secret=..., verify_token=...)

    # GET: Meta's handshake, with the decoded query parameters.
    answer = webhook.handle_get(request.query_params)

    # POST: raw body bytes (never re-serialised JSON) and the headers.
    def deliver(batch: WebhookBatch) -> None:
        batcher.push_many([message.to_push() for message in batch.messages])

    answer = webhook.handle_post(raw_body, request.headers, deliver)

``handle_post`` checks the size cap, then the signature, then parses; when
``deliver`` raises, it answers 500 so that Meta delivers the request again
(duplicates are expected and are caught by the dedupe id).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._errors import TransportConfigError
from ._handling import check_size, decode_object, respond
from ._http import get_header
from ._keys import check_tenant
from ._model import ErrorDetail, InboundMessage
from ._reading import list_of, text_of
from ._redact import mask
from ._results import ErrorReport, StatusUpdate, WebhookBatch, WebhookResponse
from ._signing import HUB_SIGNATURE_HEADER, check_hub_signature, secret_bytes
from ._whatsapp_messages import ContactIndex, parse_message, parse_timestamp

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WhatsAppWebhook"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""Default body cap: Meta sends payloads of up to 3 MB."""

_OBJECT = "whatsapp_business_account"
_FIELD = "messages"


class WhatsAppWebhook:
    """Receives WhatsApp Cloud API webhooks.

    Args:
        app_secret: The Meta app secret that signs every POST. Required.
        verify_token: The token typed into the App Dashboard, for the GET
            handshake. None disables the handshake (every GET gets 403).
        phone_number_ids: Business numbers this endpoint serves. Messages to
            any other number are reported in :attr:`WebhookBatch.dropped`;
            their statuses and errors are skipped. None serves every number.
        tenant: Optional prefix for conversation keys, so that two tenants
            sharing one batcher namespace cannot collide.
        max_body_bytes: Larger bodies are refused with 413.
        clock: Returns Unix seconds; used when a message has no timestamp.

    Raises:
        TransportConfigError: When ``app_secret`` is missing or empty, or
            another argument is invalid. Its ``field`` names the argument.
    """

    def __init__(
        self,
        *,
        app_secret: str | bytes | None,
        verify_token: str | None = None,
        phone_number_ids: Iterable[str] | None = None,
        tenant: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app_secret = secret_bytes("app_secret", app_secret)
        if verify_token is not None and not verify_token:
            raise TransportConfigError("verify_token", "must not be empty")
        self._verify_token = verify_token.encode() if verify_token else None
        self._numbers: frozenset[str] | None = None
        if phone_number_ids is not None:
            if isinstance(phone_number_ids, str):
                raise TransportConfigError("phone_number_ids", "must be a collection")
            self._numbers = frozenset(phone_number_ids)
            if not self._numbers:
                raise TransportConfigError("phone_number_ids", "must not be empty")
        self._tenant = check_tenant("tenant", tenant)
        if max_body_bytes < 1:
            raise TransportConfigError("max_body_bytes", "must be positive")
        self.max_body_bytes = max_body_bytes
        self._clock = clock

    def __repr__(self) -> str:
        numbers = "all" if self._numbers is None else len(self._numbers)
        return (
            f"WhatsAppWebhook(tenant={self._tenant!r}, numbers={numbers}, "
            f"max_body_bytes={self.max_body_bytes})"
        )

    def handle_get(self, params: Mapping[str, Any]) -> WebhookResponse:
        """Answer Meta's verification GET.

        Args:
            params: The decoded query parameters (``hub.mode``,
                ``hub.verify_token``, ``hub.challenge``). Values may be strings
                or one-item lists, as ``urllib.parse.parse_qs`` gives them.

        Returns:
            200 with the challenge echoed verbatim as text/plain when the mode
            is ``subscribe`` and the token matches; 400 when the challenge is
            missing; 403 otherwise.
        """
        mode = _single(params, "hub.mode")
        token = _single(params, "hub.verify_token")
        challenge = _single(params, "hub.challenge")
        if self._verify_token is None:
            logger.warning("verification GET refused: no verify_token configured")
            return WebhookResponse(403, "forbidden")
        if mode != "subscribe" or token is None:
            return WebhookResponse(403, "forbidden")
        if not hmac.compare_digest(token.encode(), self._verify_token):
            logger.warning("verification GET refused: verify token does not match")
            return WebhookResponse(403, "forbidden")
        if not challenge:
            return WebhookResponse(400, "missing hub.challenge")
        logger.info("webhook verification handshake accepted")
        return WebhookResponse(200, challenge)

    def verify(self, body: bytes, signature: str | None) -> None:
        """Check the size cap and ``X-Hub-Signature-256`` of a raw body.

        Raises:
            PayloadTooLargeError: The body is over ``max_body_bytes``.
            SignatureError: The signature is missing, malformed or wrong.
        """
        check_size(body, self.max_body_bytes)
        check_hub_signature(self._app_secret, body, signature)

    def parse(self, body: bytes, signature: str | None) -> WebhookBatch:
        """Verify and parse one POST body.

        Args:
            body: The raw request bytes, exactly as received.
            signature: The ``X-Hub-Signature-256`` header value.

        Raises:
            PayloadTooLargeError: The body is over ``max_body_bytes`` (413).
            SignatureError: The signature is missing, malformed or wrong (403).
            MalformedPayloadError: The body is not a JSON object (400).
        """
        self.verify(body, signature)
        return self._collect(decode_object(body))

    def handle_post(
        self,
        body: bytes,
        headers: Mapping[str, Any],
        deliver: Callable[[WebhookBatch], None],
    ) -> WebhookResponse:
        """Verify, parse and deliver one POST; return the answer for Meta.

        Args:
            body: The raw request bytes.
            headers: The request headers, in any mapping (names in any case).
            deliver: Called with the batch, for example to push its messages
                to the batcher. When it raises, the answer is 500 so Meta
                retries.

        Returns:
            200 when delivered (also for ignored or dropped content); the
            :class:`WebhookError` status (400, 403, 413) when refused; 500 when
            ``deliver`` failed.
        """

        def parse() -> WebhookBatch:
            check_size(body, self.max_body_bytes, headers)
            return self.parse(body, get_header(headers, HUB_SIGNATURE_HEADER))

        return respond(parse, deliver)

    def _collect(self, payload: Mapping[str, Any]) -> WebhookBatch:
        if payload.get("object") != _OBJECT:
            logger.debug("ignored webhook for object %r", payload.get("object"))
            return WebhookBatch(ignored=1)
        collector = _Collector()
        entries = payload.get("entry")
        for entry in entries if isinstance(entries, list) else []:
            changes = entry.get("changes") if isinstance(entry, Mapping) else None
            if not isinstance(changes, list):
                collector.ignored += 1
                continue
            waba_id = text_of(entry, "id")
            for change in changes:
                self._read_change(change, waba_id, collector)

        return collector.batch()

    def _read_change(
        self, change: object, waba_id: str | None, out: _Collector
    ) -> None:
        if not isinstance(change, Mapping) or change.get("field") != _FIELD:
            out.ignored += 1
            return
        value = change.get("value")
        metadata = value.get("metadata") if isinstance(value, Mapping) else None
        number = text_of(metadata, "phone_number_id")
        if not isinstance(value, Mapping) or number is None:
            logger.warning("skipped a messages change without phone_number_id")
            out.ignored += 1
            return

        allowed = self._numbers is None or number in self._numbers
        contacts = ContactIndex.build(value.get("contacts"))
        for item in out.items(value, "messages"):
            message = parse_message(
                item,
                phone_number_id=number,
                contacts=contacts,
                tenant=self._tenant,
                clock=self._clock,
            )
            if message is None:
                logger.warning("skipped a message without id or sender")
                out.ignored += 1
            elif allowed:
                logger.debug(
                    "message %s kind=%s in %s",
                    mask(message.message_id),
                    message.kind.value,
                    mask(message.conversation),
                )
                out.messages.append(message)
            else:
                out.dropped.append(message)

        if not allowed:
            logger.warning(
                "dropped updates for unknown business number %s", mask(number)
            )
            out.ignored += len(out.items(value, "statuses"))
            out.ignored += len(out.items(value, "errors"))
            return
        for item in out.items(value, "statuses"):
            status = _parse_status(item, number, self._clock)
            if status is None:
                out.ignored += 1
            else:
                out.statuses.append(status)
        for item in out.items(value, "errors"):
            error = ErrorDetail.from_json(item)
            logger.warning("platform reported error code=%s", error.code)
            out.errors.append(ErrorReport(waba_id, number, error))


class _Collector:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.dropped: list[InboundMessage] = []
        self.statuses: list[StatusUpdate] = []
        self.errors: list[ErrorReport] = []
        self.ignored = 0

    def items(self, value: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        """Return the objects of the list ``value[key]``; count anything else."""
        items = list_of(value, key)
        objects = [item for item in items if isinstance(item, Mapping)]
        self.ignored += len(items) - len(objects)
        return objects

    def batch(self) -> WebhookBatch:
        return WebhookBatch(
            messages=tuple(self.messages),
            statuses=tuple(self.statuses),
            errors=tuple(self.errors),
            dropped=tuple(self.dropped),
            ignored=self.ignored,
        )


def _single(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return value if isinstance(value, str) else None


def _parse_status(
    item: Mapping[str, Any], number: str, clock: Callable[[], float]
) -> StatusUpdate | None:
    message_id = text_of(item, "id")
    status = text_of(item, "status")
    if message_id is None or status is None:
        return None
    errors = item.get("errors")
    return StatusUpdate(
        message_id=message_id,
        status=status,
        timestamp=parse_timestamp(item.get("timestamp"), clock),
        phone_number_id=number,
        recipient_id=text_of(item, "recipient_id"),
        recipient_user_id=text_of(item, "recipient_user_id"),
        callback_data=text_of(item, "biz_opaque_callback_data"),
        errors=tuple(
            ErrorDetail.from_json(e)
            for e in (errors if isinstance(errors, list) else [])
        ),
        raw=item,
    )
