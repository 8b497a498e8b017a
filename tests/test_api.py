"""The public surface: __all__, sync/async parity, generated code and the Lua."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import rapidfire
from rapidfire import AsyncBatcher, Batch, Batcher, BatchPolicy, DeadLetter, RedisConfig
from rapidfire._protocol import Protocol
from rapidfire._scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = resources.files("rapidfire").joinpath("scripts")
# Method names that differ by design between the two batchers.
RENAMED = {"aclose": "close"}
KEY_FIELDS = ("m", "b", "d", "ready", "leased", "stats", "dead")


def lua(name: str) -> str:
    return SCRIPTS.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def header(source: str) -> str:
    """The comment block a script opens with."""
    lines = []
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def body(source: str) -> str:
    """The script without comments."""
    return "\n".join(line.split("--", 1)[0] for line in source.splitlines())


def documented_slots(text: str, kind: str) -> set[int]:
    """Slots named in a header (``ARGV[11..]``, the repeated tail, counts as 11)."""
    return {int(n) for n in re.findall(rf"{kind}\[(\d+)(?:\.\.)?\]", text)}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    found = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or not callable(member):
            continue
        found[RENAMED.get(name, name)] = inspect.signature(member)
    return found


def shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: everything but the annotations."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


# -- rapidfire's names ----------------------------------------------------------


def test_all_is_sorted_and_every_name_exists():
    names = rapidfire.__all__

    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert [n for n in names if not hasattr(rapidfire, n)] == []


def test_every_public_class_and_function_is_in_all():
    public = {
        name
        for name, value in vars(rapidfire).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
    }

    assert public - set(rapidfire.__all__) == set()


def test_every_exception_derives_from_rapidfire_error():
    errors = [
        getattr(rapidfire, n)
        for n in rapidfire.__all__
        if inspect.isclass(getattr(rapidfire, n))
        and issubclass(getattr(rapidfire, n), BaseException)
    ]

    assert len(errors) == 10
    assert all(issubclass(e, rapidfire.RapidfireError) for e in errors)
    assert issubclass(rapidfire.ConfigurationError, ValueError)
    assert issubclass(rapidfire.InvalidArgumentError, ValueError)
    assert issubclass(rapidfire.ArgumentTypeError, TypeError)
    assert not issubclass(
        rapidfire.RedisUnavailableError, (ConnectionError, TimeoutError)
    )


# -- sync and async -------------------------------------------------------------


def test_batcher_and_async_batcher_have_the_same_methods():
    sync, asynchronous = public_methods(Batcher), public_methods(AsyncBatcher)

    assert sorted(sync) == sorted(asynchronous)
    assert {n: shape(s) for n, s in sync.items()} == {
        n: shape(s) for n, s in asynchronous.items()
    }


def test_async_batcher_methods_are_coroutines_and_sync_ones_are_not():
    names = [n for n in public_methods(AsyncBatcher) if n != "close"]

    assert all(inspect.iscoroutinefunction(getattr(AsyncBatcher, n)) for n in names)
    assert inspect.iscoroutinefunction(AsyncBatcher.aclose)
    assert not any(
        inspect.iscoroutinefunction(getattr(Batcher, n)) for n in [*names, "close"]
    )


def test_both_batchers_expose_the_same_properties():
    def properties(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if isinstance(v, property)}

    assert (
        properties(Batcher)
        == properties(AsyncBatcher)
        == {
            "config",
            "policy",
            "protocol",
        }
    )


def test_generated_sync_code_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_batchers_refuse_a_config_or_policy_of_the_wrong_type():
    config = RedisConfig.from_url("memory://")

    with pytest.raises(
        rapidfire.ArgumentTypeError, match="config must be a RedisConfig"
    ):
        Batcher("redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(
        rapidfire.ArgumentTypeError, match="policy must be a BatchPolicy"
    ):
        AsyncBatcher(config, {"debounce": 1})  # type: ignore[arg-type]


def test_repr_of_a_batcher_shows_where_but_no_password():
    config = RedisConfig.from_url("redis://u:pw-secret@h:6390/2", namespace="ns")

    text = repr(Batcher(config))

    assert "h:6390" in text
    assert "pw-secret" not in text


# -- the Lua scripts ------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_opens_with_a_header_listing_keys_argv_and_return(name: str):
    text = header(lua(name))

    assert text.startswith(f"-- {name}:")
    assert "KEYS[1]" in text
    assert "ARGV[1]" in text
    assert "Returns" in text


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_slot_a_script_reads_is_in_its_header(name: str):
    source = lua(name)
    documented = header(source)
    code = body(source)

    for kind in ("KEYS", "ARGV"):
        used = documented_slots(code, kind)
        assert used <= documented_slots(documented, kind), kind


@pytest.mark.parametrize("name", ["_lib", *SCRIPT_NAMES])
def test_no_script_lists_or_flushes_the_keyspace(name: str):
    code = body(lua(name))

    forbidden = re.findall(
        r"redis\.p?call\(\s*['\"](KEYS|SCAN|FLUSHDB|FLUSHALL|SCRIPT)['\"]",
        code,
        flags=re.IGNORECASE,
    )

    assert forbidden == []


@pytest.mark.parametrize("name", [n for n in SCRIPT_NAMES if n != "claim"])
def test_scripts_other_than_claim_take_every_key_from_keys(name: str):
    code = body(lua(name))
    tables = re.findall(r"local (?:keys|ctx) = \{(.*?)\}", code, flags=re.S)
    bound = dict(
        pair
        for table in tables
        for pair in re.findall(r"(\w+)\s*=\s*([^,]+?)\s*(?:,|$)", table.strip())
        if pair[0] in KEY_FIELDS
    )
    # keys.d = KEYS[i] binds a key the script declares only when it needs it.
    bound.update(re.findall(r"keys\.(\w+) = (KEYS\[[\w +]+\])", code))
    # shard_ctx({KEYS[a], KEYS[b], ...}, settings) binds ready, leased, stats, dead.
    for listed in re.findall(r"shard_ctx\(\{([^}]*)\}", code):
        values = [v.strip() for v in listed.split(",")]
        bound.update(zip(("ready", "leased", "stats", "dead"), values))
    # The first argument of each direct command: the key it touches.
    touched = re.findall(r"redis\.call\(\s*'[A-Z]+'\s*,\s*([^,)]+)", code)
    # ... and of the _lib helpers that take a key first.
    touched += re.findall(r"\b(?:zadd|zcard|first_score)\(\s*([^,)]+)", code)

    assert touched
    assert "conversation_keys(" not in code
    assert "prefix" not in code
    assert re.findall(r"\.\.\s*'[a-z]+:'", code) == []
    assert {
        f: v for f, v in bound.items() if not re.fullmatch(r"KEYS\[[\w +]+\]", v)
    } == {}
    assert [
        key
        for key in touched
        if not re.fullmatch(r"KEYS\[[\w +]+\]", key)
        and not (key.split(".")[0] in ("keys", "ctx") and key.split(".")[-1] in bound)
    ] == []


def test_only_the_conversation_helper_builds_keys_in_the_library():
    code = body(lua("_lib"))
    helper = re.search(r"local function conversation_keys.*?\nend\n", code, re.S)

    outside = code.replace(helper.group(0), "") if helper else code

    assert helper is not None

    assert re.findall(r"\.\.\s*'[a-z]+:'", outside) == []
    assert "prefix" not in outside


def sample_batch() -> Batch:
    return Batch(
        id="1-0-1",
        conversation="c",
        messages=("m",),
        attempt=1,
        reason=rapidfire.ReadyReason.QUIET,
        first_push_at=1.0,
        last_push_at=1.0,
        ready_at=1.0,
        claimed_at=1.0,
        lease_expires_at=2.0,
        token=7,
    )


def test_every_call_passes_as_many_keys_and_argv_as_its_script_documents():
    protocol = Protocol(RedisConfig.from_url("memory://", shards=2), BatchPolicy())
    batch = sample_batch()
    dead = DeadLetter("1-0-1", "c", ("m",), 3, "e", "retry", 1.0, 1.0, 2.0)
    calls = [
        protocol.push_call("c", "m", None),
        protocol.push_call("c", "m", "wamid.1"),
        protocol.claim_call(1, 10),
        protocol.peek_call(1),
        protocol.ack_call(batch),
        protocol.nack_call(batch, 1.0, "e"),
        protocol.extend_call(batch, 3.0),
        protocol.owns_call(batch),
        protocol.flush_call("c"),
        protocol.requeue_call(dead),
        protocol.purge_call("1-0-1"),
    ]

    for call in calls:
        assert call.script is not None
        text = header(lua(call.script.name))
        keys = max(documented_slots(text, "KEYS"))
        argv = max(documented_slots(text, "ARGV"))
        if call.script.name == "push":
            # Per conversation m:, b: and, with a dedupe id, d:; ARGV[4..]:
            # id, n, n pairs.
            dedupe = 1 if call.args[5] else 0
            assert len(call.keys) == keys + 2 + dedupe
            assert len(call.args) == argv + 3
        else:
            assert len(call.keys) == keys, call.script.name
            assert len(call.args) == argv, call.script.name


def test_claim_shares_its_limit_among_the_shards_that_have_work():
    protocol = Protocol(RedisConfig.from_url("memory://", shards=4), BatchPolicy())
    peeks = [(0, 0), (3, 1), (0, 0), (5, 0)]  # (ready now, leases run out)

    assert protocol.claim_plan(peeks, start=2, limit=6) == [(3, 5), (1, 1)]
    assert protocol.claim_plan(peeks, start=0, limit=20) == [(1, 4), (3, 5)]
    assert protocol.claim_plan(peeks, start=1, limit=0) == []
    assert protocol.claim_plan([(0, 0)] * 4, start=0, limit=10) == []


@pytest.mark.parametrize("primaries", [3, 5, 10, 16, 20, 30])
def test_256_shards_fall_evenly_on_3_to_30_primaries(primaries: int):
    """With the slots split evenly, as redis-cli --cluster create does."""
    from redis.crc import key_slot

    from rapidfire._keys import shard_tag

    slots = [key_slot(shard_tag(256, i).encode()) for i in range(256)]
    base, extra = divmod(16384, primaries)
    counts, start = [], 0
    for i in range(primaries):
        size = base + (1 if i < extra else 0)
        counts.append(sum(start <= s < start + size for s in slots))
        start += size
    mean = 256 / primaries

    assert max(abs(c - mean) / mean for c in counts) <= 0.10, counts
