"""A Hypothesis state machine holds the Batcher against a small model.

Random pushes (some redelivered with the same dedupe id) to a few
conversations, claims, acks, nacks, handler crashes (a batch dropped without
ack) and time passing, on the test clock. After every step the model and
Redis must agree on every conversation's stored messages, in order; every
claim must return exactly the batches the model says are ready, with the
model's messages, reason and attempt; acks and nacks succeed exactly when the
caller still holds the lease. Finally everything left is drained: no message
is lost or invented, and each was acknowledged at most once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rapidfire import Batch, Batcher, BatchPolicy, RedisConfig

from .conftest import FakeClock, _backend_url, delete_namespace, unique_namespace

DEBOUNCE, MAX_WAIT, MAX_SIZE, LEASE, MAX_ATTEMPTS = 100, 400, 4, 300, 3  # ms
CONVERSATIONS = ["15550000001", "15550000002", "wa:{x}:3"]


@dataclass
class ModelBatch:
    messages: list[int]
    first: int
    last: int
    ready: int
    reason: str
    open: bool = True
    attempt: int = 0
    lease_until: int | None = None
    token: int | None = None


@dataclass
class ModelConversation:
    batches: list[ModelBatch] = field(default_factory=list)
    seen_dedupe: set[str] = field(default_factory=set)

    def stored(self) -> list[int]:
        return [m for b in self.batches for m in b.messages]


def model_policy() -> BatchPolicy:
    return BatchPolicy(
        debounce=DEBOUNCE / 1000,
        max_wait=MAX_WAIT / 1000,
        max_size=MAX_SIZE,
        lease=LEASE / 1000,
        max_attempts=MAX_ATTEMPTS,
        retry_backoff=0.05,
        retry_backoff_max=0.2,
    )


class BatcherMachine(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1_800_000_000.0)
        self.config = RedisConfig.from_url(
            _backend_url(self.backend), namespace=unique_namespace("sm")
        )
        self.batcher = Batcher(self.config, model_policy(), clock=self.clock)
        self.raw = self.config.client()
        self.model = {c: ModelConversation() for c in CONVERSATIONS}
        self.counter = itertools.count(1)
        self.in_hand: list[Batch] = []
        self.acked: list[int] = []
        self.dead: list[int] = []
        self.pushed: list[int] = []

    def teardown(self) -> None:
        self.raw.close()
        self.batcher.close()
        delete_namespace(self.config)

    @property
    def now(self) -> int:
        return round(self.clock.now * 1000)

    @initialize()
    def start(self) -> None:
        self.batcher.ping()

    # -- rules ----------------------------------------------------------------

    @rule(
        conversation=st.sampled_from(CONVERSATIONS),
        count=st.integers(1, 3),
        with_dedupe=st.booleans(),
    )
    def push(self, conversation: str, count: int, with_dedupe: bool) -> None:
        ids = [next(self.counter) for _ in range(count)]
        items = [
            (conversation, {"n": n}, f"wamid.{n}" if with_dedupe else None) for n in ids
        ]
        receipts = self.batcher.push_many(items)

        assert [r.duplicate for r in receipts] == [False] * count
        for n, receipt in zip(ids, receipts):
            self._model_push(conversation, n)
            if with_dedupe:
                self.model[conversation].seen_dedupe.add(f"wamid.{n}")
            tail = self.model[conversation].batches[-1]
            assert receipt.size == len(tail.messages)
            assert round(receipt.ready_at * 1000) == tail.ready

    @precondition(lambda self: any(m.seen_dedupe for m in self.model.values()))
    @rule(data=st.data())
    def redeliver_webhook(self, data: st.DataObject) -> None:
        conversation = data.draw(
            st.sampled_from([c for c, m in self.model.items() if m.seen_dedupe])
        )
        dedupe = data.draw(
            st.sampled_from(sorted(self.model[conversation].seen_dedupe))
        )
        receipt = self.batcher.push(conversation, {"n": -1}, dedupe_id=dedupe)

        assert receipt.duplicate

    @rule(ms=st.sampled_from([1, 30, 99, 100, 101, 250, 400, 1000]))
    def time_passes(self, ms: int) -> None:
        self.clock.advance(ms / 1000)

    @rule(limit=st.sampled_from([1, 2, 10]))
    def claim(self, limit: int) -> None:
        expected = self._model_claim(limit)
        batches = self.batcher.claim(limit=limit)

        assert [(b.conversation, b.reason.value) for b in batches] == [
            (conversation, reason) for conversation, reason, _ in expected
        ]
        for batch, (_, _, head) in zip(batches, expected):
            assert [m["n"] for m in batch.messages] == head.messages
            assert batch.attempt == head.attempt
            head.token = batch.token
            self.in_hand.append(batch)

    @precondition(lambda self: self.in_hand)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        batch = self._pick(data)
        holds = self._holds(batch)
        result = self.batcher.ack(batch)

        assert result is holds
        if holds:
            conv = self.model[batch.conversation]
            head = conv.batches.pop(0)
            self.acked.extend(head.messages)

    @precondition(lambda self: self.in_hand)
    @rule(data=st.data(), delay=st.sampled_from([0, 50, 200]))
    def nack(self, data: st.DataObject, delay: int) -> None:
        batch = self._pick(data)
        holds = self._holds(batch)
        outcome = self.batcher.nack(batch, delay=delay / 1000, error="boom")

        if not holds:
            assert outcome == "lost"
            return
        conv = self.model[batch.conversation]
        head = conv.batches[0]
        if head.attempt >= MAX_ATTEMPTS:
            assert outcome == "dead"
            conv.batches.pop(0)
            self.dead.extend(head.messages)
        else:
            assert outcome == "retry"
            head.lease_until, head.token = None, None
            head.ready, head.reason = self.now + delay, "retry"

    @precondition(lambda self: self.in_hand)
    @rule(data=st.data())
    def handler_crashes(self, data: st.DataObject) -> None:
        self._pick(data)  # dropped: never acked, its lease will run out

    @precondition(lambda self: self.in_hand)
    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        batch = data.draw(st.sampled_from(self.in_hand))
        holds = self._holds(batch)

        assert self.batcher.extend(batch) is holds
        if holds:
            self.model[batch.conversation].batches[0].lease_until = self.now + LEASE

    # -- invariants -----------------------------------------------------------

    @invariant()
    def redis_holds_exactly_the_model(self) -> None:
        layout = self.batcher.protocol.layout
        for conversation, conv in self.model.items():
            keys = layout.conversation(conversation)
            stored = [
                self.batcher.protocol.codec.decode(m)["n"]
                for m in self.raw.lrange(keys.messages, 0, -1)
            ]
            assert stored == conv.stored(), conversation

    @invariant()
    def nothing_lost_or_invented(self) -> None:
        stored = [m for c in self.model.values() for m in c.stored()]
        assert sorted(self.acked + self.dead + stored) == sorted(self.pushed)
        assert len(set(self.acked)) == len(self.acked), "a message was acked twice"

    @invariant()
    def dead_letters_hold_exactly_the_model(self) -> None:
        letters = self.batcher.dead_letters(1000)
        found = sorted(m["n"] for letter in letters for m in letter.messages)

        assert found == sorted(self.dead)
        assert all(letter.attempts == MAX_ATTEMPTS for letter in letters)

    def check_final_drain(self) -> None:
        """Let everything become ready and handle it: the store ends empty."""
        for _ in range(20):
            self.clock.advance(2.0)
            for batch in self.batcher.claim(limit=100):
                assert self.batcher.ack(batch)
                self.acked.extend(m["n"] for m in batch.messages)
            if self.batcher.stats().stored_messages == 0:
                break
        dead = [
            m["n"]
            for letter in self.batcher.dead_letters(1000)
            for m in letter.messages
        ]
        stats = self.batcher.stats()

        assert stats.stored_messages == stats.pending == stats.in_flight == 0
        assert sorted(self.acked + dead) == sorted(self.pushed)
        assert len(set(self.acked)) == len(self.acked), "a message was acked twice"

    # -- the model --------------------------------------------------------------

    def _model_push(self, conversation: str, n: int) -> None:
        self.pushed.append(n)
        conv = self.model[conversation]
        tail = conv.batches[-1] if conv.batches else None
        now = self.now
        if tail is None or not tail.open:
            tail = ModelBatch(messages=[], first=now, last=now, ready=0, reason="")
            conv.batches.append(tail)
        tail.messages.append(n)
        tail.last = now
        if len(tail.messages) >= MAX_SIZE:
            tail.open, tail.ready, tail.reason = False, now, "max_size"
        elif tail.first + MAX_WAIT <= now + DEBOUNCE:
            tail.ready, tail.reason = tail.first + MAX_WAIT, "max_wait"
        else:
            tail.ready, tail.reason = now + DEBOUNCE, "quiet"

    def _model_claim(self, limit: int) -> list[tuple[str, str, ModelBatch]]:
        """What one claim does, in the order the claim script does it.

        Expired leases first, by (lease expiry, conversation): each is
        delivered again, or dead-lettered once it has had max_attempts
        deliveries (which does not use up the limit). Then heads whose ready
        time has come, by (ready time, conversation), up to what is left.
        """
        now = self.now
        out: list[tuple[str, str, ModelBatch]] = []
        expired = sorted(
            (head.lease_until, name)
            for name, conv in self.model.items()
            if conv.batches
            and (head := conv.batches[0]).lease_until is not None
            and head.lease_until <= now
        )[:limit]
        for _, name in expired:
            conv = self.model[name]
            head = conv.batches[0]
            if head.attempt >= MAX_ATTEMPTS:
                conv.batches.pop(0)
                self.dead.extend(head.messages)
            else:
                head.ready = head.lease_until
                self._deliver(head, "lease_expired")
                out.append((name, "lease_expired", head))
        delivered = {name for name, _, _ in out}
        ready = sorted(
            (head.ready, name)
            for name, conv in self.model.items()
            if name not in delivered
            and conv.batches
            and (head := conv.batches[0]).lease_until is None
            and head.ready <= now
        )[: limit - len(out)]
        for _, name in ready:
            head = self.model[name].batches[0]
            reason = head.reason
            self._deliver(head, reason)
            out.append((name, reason, head))
        return out

    def _deliver(self, head: ModelBatch, reason: str) -> None:
        head.open = False
        head.reason = reason
        head.attempt += 1
        head.lease_until = self.now + LEASE

    def _holds(self, batch: Batch) -> bool:
        conv = self.model[batch.conversation]
        if not conv.batches:
            return False
        head = conv.batches[0]
        return (
            head.token == batch.token
            and head.lease_until is not None
            and head.lease_until > self.now
        )

    def _pick(self, data: st.DataObject) -> Batch:
        index = data.draw(st.integers(0, len(self.in_hand) - 1))
        return self.in_hand.pop(index)


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class _Final(BatcherMachine):
    def teardown(self) -> None:
        try:
            self.check_final_drain()
        finally:
            super().teardown()


class MemoryMachine(_Final):
    backend = "memory"


class RealRedisMachine(_Final):
    backend = "redis"


TestOnMemory = MemoryMachine.TestCase
TestOnMemory.settings = SETTINGS


@pytest.fixture
def _needs_real_redis() -> None:
    from .conftest import real_redis_url

    real_redis_url()


@pytest.mark.usefixtures("_needs_real_redis")
class TestOnRealRedis(RealRedisMachine.TestCase):  # type: ignore[misc,valid-type]
    settings = settings(SETTINGS, max_examples=25)
