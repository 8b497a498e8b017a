"""Observer hooks and the Prometheus metrics they feed."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator

from rapidfire import Batch, Batcher, BatchPolicy, Observer, RedisConfig
from rapidfire.metrics import PrometheusObserver

from .servers import free_port

POLICY = BatchPolicy(
    debounce=0.02,
    max_wait=0.1,
    lease=2,
    max_attempts=2,
    retry_backoff=0.01,
    retry_backoff_max=0.02,
)


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def pushed(self, receipts):
        self.events.append(("pushed", len(receipts)))

    def claimed(self, batches):
        self.events.append(("claimed", len(batches)))

    @contextlib.contextmanager
    def handling(self, batch: Batch) -> Iterator[None]:
        self.events.append(("span-open", batch.conversation))
        yield
        self.events.append(("span-close", batch.conversation))

    def settled(self, batch, outcome, seconds):
        self.events.append(("settled", outcome))


def test_hooks_see_pushes_claims_and_settlements(config: RedisConfig):
    recorder = Recorder()
    batcher = Batcher(config, POLICY, observer=recorder)
    batcher.push("15550000001", "a")
    batcher.push_many([("15550000001", "b"), ("15550000002", "c")])

    batcher.drain(lambda batch: None, until_idle=True)
    batcher.close()
    kinds = [kind for kind, _ in recorder.events]

    assert recorder.events[:2] == [("pushed", 1), ("pushed", 2)]
    assert kinds.count("span-open") == kinds.count("span-close") == 2
    assert [v for k, v in recorder.events if k == "settled"] == ["acked", "acked"]


def test_a_failing_hook_does_not_break_the_batcher(config: RedisConfig, caplog):
    class Broken(Observer):
        def pushed(self, receipts):
            raise RuntimeError("hook bug")

    batcher = Batcher(config, POLICY, observer=Broken())

    receipt = batcher.push("15550000001", "a")
    batcher.close()

    assert receipt.size == 1
    assert "observer hook pushed raised" in caplog.text


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_are_served_and_move_when_work_flows(config: RedisConfig):
    observer = PrometheusObserver()
    batcher = Batcher(config, POLICY, observer=observer)
    observer.watch(batcher)
    port = free_port()
    server = observer.serve(port)
    try:
        before = scrape(port)
        batcher.push("15550000001", "a", dedupe_id="w1")
        batcher.push("15550000001", "a", dedupe_id="w1")
        batcher.push("15550000002", "b")
        pending = scrape(port)
        failures = iter([True])

        def handler(batch: Batch) -> None:
            if batch.conversation == "15550000002" and next(failures, False):
                raise RuntimeError("first try fails")

        batcher.drain(handler, until_idle=True)
        after = scrape(port)
    finally:
        if isinstance(server, tuple):
            server[0].shutdown()
            server[0].server_close()
        batcher.close()

    assert value(before, "rapidfire_pushed_total") == 0
    assert value(pending, "rapidfire_pending") == 2
    assert value(pending, "rapidfire_stored_messages") == 2
    assert value(after, "rapidfire_pushed_total") == 2
    assert value(after, "rapidfire_duplicates_total") == 1
    assert 'rapidfire_batches_settled_total{outcome="acked"} 2.0' in after
    assert 'rapidfire_batches_settled_total{outcome="retry"} 1.0' in after
    assert value(after, "rapidfire_handler_seconds_count") == 3
    assert value(after, "rapidfire_pending") == 0
