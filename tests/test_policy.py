"""BatchPolicy: defaults, validation, durations, from_env and the retry backoff."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest

from rapidfire import BatchPolicy, ConfigurationError, RapidfireError

DAY = 86400.0


class Extreme(random.Random):
    """An rng whose ``uniform`` always returns the low or the high end."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_defaults():
    policy = BatchPolicy()

    assert (policy.debounce, policy.max_wait, policy.max_size) == (2.0, 20.0, 50)
    assert (policy.lease, policy.max_attempts) == (30.0, 5)
    assert (policy.retry_backoff, policy.retry_backoff_max) == (1.0, 300.0)
    assert policy.ttl == 7 * DAY
    assert policy.dedupe_window == DAY
    assert policy.dead_letter_ttl == 14 * DAY
    assert policy.max_message_bytes == 256 * 1024


def test_policy_is_frozen():
    policy = BatchPolicy()

    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.debounce = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "field", "shown"),
    [
        ({"debounce": -1}, "debounce", "-1"),
        ({"debounce": float("nan")}, "debounce", "nan"),
        ({"max_wait": float("inf")}, "max_wait", "inf"),
        ({"max_wait": 0}, "max_wait", "0"),
        ({"lease": True}, "lease", "True"),
        ({"lease": 0.001}, "lease", "0.001"),
        ({"lease": "30"}, "lease", "'30'"),
        ({"retry_backoff": -0.5}, "retry_backoff", "-0.5"),
        ({"retry_backoff_max": None}, "retry_backoff_max", "None"),
        ({"ttl": -DAY}, "ttl", "-86400"),
        ({"dedupe_window": False}, "dedupe_window", "False"),
        ({"dead_letter_ttl": float("nan")}, "dead_letter_ttl", "nan"),
        ({"max_size": 0}, "max_size", "0"),
        ({"max_size": 10_001}, "max_size", "10001"),
        ({"max_size": True}, "max_size", "True"),
        ({"max_size": 5.0}, "max_size", "5.0"),
        ({"max_attempts": 0}, "max_attempts", "0"),
        ({"max_attempts": -3}, "max_attempts", "-3"),
        ({"max_message_bytes": 0}, "max_message_bytes", "0"),
        ({"debounce": 30, "max_wait": 20}, "debounce", "30"),
        ({"retry_backoff": 9, "retry_backoff_max": 3}, "retry_backoff", "9"),
        ({"ttl": 100.0}, "ttl", "100"),
    ],
)
def test_bad_value_names_the_field_and_the_value(
    options: dict[str, object], field: str, shown: str
):
    with pytest.raises(ConfigurationError) as info:
        BatchPolicy(**options)  # type: ignore[arg-type]

    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RapidfireError)
    assert field in str(info.value)
    assert shown in str(info.value)


def test_debounce_over_max_wait_names_both():
    with pytest.raises(ConfigurationError) as info:
        BatchPolicy(debounce=3, max_wait=2)

    assert "debounce (3 s)" in str(info.value)
    assert "max_wait (2 s)" in str(info.value)


def test_ttl_must_cover_max_wait_and_every_retry():
    policy = BatchPolicy(
        max_wait=10, lease=5, max_attempts=4, retry_backoff_max=20, ttl=110
    )

    with pytest.raises(ConfigurationError, match=r"ttl \(109.9 s\) is too short"):
        BatchPolicy(
            max_wait=10, lease=5, max_attempts=4, retry_backoff_max=20, ttl=109.9
        )
    assert policy.min_ttl == 10 + 4 * (5 + 20)


def test_zero_debounce_and_equal_debounce_and_max_wait_are_allowed():
    eager = BatchPolicy(debounce=0)
    equal = BatchPolicy(debounce=5, max_wait=5)

    assert eager.debounce == 0.0
    assert equal.debounce == equal.max_wait == 5.0


def test_durations_take_timedelta_and_reach_redis_in_milliseconds():
    policy = BatchPolicy(
        debounce=timedelta(milliseconds=250),
        max_wait=timedelta(seconds=3),
        lease=timedelta(minutes=1),
        ttl=timedelta(days=2),
    )

    assert policy.debounce == 0.25
    assert policy.max_wait == 3.0
    assert policy.lease == 60.0
    assert policy.ttl == 2 * DAY
    assert policy.ms("debounce") == 250
    assert policy.ms("lease") == 60_000


def test_fractional_seconds_round_to_whole_milliseconds():
    policy = BatchPolicy(debounce=0.0015, max_wait=1)

    assert policy.ms("debounce") == 2
    assert policy.ms("max_wait") == 1000


# -- from_env -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "text", "field", "value"),
    [
        ("RAPIDFIRE_DEBOUNCE", "1.5", "debounce", 1.5),
        ("RAPIDFIRE_MAX_WAIT", "30", "max_wait", 30.0),
        ("RAPIDFIRE_MAX_SIZE", "12", "max_size", 12),
        ("RAPIDFIRE_LEASE", "45", "lease", 45.0),
        ("RAPIDFIRE_MAX_ATTEMPTS", "2", "max_attempts", 2),
        ("RAPIDFIRE_RETRY_BACKOFF", "0.25", "retry_backoff", 0.25),
        ("RAPIDFIRE_RETRY_BACKOFF_MAX", "60", "retry_backoff_max", 60.0),
        ("RAPIDFIRE_TTL", "864000", "ttl", 864000.0),
        ("RAPIDFIRE_DEDUPE_WINDOW", "3600", "dedupe_window", 3600.0),
        ("RAPIDFIRE_DEAD_LETTER_TTL", "86400", "dead_letter_ttl", 86400.0),
        ("RAPIDFIRE_MAX_MESSAGE_BYTES", "1024", "max_message_bytes", 1024),
    ],
)
def test_from_env_reads_each_variable(var: str, text: str, field: str, value: object):
    policy = BatchPolicy.from_env({var: text})

    assert getattr(policy, field) == value
    assert type(getattr(policy, field)) is type(value)


@pytest.mark.parametrize(
    ("var", "text", "kind"),
    [
        ("RAPIDFIRE_DEBOUNCE", "soon", "a number of seconds"),
        ("RAPIDFIRE_LEASE", "30s", "a number of seconds"),
        ("RAPIDFIRE_MAX_SIZE", "ten", "an integer"),
        ("RAPIDFIRE_MAX_SIZE", "2.5", "an integer"),
        ("RAPIDFIRE_MAX_ATTEMPTS", "x", "an integer"),
        ("RAPIDFIRE_MAX_MESSAGE_BYTES", "1KB", "an integer"),
    ],
)
def test_from_env_bad_value_names_the_variable(var: str, text: str, kind: str):
    with pytest.raises(ConfigurationError) as info:
        BatchPolicy.from_env({var: text})

    assert var in str(info.value)
    assert repr(text) in str(info.value)
    assert kind in str(info.value)


def test_from_env_unset_or_empty_keeps_defaults_and_keywords_win():
    policy = BatchPolicy.from_env(
        {"RAPIDFIRE_DEBOUNCE": "", "RAPIDFIRE_MAX_SIZE": "9"}, max_size=7
    )

    assert policy.debounce == 2.0
    assert policy.max_size == 7


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAPIDFIRE_MAX_ATTEMPTS", "9")

    policy = BatchPolicy.from_env()

    assert policy.max_attempts == 9


def test_from_env_still_validates_the_values():
    with pytest.raises(ConfigurationError, match="max_size"):
        BatchPolicy.from_env({"RAPIDFIRE_MAX_SIZE": "0"})


# -- backoff --------------------------------------------------------------------


def test_backoff_doubles_per_attempt_and_is_capped():
    policy = BatchPolicy(retry_backoff=0.5, retry_backoff_max=5.0)
    top = Extreme(high=True)

    delays = [policy.backoff(attempt, rng=top) for attempt in range(1, 8)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_jitter_stays_within_half_and_all_of_the_nominal():
    policy = BatchPolicy(retry_backoff=0.5, retry_backoff_max=5.0)
    rng = random.Random(1234)
    nominal = {1: 0.5, 2: 1.0, 3: 2.0, 4: 4.0, 5: 5.0, 9: 5.0}

    draws = {a: [policy.backoff(a, rng=rng) for _ in range(200)] for a in nominal}

    for attempt, values in draws.items():
        assert all(0.5 * nominal[attempt] <= v <= nominal[attempt] for v in values)
        assert max(values) - min(values) > 0.25 * nominal[attempt]
    assert policy.backoff(3, rng=Extreme(high=False)) == 1.0


def test_backoff_without_rng_uses_the_module_random():
    policy = BatchPolicy(retry_backoff=1.0, retry_backoff_max=300.0)

    delays = {policy.backoff(20) for _ in range(20)}

    assert all(150.0 <= d <= 300.0 for d in delays)
    assert len(delays) > 1


def test_describe_names_the_batching_rules():
    text = BatchPolicy(debounce=1.5, max_wait=10, max_size=8).describe()

    assert "debounce=1.5s" in text
    assert "max_wait=10s" in text
    assert "max_size=8" in text
