"""Prometheus metrics for rapidfire (``pip install 'rapidfire[prometheus]'``).

    from rapidfire import Batcher
    from rapidfire.metrics import PrometheusObserver

    observer = PrometheusObserver()
    batcher = Batcher(config, policy, observer=observer)
    observer.watch(batcher)          # gauges from stats(), read on each scrape
    observer.serve(port=9464)        # or expose prometheus_client's registry yourself

``rapidfire worker --metrics-port 9464`` does the same for a worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._models import Batch, PushReceipt
from ._observer import Observer

if TYPE_CHECKING:
    from ._batcher import Batcher

__all__ = ["PrometheusObserver"]

_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            "rapidfire.metrics needs prometheus-client: pip install"
            " 'rapidfire[prometheus]'"
        ) from None
    return prometheus_client


class PrometheusObserver(Observer):
    """Counters and histograms of a batcher's work, and gauges of its namespace.

    Metrics (all prefixed ``rapidfire_``): ``pushed_total``,
    ``duplicates_total``, ``batches_claimed_total{reason}``,
    ``claim_to_handler_seconds``, ``handler_seconds``, ``batch_wait_seconds``
    (first message to handover), ``batches_settled_total{outcome}`` (acked,
    retry, dead, lost), ``expired_batches_total``, ``expired_messages_total``,
    and, once :meth:`watch` is called, the gauges ``pending``, ``in_flight``,
    ``dead``, ``stored_messages`` and ``overdue``.
    """

    def __init__(self, registry: Any = None) -> None:
        prom = _prometheus()
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        r = self.registry
        self.pushed_total = prom.Counter(
            "rapidfire_pushed", "Messages stored by push", registry=r
        )
        self.duplicates_total = prom.Counter(
            "rapidfire_duplicates", "Pushes refused as duplicates", registry=r
        )
        self.claimed_total = prom.Counter(
            "rapidfire_batches_claimed",
            "Batches claimed, by ready reason",
            ["reason"],
            registry=r,
        )
        self.claim_to_handler = prom.Histogram(
            "rapidfire_claim_to_handler_seconds",
            "From a batch's claim to its handler's call",
            buckets=_DURATIONS,
            registry=r,
        )
        self.handler_seconds = prom.Histogram(
            "rapidfire_handler_seconds",
            "How long handlers ran",
            buckets=_DURATIONS,
            registry=r,
        )
        self.batch_wait = prom.Histogram(
            "rapidfire_batch_wait_seconds",
            "From a batch's first message to its handover",
            buckets=_DURATIONS,
            registry=r,
        )
        self.settled_total = prom.Counter(
            "rapidfire_batches_settled",
            "Batches settled by drain, by outcome",
            ["outcome"],
            registry=r,
        )
        self.expired_batches = prom.Counter(
            "rapidfire_expired_batches", "Batches that expired unclaimed", registry=r
        )
        self.expired_messages = prom.Counter(
            "rapidfire_expired_messages", "Messages that expired unclaimed", registry=r
        )
        self._lock = threading.Lock()

    def pushed(self, receipts: Sequence[PushReceipt]) -> None:
        duplicates = sum(r.duplicate for r in receipts)
        self.pushed_total.inc(len(receipts) - duplicates)
        if duplicates:
            self.duplicates_total.inc(duplicates)

    def claimed(self, batches: Sequence[Batch]) -> None:
        for batch in batches:
            self.claimed_total.labels(reason=batch.reason.value).inc()
            self.batch_wait.observe(max(0.0, batch.waited))

    def expired(self, batches: int, messages: int) -> None:
        self.expired_batches.inc(batches)
        self.expired_messages.inc(messages)

    def started(self, batch: Batch, delay: float) -> None:
        self.claim_to_handler.observe(max(0.0, delay))

    def settled(self, batch: Batch, outcome: str, seconds: float) -> None:
        self.settled_total.labels(outcome=outcome).inc()
        self.handler_seconds.observe(max(0.0, seconds))

    def watch(self, batcher: Batcher) -> None:
        """Serve the namespace's ``stats()`` as gauges, read at each scrape."""
        self.registry.register(_StatsCollector(batcher))

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` over HTTP on ``host:port`` in a daemon thread."""
        prom = _prometheus()
        return prom.start_http_server(port, addr=host, registry=self.registry)


class _StatsCollector:
    """Gauges from Batcher.stats(), one Redis round trip per scrape."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        stats = self.batcher.stats()
        for name, help_text, value in (
            ("pending", "Conversations whose next batch waits", stats.pending),
            ("in_flight", "Batches leased right now", stats.in_flight),
            ("dead", "Dead letters kept", stats.dead),
            ("stored_messages", "Messages not yet settled", stats.stored_messages),
            ("overdue", "Pending batches past their ready time", stats.overdue),
        ):
            yield GaugeMetricFamily(f"rapidfire_{name}", help_text, value=value)
