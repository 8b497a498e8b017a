"""Redis memory per pending message and per pending conversation.

On the private server (database 2, emptied between samples, with the
default namespace ``rapidfire`` so that key names are as long as in a real
deployment's): 100k messages
of exactly 150 bytes encoded are pushed as pending batches (an hour's
debounce), 1 per conversation (100k conversations) or 10 per conversation
(10k conversations), and the growth of INFO memory ``used_memory`` is
divided by the messages and by the conversations. The connections that
pushed are closed before memory is read, so their buffers are not counted.

The baseline stores the same messages in the cheapest way: one plain Redis
list per conversation (``RPUSH``) under the very name of rapidfire's message
list, no expiry, no index, no batch records.
A third configuration pushes each message with a 40-character dedupe id, as a
webhook does with the platform's message id; its baseline is the same plain
lists. Two rounds alternate rapidfire and baseline (the figures are deterministic to
a byte or two); figures are the median.

The note of each per-conversation figure breaks one conversation down with
``MEMORY USAGE`` (key, value and allocator overhead of each key, without
their expiry entries and without the ready index entry).
"""

from __future__ import annotations

import time
from typing import Any

from rapidfire import Batcher, BatchPolicy, RedisConfig

from ._harness import Setup, Table, compare

POLICY = BatchPolicy(debounce=3600, max_wait=7200, max_size=50)
PAYLOAD_BYTES = 150
MESSAGES = 100_000
DB = 2
GOAL_BYTES = 64.0
CONFIGS = (
    ("1 msg/conversation", 1, False),
    ("10 msgs/conversation", 10, False),
    ("10 msgs/conv., dedupe ids", 10, True),
)


def _message(codec_encode: Any) -> dict[str, str]:
    """A message whose encoding is exactly PAYLOAD_BYTES long."""
    message = {"text": ""}
    message["text"] = "x" * (PAYLOAD_BYTES - len(codec_encode(message)))
    assert len(codec_encode(message)) == PAYLOAD_BYTES
    return message


def run(setup: Setup, table: Table) -> None:
    assert setup.private is not None
    rounds = min(setup.rounds, 2)
    messages = max(10_000, int(MESSAGES * min(setup.scale, 1.0)))
    probe = setup.private.client(DB)
    config = RedisConfig.from_url(
        f"redis://127.0.0.1:{setup.private.port}/{DB}", namespace="rapidfire"
    )
    encode = Batcher(config).protocol.codec.encode
    message = _message(encode)
    payload = encode(message)
    try:
        _ours(config, 100, 1, False, message)  # load the scripts once
        probe.flushdb()
        for label, per, dedupe in CONFIGS:
            conversations = messages // per
            ours: list[float] = []
            bare: list[float] = []
            breakdown = ""
            for r in range(rounds):
                order = ["ours", "bare"] if r % 2 == 0 else ["bare", "ours"]
                for side in order:
                    before = _used(probe)
                    if side == "ours":
                        _ours(config, conversations, per, dedupe, message)
                    else:
                        _bare(config, conversations, per, payload)
                    grown = _used(probe) - before
                    (ours if side == "ours" else bare).append(grown)
                    if side == "ours" and not breakdown:
                        breakdown = _breakdown(probe, config)
                    probe.flushdb()
            _figures(table, label, per, conversations, ours, bare, breakdown)
    finally:
        probe.flushdb()
        probe.close()


def _figures(
    table: Table,
    label: str,
    per: int,
    conversations: int,
    ours: list[float],
    bare: list[float],
    breakdown: str,
) -> None:
    messages = conversations * per
    with_goal = per == 10 and "dedupe" not in label
    table.add(
        compare(
            f"memory/message beyond payload, {label}",
            "B",
            [g / messages - PAYLOAD_BYTES for g in ours],
            [g / messages - PAYLOAD_BYTES for g in bare],
            "plain lists",
            goal=f"< {GOAL_BYTES:g} B" if with_goal else "(none set)",
            met=_under_goal if with_goal else None,
            note=f"payload {PAYLOAD_BYTES} B/message, {messages:,} messages",
        )
    )
    table.add(
        compare(
            f"memory/conversation, {label}",
            "B",
            [g / conversations for g in ours],
            [g / conversations for g in bare],
            "plain lists",
            goal="(none set)",
            note=f"{conversations:,} conversations; {breakdown}",
        )
    )


def _under_goal(value: float, _: float) -> bool:
    return value < GOAL_BYTES


def _used(probe: Any) -> int:
    time.sleep(0.2)  # let the server's cron settle its client buffers
    return int(probe.info("memory")["used_memory"])


def _ours(
    config: RedisConfig,
    conversations: int,
    per: int,
    dedupe: bool,
    message: dict[str, str],
) -> None:
    with Batcher(config, POLICY) as batcher:
        items: list[Any] = []
        for c in range(conversations):
            for m in range(per):
                if dedupe:
                    items.append((f"1555{c:07d}", message, f"wamid.{c:024d}{m:010d}"))
                else:
                    items.append((f"1555{c:07d}", message))
            if len(items) >= 2000:
                batcher.push_many(items)
                items = []
        if items:
            batcher.push_many(items)


def _bare(config: RedisConfig, conversations: int, per: int, payload: bytes) -> None:
    client = config.client()
    layout = Batcher(config).protocol.layout
    try:
        pipe = client.pipeline(transaction=False)
        for c in range(conversations):
            key = layout.conversation(f"1555{c:07d}").messages
            pipe.rpush(key, *[payload] * per)
            if len(pipe) >= 2000 // per:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


def _breakdown(probe: Any, config: RedisConfig) -> str:
    """MEMORY USAGE of each key of one conversation, in bytes."""
    keys = Batcher(config).protocol.layout.conversation("15550000000")
    parts = []
    for name, key in (
        ("m:", keys.messages),
        ("b:", keys.batches),
        ("c:", keys.state),
        ("d:", keys.dedupe),
    ):
        usage = probe.memory_usage(key, samples=0)
        if usage:
            parts.append(f"{name} {usage} B")
    ready = probe.memory_usage(keys.shard.ready, samples=0) or 0
    count = probe.zcard(keys.shard.ready) or 1
    parts.append(f"ready index {ready / count:.0f} B/entry")
    return "one conversation: " + ", ".join(parts)
