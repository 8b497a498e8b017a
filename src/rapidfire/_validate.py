"""Checks shared by the config, the policy and the batchers.

Durations are accepted as seconds or ``timedelta``, kept as float seconds, and
turned into whole milliseconds only at the Redis edge.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Union

from ._errors import ConfigurationError, InvalidArgumentError

Duration = Union[float, int, timedelta]

__all__ = [
    "Duration",
    "argument_seconds",
    "as_seconds",
    "check_int",
    "seconds",
    "to_ms",
]


# Ten years: a longer duration is a mistake, and Redis scripts keep times as
# millisecond numbers that must stay exact.
MAX_SECONDS = 10 * 365 * 86400.0


def seconds(
    field: str,
    value: object,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_SECONDS,
    error: type[ValueError] = ConfigurationError,
) -> float:
    """Return ``value`` as float seconds, or raise ``error`` naming ``field``."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        raise error(
            f"{field} must be a number of seconds or a timedelta, got {value!r}"
        )
    if math.isnan(result) or math.isinf(result):
        raise error(f"{field} must be finite, got {value!r}")
    if result < minimum:
        raise error(f"{field} must be at least {minimum:g} s, got {value!r}")
    if result > maximum:
        raise error(f"{field} must be at most {maximum:g} s, got {value!r}")
    return result


def argument_seconds(
    field: str,
    value: object,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_SECONDS,
) -> float:
    """:func:`seconds` for a call's argument: raises InvalidArgumentError."""
    return seconds(
        field, value, minimum=minimum, maximum=maximum, error=InvalidArgumentError
    )


def as_seconds(value: Duration) -> float:
    """A validated duration as float seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def to_ms(value: Duration) -> int:
    """Seconds to whole milliseconds, as Redis scripts take them."""
    return round(as_seconds(value) * 1000)


def check_int(name: str, value: object, low: int, high: int) -> None:
    """Raise naming ``name`` unless ``value`` is an int from ``low`` to ``high``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise ConfigurationError(
            f"{name} must be an integer from {low} to {high}, got {value!r}"
        )
