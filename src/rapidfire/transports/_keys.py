"""Layout of the conversation keys the adapters build.

Every key starts with a platform tag, then an optional tenant, then the
platform's own address parts:

- Cloud API: ``wa:[<tenant>:]<phone_number_id>:<g|u|p>:<id>``
- Baileys bridge: ``wa-web:[<tenant>:]<chat jid>``

A tenant (or linked account) holds neither ``:`` nor ``/`` nor whitespace, so
it cannot be mistaken for the parts after it.
"""

from __future__ import annotations

from ._errors import TransportConfigError

__all__ = ["baileys_conversation_key", "check_tenant", "whatsapp_conversation_key"]


def check_tenant(field: str, tenant: str | None) -> str | None:
    """Return ``tenant`` after checking it can sit inside a conversation key.

    Raises:
        TransportConfigError: When it is empty or holds ``:``, ``/``,
            whitespace or unprintable characters; ``field`` names the argument.
    """
    if tenant is None:
        return None
    if (
        not tenant
        or any(c in ":/" or c.isspace() for c in tenant)
        or not tenant.isprintable()
    ):
        raise TransportConfigError(
            field, "must be non-empty, printable, without ':', '/' or whitespace"
        )
    return tenant


def whatsapp_conversation_key(
    phone_number_id: str,
    *,
    group_id: str | None,
    user_id: str | None,
    phone: str | None,
    tenant: str | None = None,
) -> str:
    """Return the batching key of a Cloud API conversation.

    The tag and id after the business number are, by preference, ``g`` and the
    group id, ``u`` and the user's BSUID, or ``p`` and the phone number's
    digits. The receiving business number is part of the key, so one user
    writing to two business numbers makes two conversations, and the tag keeps
    a group id, a BSUID and a phone number from ever meeting.

    A user whose payloads carried only a phone number and later carry a BSUID
    (Meta adds ``from_user_id`` to every webhook from 2026) changes key once;
    so does a user whose BSUID is regenerated after a phone number change. An
    application that must bridge the two keeps its own phone-to-BSUID map.

    Raises:
        ValueError: When none of ``group_id``, ``user_id`` and ``phone`` is set.
    """
    prefix = f"wa:{tenant}:{phone_number_id}" if tenant else f"wa:{phone_number_id}"
    if group_id:
        return f"{prefix}:g:{group_id}"
    if user_id:
        return f"{prefix}:u:{user_id}"
    if phone:
        return f"{prefix}:p:{phone}"
    raise ValueError("a conversation needs a group id, a user id or a phone")


def baileys_conversation_key(chat_jid: str, *, account: str | None = None) -> str:
    """Return the batching key of a Baileys chat (normalized JID expected).

    A chat that Baileys addresses by phone number (``…@s.whatsapp.net``) in one
    event and by LID (``…@lid``) in another gets two keys; an application that
    must merge them keeps its own LID-to-phone map.
    """
    return f"wa-web:{account}:{chat_jid}" if account else f"wa-web:{chat_jid}"
