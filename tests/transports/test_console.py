"""The console senders."""

from __future__ import annotations

import io

import anyio
import pytest

from rapidfire.transports import AsyncConsoleSender, ConsoleSender, ReplyAddress

from ._payloads import NUMBER_ID, PHONE_A

ADDRESS = ReplyAddress("whatsapp", phone_number_id=NUMBER_ID, to=f"+{PHONE_A}")


def test_prints_the_reply_with_a_masked_destination() -> None:
    stream = io.StringIO()
    sender = ConsoleSender(stream)

    ids = sender.send_text(ADDRESS, "the reply") + sender.send_text(ADDRESS, "again")

    assert ids == ["console-1", "console-2"]
    assert "the reply\n" in stream.getvalue()
    assert "…0001" in stream.getvalue()
    assert PHONE_A not in stream.getvalue()


def test_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleSender().send_text(ADDRESS, "to stdout")

    assert "to stdout" in capsys.readouterr().out


def test_async_console_sender() -> None:
    stream = io.StringIO()
    sender = AsyncConsoleSender(stream)

    async def main() -> list[str]:
        return await sender.send_text(ADDRESS, "async reply")

    assert anyio.run(main) == ["console-1"]
    assert "async reply" in stream.getvalue()
