"""The key layout of a namespace.

Every key of a namespace starts with ``<namespace>:{<tag>}:`` where ``<tag>``
is the hash tag of one shard, so each shard lives in one Redis Cluster slot::

    <ns>:{<tag>}:ready      ZSET  conversation -> ready time (ms)
    <ns>:{<tag>}:leased     ZSET  conversation -> lease expiry (ms)
    <ns>:{<tag>}:stats      HASH  counters, batch and fencing sequences
    <ns>:{<tag>}:dead       ZSET  dead letter id -> time it died (ms)
    <ns>:{<tag>}:missing    ZSET  conversation -> when claim found its keys gone
    <ns>:{<tag>}:dl:<id>    HASH  a dead letter's fields
    <ns>:{<tag>}:dm:<id>    LIST  a dead letter's messages
    <ns>:{<tag>}:m:<conv>   LIST  a conversation's stored messages, in order
    <ns>:{<tag>}:b:<conv>   LIST  a conversation's batch records, oldest first
                                  (each with its lease token and last error)
    <ns>:{<tag>}:d:<conv>   ZSET  a conversation's dedupe ids -> push time (ms)
    <ns>:layout             STRING the layout record (format and shard count)
    <ns>:{<ns>}:peers       HASH  peer id -> heartbeat record of a worker/producer
    <ns>:{<ns>}:peers:seen  ZSET  role|peer id -> last heartbeat (ms)
    <ns>:wake               pub/sub channel announcing new earliest deadlines

The two peer keys share the namespace as their hash tag, so that the
heartbeat script that writes both touches one slot.

A conversation's shard comes from a hash of its id, and the id is the last
part of its keys: an id containing ``{`` or ``}`` cannot move its keys to
another slot, and two ids never share a key.

The shard tags are chosen so that shard ``k`` of ``n`` hashes into the middle
of the k-th of ``n`` equal ranges of the 16384 cluster slots: the shards
spread evenly over the primaries of a cluster whose slots are split evenly.
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["ConversationKeys", "Layout", "ShardKeys"]

TAG_SLACK = 4
LAYOUT_FORMAT = 3  # 2: token and error in the batch record; 3: centred tags


@dataclass(frozen=True)
class ShardKeys:
    """The keys of one shard."""

    index: int
    prefix: str
    ready: str
    leased: str
    stats: str
    dead: str
    missing: str

    @functools.cached_property
    def push_keys(self) -> tuple[bytes, bytes, bytes]:
        """ready, leased and stats, encoded once for the hot push path."""
        return (self.ready.encode(), self.leased.encode(), self.stats.encode())

    @functools.cached_property
    def slot(self) -> int:
        """The Redis Cluster hash slot of every key of the shard."""
        return int(key_slot(self.ready.encode()))

    def dead_letter(self, batch_id: str) -> tuple[str, str]:
        """The hash and message list of one dead letter."""
        return f"{self.prefix}dl:{batch_id}", f"{self.prefix}dm:{batch_id}"


@dataclass(frozen=True)
class ConversationKeys:
    """The keys of one conversation."""

    shard: ShardKeys
    messages: str
    batches: str
    dedupe: str

    @functools.cached_property
    def push_keys(self) -> tuple[bytes, bytes]:
        """The two keys every push takes, encoded once (the keys are cached)."""
        return (self.messages.encode(), self.batches.encode())

    @functools.cached_property
    def dedupe_key(self) -> bytes:
        """The third key of a push whose messages carry dedupe ids."""
        return self.dedupe.encode()


@dataclass(frozen=True)
class Layout:
    """How a namespace's keys are named and split into shards."""

    namespace: str
    shards: int

    @property
    def layout_key(self) -> str:
        """The key holding the layout record."""
        return f"{self.namespace}:layout"

    @property
    def peers_key(self) -> str:
        """The heartbeat records of the namespace's workers and producers."""
        return f"{self.namespace}:{{{self.namespace}}}:peers"

    @property
    def peers_seen_key(self) -> str:
        """When each peer was last seen."""
        return f"{self.namespace}:{{{self.namespace}}}:peers:seen"

    @property
    def wake_channel(self) -> str:
        """The pub/sub channel on which scripts announce earliest deadlines."""
        return f"{self.namespace}:wake"

    def record(self) -> str:
        """The layout record stored at :attr:`layout_key`."""
        return json.dumps({"format": LAYOUT_FORMAT, "shards": self.shards})

    def shard_of(self, conversation: str) -> int:
        """The shard index of a conversation (stable across processes)."""
        if self.shards == 1:
            return 0
        return zlib.crc32(conversation.encode("utf-8")) % self.shards

    def shard(self, index: int) -> ShardKeys:
        """The keys of shard ``index``."""
        return _shard_keys(self.namespace, self.shards, index)

    def all_shards(self) -> tuple[ShardKeys, ...]:
        """Every shard, in index order."""
        return tuple(self.shard(i) for i in range(self.shards))

    def conversation(self, conversation: str) -> ConversationKeys:
        """The keys of one conversation."""
        return _conversation_keys(self.namespace, self.shards, conversation)


@functools.lru_cache(maxsize=65536)
def _conversation_keys(
    namespace: str, shards: int, conversation: str
) -> ConversationKeys:
    index = zlib.crc32(conversation.encode("utf-8")) % shards if shards > 1 else 0
    shard = _shard_keys(namespace, shards, index)
    p = shard.prefix
    return ConversationKeys(
        shard=shard,
        messages=f"{p}m:{conversation}",
        batches=f"{p}b:{conversation}",
        dedupe=f"{p}d:{conversation}",
    )


@functools.lru_cache(maxsize=4096)
def _shard_keys(namespace: str, shards: int, index: int) -> ShardKeys:
    prefix = f"{namespace}:{{{shard_tag(shards, index)}}}:"
    return ShardKeys(
        index=index,
        prefix=prefix,
        ready=f"{prefix}ready",
        leased=f"{prefix}leased",
        stats=f"{prefix}stats",
        dead=f"{prefix}dead",
        missing=f"{prefix}missing",
    )


@functools.lru_cache(maxsize=4096)
def shard_tag(shards: int, index: int) -> str:
    """The hash tag of shard ``index`` of ``shards``.

    The first tag ``"<index>.<j>"`` whose slot lies within TAG_SLACK slots of
    the middle of the shard's range of slots. Centred tags make a primary
    that serves an even share of the slots serve an even share of the shards:
    256 shards fall on 3 to 30 such primaries within 10% of the mean (tags
    anywhere in their range: 17%). Deterministic, so every process derives
    the same tags; computed once per process (about 1 ms per shard).
    """
    if shards == 1:
        return "0"
    width = REDIS_CLUSTER_HASH_SLOTS / shards
    middle = (index + 0.5) * width
    slack = min(TAG_SLACK, width / 2)
    j = 0
    while True:
        tag = f"{index}.{j}"
        if abs(key_slot(tag.encode()) + 0.5 - middle) <= slack:
            return tag
        j += 1
