"""A first end-to-end pass over the batching rules on both backends."""

from __future__ import annotations

from rapidfire import ReadyReason

from .conftest import FakeClock


def test_quiet_window_makes_one_batch_of_a_burst(make_batcher, clock: FakeClock):
    batcher = make_batcher(clock=clock)
    for text in ("hi", "are you there", "hello?"):
        batcher.push("15550000001", {"text": text})
        clock.advance(0.05)

    assert batcher.claim() == []
    clock.advance(0.06)
    (batch,) = batcher.claim()

    assert [m["text"] for m in batch.messages] == ["hi", "are you there", "hello?"]
    assert batch.reason is ReadyReason.QUIET
    assert batch.attempt == 1
    assert batcher.ack(batch) is True
    assert batcher.stats().stored_messages == 0
