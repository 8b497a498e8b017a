"""Splitting replies to the 4096-character limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapidfire.transports import WHATSAPP_TEXT_LIMIT, split_text
from rapidfire.transports._split import utf16_length

THUMBS = "\U0001f44d"


def test_short_text_is_one_part() -> None:
    assert split_text("hello") == ["hello"]
    assert split_text("") == []
    assert split_text("x" * 4096) == ["x" * 4096]


def test_9000_characters_of_words_split_at_spaces() -> None:
    text = " ".join(f"w{n:04d}" for n in range(1500))
    assert len(text) > 8990

    parts = split_text(text)

    assert len(parts) == 3
    assert all(utf16_length(part) <= WHATSAPP_TEXT_LIMIT for part in parts)
    assert "".join(parts) == text
    assert all(part.endswith(" ") for part in parts[:-1])


def test_line_breaks_are_preferred_over_spaces() -> None:
    text = "a" * 60 + "\n" + "b " * 10 + "c" * 10

    parts = split_text(text, limit=80)

    assert parts[0] == "a" * 60 + "\n"


def test_blank_lines_are_preferred_over_line_breaks() -> None:
    text = "p" * 50 + "\n\n" + "q" * 10 + "\n" + "r" * 30

    parts = split_text(text, limit=80)

    assert parts[0] == "p" * 50 + "\n\n"


def test_an_early_break_is_not_taken_when_it_leaves_a_tiny_part() -> None:
    text = "ab\n" + "x" * 200

    parts = split_text(text, limit=100)

    assert len(parts[0]) == 100


def test_text_without_whitespace_is_cut_hard() -> None:
    parts = split_text("x" * 9000)

    assert [len(p) for p in parts] == [4096, 4096, 808]


def test_emoji_count_two_units_and_are_never_cut() -> None:
    text = THUMBS * 3000

    parts = split_text(text)

    assert all(utf16_length(part) <= 4096 for part in parts)
    assert [len(p) for p in parts] == [2048, 952]
    assert "".join(parts) == text


def test_a_surrogate_pair_held_as_two_code_points_is_not_cut() -> None:
    pair = "\ud83d\udc4d"
    text = "a" + pair * 5

    parts = split_text(text, limit=4)

    assert parts == ["a" + pair, pair * 2, pair * 2]
    assert not any("\udc00" <= part[0] <= "\udfff" for part in parts)


def test_a_combining_mark_stays_with_its_letter_when_possible() -> None:
    text = "x" * 9 + "e\u0301" + "y" * 5

    parts = split_text(text, limit=10)

    assert parts[0] == "x" * 9
    assert parts[1].startswith("e\u0301")


def test_limit_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_text("abc", limit=1)


@settings(max_examples=100)
@given(text=st.text(max_size=200), limit=st.integers(min_value=2, max_value=40))
def test_parts_fit_and_rejoin_to_the_original(text: str, limit: int) -> None:
    parts = split_text(text, limit)

    assert "".join(parts) == text
    assert all(part for part in parts)
    assert all(utf16_length(part) <= limit for part in parts)


@settings(max_examples=30)
@given(
    unit=st.text(
        alphabet=st.sampled_from(["a", " ", "\n", "é", THUMBS, "\u200d", "\u0301"]),
        min_size=1,
        max_size=16,
    )
)
def test_real_limit_holds_for_long_mixed_text(unit: str) -> None:
    text = unit * (9000 // len(unit) + 1)

    parts = split_text(text)

    assert "".join(parts) == text
    assert all(utf16_length(part) <= WHATSAPP_TEXT_LIMIT for part in parts)
