"""Everything about a batcher that is not I/O, shared by Batcher and AsyncBatcher.

A :class:`Call` is one request to Redis: a script with its KEYS and ARGV, or a
plain read command. :class:`Protocol` validates arguments, builds the calls of
each operation and decodes their replies; the batchers only send them.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard, Union

from ._codec import Codec, JsonCodec
from ._config import RedisConfig
from ._errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    LayoutMismatchError,
    RedisUnavailableError,
)
from ._keys import ConversationKeys, Layout, ShardKeys
from ._logging import mask
from ._models import (
    Batch,
    BatchView,
    ConversationState,
    DeadLetter,
    Peer,
    PushReceipt,
    ReadyReason,
    Stats,
)
from ._policy import BatchPolicy
from ._scripts import Script, script

__all__ = [
    "SERVERS_CHECKED",
    "Call",
    "ClaimResult",
    "NackOutcome",
    "Protocol",
    "PushItem",
    "decode_counters",
    "raise_first_error",
    "retry_delays",
    "score_pairs",
    "stored_messages",
]

log = logging.getLogger("rapidfire.batcher")

Arg = Union[str, bytes, int]
NackOutcome = Literal["retry", "dead", "lost"]
PushItem = Union[tuple[str, Any], tuple[str, Any, str | None]]

MAX_CONVERSATION_BYTES = 512
MAX_DEDUPE_BYTES = 256
PUSH_CALL_MESSAGES = 256
PEER_FORGET_MS = 86400 * 1000
# Servers (where, db) whose settings this process has already warned about.
SERVERS_CHECKED: set[tuple[str, int | None]] = set()
LAYOUT_TTL_MS = 30 * 86400 * 1000
_COUNTERS = (
    "pushed",
    "duplicates",
    "claimed",
    "acked",
    "retried",
    "released",
    "dead_lettered",
    "requeued",
    "expired_batches",
    "expired_messages",
)


class Call:
    """One request: a script (``script`` set) or a plain command.

    ``idempotent`` marks a request that may be sent again after a connection
    failure left its outcome unknown. ``patient`` (the default) lets a request
    that a cluster slot migration stands in the way of be sent again for
    seconds; a claim is not, since its caller claims again anyway and a worker
    has other shards to serve meanwhile.
    """

    __slots__ = ("args", "idempotent", "keys", "patient", "script")

    def __init__(
        self,
        keys: tuple[str | bytes, ...],
        args: tuple[Arg, ...],
        script: Script | None = None,
        idempotent: bool = True,
        patient: bool = True,
    ) -> None:
        self.keys = keys
        self.args = args
        self.script = script
        self.idempotent = idempotent
        self.patient = patient

    def __repr__(self) -> str:
        name = self.script.name if self.script else self.args[0]
        return f"Call({name!r}, keys={len(self.keys)}, args={len(self.args)})"

    @staticmethod
    def command(*parts: Arg) -> Call:
        """A plain command such as ``Call.command("ZCARD", key)``."""
        return Call(keys=(), args=parts)


@dataclass(frozen=True)
class ClaimResult:
    """The decoded reply of one shard's claim."""

    shard: int
    batches: list[Batch]
    server_now_ms: int
    next_deadline_ms: int | None
    ready: int
    leased: int
    expired_batches: int
    expired_messages: int
    dead_lettered: int
    undecodable: list[tuple[Batch, str]] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _seconds(ms: Any) -> float:
    return int(float(ms)) / 1000.0


def decode_counters(reply: Any) -> dict[str, int]:
    """A shard's stats hash (HGETALL reply) as counter name -> value."""
    return {_text(key): int(value) for key, value in dict(reply).items()}


def stored_messages(counters: dict[str, int]) -> int:
    """Messages a shard still stores, from its counters: pushed and requeued,
    less those acknowledged, dead-lettered or expired."""
    return (
        counters.get("pushed", 0)
        + counters.get("requeued_messages", 0)
        - counters.get("acked_messages", 0)
        - counters.get("dead_messages", 0)
        - counters.get("expired_messages", 0)
    )


def score_pairs(reply: Sequence[Any]) -> list[tuple[Any, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs.

    redis-py returns it flat or paired depending on version and client; both
    shapes are accepted.
    """
    if reply and isinstance(reply[0], (list, tuple)):
        return [(member, float(score)) for member, score in reply]
    return [(m, float(s)) for m, s in zip(reply[::2], reply[1::2])]


def _check_id(
    value: object, field: str, kind: str, limit: int, *, preview: bool = False
) -> str:
    """A non-empty str of at most ``limit`` UTF-8 bytes, or the error naming
    ``field`` and the value (cut short; ``preview`` shows the start of one
    that is too long)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{field} must be {kind}, got {type(value).__name__} {value!r:.80}"
        )
    if not value:
        raise InvalidArgumentError(f"{field} must not be empty, got ''")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"{field} must be valid Unicode, got {value!r:.80}"
        ) from None
    if size > limit:
        raise InvalidArgumentError(
            f"{field} must be at most {limit} bytes, got {size} bytes"
            + (f" ({value[:40]!r}...)" if preview else "")
        )
    return value


class Protocol:
    """Builds and decodes the requests of one namespace under one policy."""

    def __init__(
        self,
        config: RedisConfig,
        policy: BatchPolicy,
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.clock = clock
        # Until the server says whether it is a cluster (see _ready), an
        # unset shard count stands at the single-server default.
        self.layout = Layout(config.namespace, config.shards or 1)
        # On a cluster PUBLISH reaches the subscribers of every node, so a
        # worker hears every shard's wakes on whichever node it listens.
        self.publish = "PUBLISH"
        p = policy
        self._push_policy = (
            f"{p.ms('debounce')}|{p.ms('max_wait')}|{p.max_size}|"
            f"{p.ms('dedupe_window')}"
        )
        self._settings = [
            f"{p.ms('ttl')}|{p.ms('dead_letter_ttl')}|{self.layout.wake_channel}|"
            f"{self.publish}|{shard}"
            for shard in range(self.layout.shards)
        ]
        self._settings_bytes = [text.encode() for text in self._settings]
        self._push_policy_bytes = self._push_policy.encode()

    def with_config(self, config: RedisConfig) -> Protocol:
        """The same policy, codec and clock for another (resolved) config."""
        return Protocol(config, self.policy, self.codec, self.clock)

    # -- shared argument pieces -----------------------------------------------

    def now(self) -> str:
        """ARGV[1] of every script: '' for the server clock, or the test clock."""
        if self.clock is None:
            return ""
        return str(round(self.clock() * 1000))

    @property
    def shard_count(self) -> int:
        return self.layout.shards

    # -- validation -------------------------------------------------------------

    def check_conversation(
        self, conversation: object, field: str = "conversation"
    ) -> str:
        return _check_id(
            conversation, field, "a str", MAX_CONVERSATION_BYTES, preview=True
        )

    def check_dedupe(self, dedupe_id: object, field: str = "dedupe_id") -> str:
        if dedupe_id is None:
            return ""
        return _check_id(dedupe_id, field, "a str or None", MAX_DEDUPE_BYTES)

    def encode_message(self, message: object, field: str = "message") -> bytes:
        try:
            data = self.codec.encode(message)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ArgumentTypeError(
                f"{field} cannot be encoded by {self.codec!r}: {exc}"
                f" (got {type(message).__name__})"
            ) from exc
        if not isinstance(data, bytes):
            raise ArgumentTypeError(
                f"{field}: codec {self.codec!r} returned {type(data).__name__},"
                " not bytes"
            )
        if len(data) > self.policy.max_message_bytes:
            raise InvalidArgumentError(
                f"{field} is {len(data)} bytes encoded, over max_message_bytes"
                f" ({self.policy.max_message_bytes})"
            )
        return data

    def check_limit(self, limit: object) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"limit must be an integer >= 1, got {limit!r}")
        return limit

    def check_batch(self, batch: object) -> Batch:
        if not isinstance(batch, Batch):
            raise ArgumentTypeError(
                f"batch must be a Batch from claim(), got {type(batch).__name__}"
            )
        return batch

    # -- layout -----------------------------------------------------------------

    def layout_calls(self) -> list[Call]:
        key = self.layout.layout_key
        record = self.layout.record()
        return [
            Call.command("SET", key, record, "NX", "PX", LAYOUT_TTL_MS),
            Call.command("GET", key),
            Call.command("PEXPIRE", key, LAYOUT_TTL_MS),
        ]

    def check_layout(self, replies: Sequence[Any]) -> None:
        stored = replies[1]
        if stored is None:
            return
        try:
            found = json.loads(_text(stored))
        except ValueError:
            found = None
        expected = json.loads(self.layout.record())
        if found == expected:
            return
        where = (
            f"namespace {self.config.namespace!r} at {self.config.where}"
            f" db={self.config.db} was created with layout {_text(stored)},"
            f" but this process is configured for {self.layout.record()}"
        )
        if isinstance(found, dict) and found.get("format") != expected["format"]:
            raise LayoutMismatchError(
                f"{where}: it was written by another version of rapidfire, whose"
                " keys this one cannot read; let that version's workers drain it,"
                " or use a new namespace"
            )
        shards = found.get("shards") if isinstance(found, dict) else None
        raise LayoutMismatchError(
            f"{where}: every process of a namespace must use the same shards"
            " setting"
            + (f" (RAPIDFIRE_SHARDS={shards})" if isinstance(shards, int) else "")
        )

    # -- push -------------------------------------------------------------------

    def push_calls(self, items: Iterable[Any]) -> tuple[list[Call], list[list[int]]]:
        """Validate and encode every item, then group them into calls.

        One call per shard (split past ``PUSH_CALL_MESSAGES`` messages), each
        carrying its conversations' messages in their order. Returns the calls
        and, for each, the positions in ``items`` of the receipts its reply
        decodes to. Raises before anything is sent when any item is invalid.
        """
        shards: dict[int, dict[str, list[tuple[int, str, bytes]]]] = {}
        for position, item in enumerate(items):
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise ArgumentTypeError(
                    f"items[{position}] must be (conversation, message) or"
                    f" (conversation, message, dedupe_id), got {item!r:.80}"
                )
            conversation = self.check_conversation(
                item[0], f"items[{position}] conversation"
            )
            dedupe = self.check_dedupe(
                item[2] if len(item) == 3 else None, f"items[{position}] dedupe_id"
            )
            data = self.encode_message(item[1], f"items[{position}] message")
            shard = self.layout.shard_of(conversation)
            group = shards.setdefault(shard, {}).setdefault(conversation, [])
            group.append((position, dedupe, data))
        calls: list[Call] = []
        positions: list[list[int]] = []
        for conversations in shards.values():
            chunk: list[tuple[str, list[tuple[int, str, bytes]]]] = []
            size = 0
            for conversation, group in conversations.items():
                if chunk and size + len(group) > PUSH_CALL_MESSAGES:
                    calls.append(self._push_call(chunk))
                    positions.append([p for _, g in chunk for p, _, _ in g])
                    chunk, size = [], 0
                chunk.append((conversation, group))
                size += len(group)
            calls.append(self._push_call(chunk))
            positions.append([p for _, g in chunk for p, _, _ in g])
        return calls, positions

    def push_call(self, conversation: str, message: object, dedupe_id: object) -> Call:
        conversation = self.check_conversation(conversation)
        dedupe = self.check_dedupe(dedupe_id)
        data = self.encode_message(message)
        return self._push_call([(conversation, [(0, dedupe, data)])])

    def _push_call(
        self, conversations: Sequence[tuple[str, Sequence[tuple[int, str, bytes]]]]
    ) -> Call:
        shard = self.layout.conversation(conversations[0][0]).shard
        keys: list[str | bytes] = list(shard.push_keys)
        args: list[Arg] = [
            self.now(),
            self._settings_bytes[shard.index],
            self._push_policy_bytes,
        ]
        idempotent = True
        for conversation, group in conversations:
            k = self.layout.conversation(conversation)
            keys += k.push_keys
            if any(dedupe for _, dedupe, _ in group):
                keys.append(k.dedupe_key)
            args += (conversation.encode("utf-8"), len(group))
            for _, dedupe, data in group:
                args += (dedupe, data)
                idempotent = idempotent and bool(dedupe)
        return Call(
            keys=tuple(keys),
            args=tuple(args),
            script=script("push"),
            idempotent=idempotent,
        )

    def decode_push(self, call: Call, reply: Sequence[Any]) -> list[PushReceipt]:
        """The receipts of one push call, in the order of its messages."""
        entries = _text(reply).split(";")
        now = _seconds(entries[0])
        conversations = self._call_conversations(call)
        receipts = []
        for entry, conversation in zip(entries[1:], conversations):
            duplicate, batch_id, size, ready = entry.split(",")
            receipts.append(
                PushReceipt(
                    conversation=conversation,
                    duplicate=duplicate == "1",
                    batch_id=batch_id or None,
                    size=int(size),
                    ready_at=_seconds(ready) if ready != "-1" else None,
                    server_time=now,
                )
            )
        if log.isEnabledFor(logging.DEBUG):
            for conversation in dict.fromkeys(conversations):
                mine = [r for r in receipts if r.conversation == conversation]
                log.debug(
                    "pushed %d message(s) to %s (%d duplicate)",
                    len(mine),
                    mask(conversation),
                    sum(r.duplicate for r in mine),
                )
        return receipts

    @staticmethod
    def _call_conversations(call: Call) -> list[str]:
        """Each message's conversation, in the order of the push call's ARGV."""
        out: list[str] = []
        args, i = call.args, 3
        while i < len(args):
            conversation, n = _text(args[i]), int(args[i + 1])
            out += [conversation] * n
            i += 2 + 2 * n
        return out

    # -- claim ------------------------------------------------------------------

    def claim_call(self, shard: int, limit: int) -> Call:
        s = self.layout.shard(shard)
        p = self.policy
        return Call(
            keys=(s.ready, s.leased, s.stats, s.dead, s.missing),
            args=(
                self.now(),
                limit,
                p.ms("lease"),
                p.max_attempts,
                s.prefix,
                self._settings[shard],
            ),
            script=script("claim"),
            patient=False,
        )

    def peek_call(self, shard: int) -> Call:
        s = self.layout.shard(shard)
        return Call(
            keys=(s.ready, s.leased),
            args=(self.now(),),
            script=script("peek"),
            patient=False,
        )

    def claim_plan(
        self, peeks: Sequence[Sequence[Any]], start: int, limit: int
    ) -> list[tuple[int, int]]:
        """(shard, limit) pairs that share ``limit`` among the shards with work
        now, visiting them from ``start`` on (a different shard each time)."""
        plan = []
        shards = len(peeks)
        for i in range(shards):
            shard = (start + i) % shards
            due = int(peeks[shard][0]) + int(peeks[shard][1])
            if due and limit:
                take = min(due, limit)
                plan.append((shard, take))
                limit -= take
        return plan

    def decode_claim(self, shard: int, reply: Sequence[Any]) -> ClaimResult:
        now_ms = int(reply[0])
        batches = []
        undecodable: list[tuple[Batch, str]] = []
        for item in reply[7:]:
            conv, bid, _n, first, last, ready, why, attempt, token, until, msgs = item
            try:
                messages = tuple(self.codec.decode(m) for m in msgs)
                problem = ""
            except Exception as exc:  # a codec may raise anything; never crash
                messages = tuple(msgs)
                problem = f"cannot decode a message: {type(exc).__name__}: {exc}"[:500]
            batch = Batch(
                id=_text(bid),
                conversation=_text(conv),
                messages=messages,
                attempt=int(attempt),
                reason=ReadyReason(_text(why)),
                first_push_at=_seconds(first),
                last_push_at=_seconds(last),
                ready_at=_seconds(ready),
                claimed_at=now_ms / 1000.0,
                lease_expires_at=_seconds(until),
                token=int(token),
                shard=shard,
            )
            if problem:
                undecodable.append((batch, problem))
            else:
                batches.append(batch)
        result = ClaimResult(
            shard=shard,
            batches=batches,
            undecodable=undecodable,
            server_now_ms=now_ms,
            next_deadline_ms=int(reply[1]) if int(reply[1]) >= 0 else None,
            ready=int(reply[2]),
            leased=int(reply[3]),
            expired_batches=int(reply[4]),
            expired_messages=int(reply[5]),
            dead_lettered=int(reply[6]),
        )
        if result.expired_batches:
            log.warning(
                "%d batch(es) with %d message(s) in shard %d of namespace %s expired"
                " before any worker claimed them: workers were away longer than the"
                " policy's ttl (%gs)",
                result.expired_batches,
                result.expired_messages,
                shard,
                self.config.namespace,
                self.policy.ttl,
            )
        for batch in batches:
            log.debug(
                "claimed batch %s of %s: %d message(s), attempt %d, %s",
                batch.id,
                mask(batch.conversation),
                batch.size,
                batch.attempt,
                batch.reason,
            )
        return result

    # -- holder operations ------------------------------------------------------

    def _holder_keys(self, batch: Batch) -> tuple[ConversationKeys, tuple[str, ...]]:
        k = self.layout.conversation(batch.conversation)
        return k, (
            k.messages,
            k.batches,
            k.shard.ready,
            k.shard.leased,
            k.shard.stats,
        )

    def ack_call(self, batch: Batch) -> Call:
        k, keys = self._holder_keys(self.check_batch(batch))
        return Call(
            keys=keys,
            args=(
                self.now(),
                batch.conversation,
                batch.token,
                batch.id,
                self._settings[k.shard.index],
            ),
            script=script("ack"),
        )

    def nack_call(
        self, batch: Batch, delay: float, error: str, *, counted: bool = True
    ) -> Call:
        k, keys = self._holder_keys(self.check_batch(batch))
        dl, dm = k.shard.dead_letter(batch.id)
        p = self.policy
        return Call(
            keys=(*keys, k.shard.dead, dl, dm),
            args=(
                self.now(),
                batch.conversation,
                batch.token,
                batch.id,
                round(delay * 1000),
                error,
                p.max_attempts,
                "1" if counted else "0",
                self._settings[k.shard.index],
            ),
            script=script("nack"),
        )

    def extend_call(self, batch: Batch, seconds: float) -> Call:
        k, keys = self._holder_keys(self.check_batch(batch))
        return Call(
            keys=keys,
            args=(
                self.now(),
                batch.conversation,
                batch.token,
                batch.id,
                round(seconds * 1000),
                self._settings[k.shard.index],
            ),
            script=script("extend"),
        )

    def owns_call(self, batch: Batch) -> Call:
        k = self.layout.conversation(self.check_batch(batch).conversation)
        return Call(
            keys=(k.batches, k.shard.leased),
            args=(self.now(), batch.conversation, batch.token, batch.id),
            script=script("owns"),
        )

    def flush_call(self, conversation: str) -> Call:
        k = self.layout.conversation(self.check_conversation(conversation))
        return Call(
            keys=(
                k.messages,
                k.batches,
                k.shard.ready,
                k.shard.leased,
                k.shard.stats,
            ),
            args=(self.now(), conversation, self._settings[k.shard.index]),
            script=script("flush"),
        )

    @staticmethod
    def decode_nack(reply: Any) -> NackOutcome:
        outcome = _text(reply)
        if outcome not in ("retry", "dead", "lost"):
            raise ValueError(f"unexpected nack reply {outcome!r}")
        return outcome  # type: ignore[return-value]

    def heartbeat_call(self, peer: str, role: str, record: str) -> Call:
        return Call(
            keys=(self.layout.peers_key, self.layout.peers_seen_key),
            args=(self.now(), peer, record, role, PEER_FORGET_MS),
            script=script("heartbeat"),
        )

    def peers_calls(self) -> list[Call]:
        return [
            Call.command("TIME"),
            Call.command("HGETALL", self.layout.peers_key),
            Call.command("ZRANGE", self.layout.peers_seen_key, 0, -1, "WITHSCORES"),
        ]

    def decode_peers(self, replies: Sequence[Any]) -> list[Peer]:
        now_ms = self.decode_time(replies[0])
        records = {_text(k): _text(v) for k, v in dict(replies[1]).items()}
        peers = []
        for member, seen in score_pairs(replies[2]):
            role, _, peer = _text(member).partition("|")
            try:
                data = json.loads(records.get(peer, "{}"))
            except ValueError:
                data = {}
            peers.append(
                Peer(
                    id=peer,
                    role=role,
                    host=str(data.get("host", "")),
                    pid=int(data.get("pid", 0)),
                    version=str(data.get("version", "")),
                    config=str(data.get("config", "")),
                    age=max(0.0, (now_ms - seen) / 1000.0),
                )
            )
        peers.sort(key=lambda p: p.age)
        return peers

    @staticmethod
    def server_check_calls() -> list[Call]:
        return [
            Call.command("CONFIG", "GET", "maxmemory-policy"),
            Call.command("CONFIG", "GET", "appendonly"),
            Call.command("CONFIG", "GET", "save"),
        ]

    def unreadable_settings(self, exc: BaseException) -> str:
        return (
            f"Redis at {self.config.where} does not show its settings ({exc}):"
            " rapidfire cannot tell whether maxmemory-policy is noeviction and"
            " persistence is on; check both with your provider"
        )

    def decode_server_check(
        self, replies_by_node: Mapping[str, Sequence[Any]]
    ) -> list[str]:
        """What in the server's settings (each primary's, on a cluster) puts
        the namespace's work at risk."""
        risks = []
        for node, replies in replies_by_node.items():
            risks += self._settings_risks(node, replies)
        return risks

    @staticmethod
    def _settings_risks(node: str, replies: Sequence[Any]) -> list[str]:
        values = {}
        for reply in replies:
            values.update({_text(k): _text(v) for k, v in dict(reply).items()})
        where = f"Redis at {node}"
        risks = []
        policy = values.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            risks.append(
                f"{where} has maxmemory-policy {policy}: when memory runs short it"
                " may evict rapidfire's keys (every one carries a TTL) and lose"
                " waiting messages; set maxmemory-policy noeviction"
            )
        if values.get("appendonly", "no") == "no" and not values.get("save", ""):
            risks.append(
                f"{where} has persistence off (appendonly no, no save points): a"
                " restart of Redis loses every waiting message; enable AOF"
                " (appendonly yes) for work that must survive it"
            )
        return risks

    @staticmethod
    def ping_call() -> Call:
        return Call.command("PING")

    # -- dead letters -----------------------------------------------------------

    def _dead_since(self, now_ms: int) -> str:
        """Index entries older than this have outlived their letters' TTL."""
        return f"({now_ms - self.policy.ms('dead_letter_ttl')}"

    def dead_index_calls(self, now_ms: int, limit: int) -> list[Call]:
        return [
            Call.command(
                "ZRANGEBYSCORE",
                s.dead,
                self._dead_since(now_ms),
                "(+inf",  # not the sentinel
                "WITHSCORES",
                "LIMIT",
                0,
                limit,
            )
            for s in self.layout.all_shards()
        ]

    def dead_letter_calls(self, shard: ShardKeys, batch_id: str) -> list[Call]:
        dl, dm = shard.dead_letter(batch_id)
        return [Call.command("HGETALL", dl), Call.command("LRANGE", dm, 0, -1)]

    def decode_dead_letter(
        self, batch_id: str, fields: dict[bytes, bytes], messages: Sequence[bytes]
    ) -> DeadLetter | None:
        if not fields:
            return None
        f = {_text(key): _text(value) for key, value in fields.items()}
        return DeadLetter(
            id=batch_id,
            conversation=f["conversation"],
            messages=self._decode_or_raw(messages),
            attempts=int(f.get("attempts", 0)),
            error=f.get("error", ""),
            reason=f.get("reason", ""),
            first_push_at=_seconds(f.get("first", 0)),
            last_push_at=_seconds(f.get("last", 0)),
            dead_at=_seconds(f.get("dead_at", 0)),
        )

    def _decode_or_raw(self, messages: Sequence[bytes]) -> tuple[Any, ...]:
        """Decoded messages, or the raw bytes when they cannot be decoded."""
        try:
            return tuple(self.codec.decode(m) for m in messages)
        except Exception:
            return tuple(messages)

    def shard_of_dead_letter(self, batch_id: str) -> ShardKeys:
        try:
            index = int(batch_id.split("-")[1])
            if not 0 <= index < self.layout.shards:
                raise ValueError(index)
        except (IndexError, ValueError):
            raise InvalidArgumentError(
                f"dead_letter id {batch_id!r} is not a batch id of this namespace"
            ) from None
        return self.layout.shard(index)

    def requeue_call(self, dead: DeadLetter) -> Call:
        k = self.layout.conversation(dead.conversation)
        dl, dm = k.shard.dead_letter(dead.id)
        return Call(
            keys=(
                k.messages,
                k.batches,
                k.shard.ready,
                k.shard.leased,
                k.shard.stats,
                k.shard.dead,
                dl,
                dm,
            ),
            args=(
                self.now(),
                dead.id,
                self._settings[k.shard.index],
                dead.conversation,
            ),
            script=script("requeue"),
        )

    def purge_call(self, batch_id: str) -> Call:
        shard = self.shard_of_dead_letter(batch_id)
        dl, dm = shard.dead_letter(batch_id)
        return Call(keys=(shard.dead, dl, dm), args=(batch_id,), script=script("purge"))

    # -- reading ----------------------------------------------------------------

    def time_call(self) -> Call:
        return Call.command("TIME")

    def decode_time(self, reply: Sequence[Any]) -> int:
        """A TIME reply (or the test clock) in ms."""
        if self.clock is not None:
            return round(self.clock() * 1000)
        secs, micros = reply
        return int(secs) * 1000 + int(micros) // 1000

    def stats_calls(self, now_ms: int) -> list[Call]:
        calls = []
        for s in self.layout.all_shards():
            calls += [
                # "(+inf": the sorted sets' sentinel member is not counted.
                Call.command("ZCOUNT", s.ready, "-inf", "(+inf"),
                Call.command("ZCOUNT", s.leased, "-inf", "(+inf"),
                Call.command("ZCOUNT", s.dead, self._dead_since(now_ms), "(+inf"),
                Call.command("HGETALL", s.stats),
                Call.command("ZCOUNT", s.ready, "-inf", now_ms),
                Call.command("ZRANGE", s.ready, 0, 0, "WITHSCORES"),
            ]
        return calls

    def decode_stats(self, now_ms: int, replies: Sequence[Any]) -> Stats:
        totals = dict.fromkeys(_COUNTERS, 0)
        reasons = {r.value: 0 for r in ReadyReason}
        pending = in_flight = dead = stored = overdue = 0
        oldest: float | None = None
        for i in range(self.layout.shards):
            ready, leased, dead_n, counters, due, first = replies[6 * i : 6 * i + 6]
            pending += int(ready)
            in_flight += int(leased)
            dead += int(dead_n)
            overdue += int(due)
            c = decode_counters(counters)
            stored += stored_messages(c)
            for name in _COUNTERS:
                totals[name] += c.get(name, 0)
            for reason in reasons:
                reasons[reason] += c.get(f"ready_{reason}", 0)
            for _, score in score_pairs(first):
                if score <= now_ms:
                    age = (now_ms - score) / 1000.0
                    oldest = age if oldest is None else max(oldest, age)
        return Stats(
            pending=pending,
            in_flight=in_flight,
            dead=dead,
            stored_messages=stored,
            overdue=overdue,
            oldest_overdue=oldest,
            ready_reasons=reasons,
            **totals,
        )

    def inspect_calls(self, conversation: str) -> list[Call]:
        k = self.layout.conversation(self.check_conversation(conversation))
        return [
            Call.command("LRANGE", k.batches, 0, -1),
            Call.command("LLEN", k.messages),
            Call.command("ZSCORE", k.shard.leased, conversation),
            Call.command("ZSCORE", k.shard.ready, conversation),
        ]

    def decode_inspect(
        self, conversation: str, replies: Sequence[Any]
    ) -> ConversationState:
        records, stored, leased, ready = replies
        views = []
        error = ""
        for raw in records:
            fields = _text(raw).split("|", 9)
            bid, n, first, last, ready_at, why, is_open, attempt = fields[:8]
            error = error or fields[9]  # the head's, as only the head is tried
            views.append(
                BatchView(
                    id=bid,
                    size=int(n),
                    open=is_open == "1",
                    reason=why,
                    attempt=int(attempt),
                    first_push_at=_seconds(first),
                    last_push_at=_seconds(last),
                    ready_at=_seconds(ready_at),
                )
            )
        return ConversationState(
            conversation=conversation,
            shard=self.layout.shard_of(conversation),
            batches=tuple(views),
            stored_messages=int(stored),
            in_flight=leased is not None,
            lease_expires_at=_seconds(float(leased)) if leased is not None else None,
            ready_at=_seconds(float(ready)) if ready is not None else None,
            last_error=error or None,
        )


REFUSED_RETRIES = 8


def may_resend(
    error: Exception, calls: Sequence[Call]
) -> TypeGuard[RedisUnavailableError]:
    """A request may go again after an unreachable server when it is
    idempotent, or when the cluster said it did not run it."""
    if not isinstance(error, RedisUnavailableError):
        return False
    return error.refused or all(c.idempotent for c in calls)


def retry_delays(retries: int) -> Iterator[float]:
    """Backoff before each retry: 50 ms doubling to at most 2 s, with jitter."""
    for attempt in range(retries):
        yield min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)


def raise_first_error(replies: Sequence[Any]) -> None:
    """Raise the first exception among pipeline replies, if any."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
