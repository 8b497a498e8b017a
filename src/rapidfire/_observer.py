"""Observer: hooks for metrics and tracing, with no dependency of their own.

Pass an :class:`Observer` to a batcher to hear what it does: pushes, claims,
and how each batch ``drain`` handled was settled. Every hook is a no-op here;
subclass and override the ones you need. ``rapidfire.metrics`` builds the
Prometheus metrics on it; an OpenTelemetry user opens a span in
:meth:`Observer.handling`. A hook must be quick and must not raise: an
exception in a hook is logged and otherwise ignored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ._models import Batch, PushReceipt

__all__ = ["Observer"]

log = logging.getLogger("rapidfire.observer")


class Observer:
    """No-op hooks; override the ones you need."""

    def pushed(self, receipts: Sequence[PushReceipt]) -> None:
        """After a push or push_many stored its messages (duplicates included)."""

    def claimed(self, batches: Sequence[Batch]) -> None:
        """After a claim leased batches to this process."""

    def expired(self, batches: int, messages: int) -> None:
        """A claim found work whose keys expired before anyone claimed it."""

    def handling(self, batch: Batch) -> AbstractContextManager[Any]:
        """Wraps the call of drain's handler (open a span here)."""
        return contextlib.nullcontext()

    def started(self, batch: Batch, delay: float) -> None:
        """drain calls its handler, ``delay`` seconds after the claim."""

    def settled(self, batch: Batch, outcome: str, seconds: float) -> None:
        """drain settled a batch after its handler ran for ``seconds``.

        ``outcome`` is ``"acked"``, ``"retry"``, ``"dead"`` or ``"lost"``.
        """


def notify(observer: Observer | None, hook: str, *args: Any) -> None:
    """Call ``observer.<hook>(*args)``; a failing hook is logged, not raised."""
    if observer is None:
        return
    try:
        getattr(observer, hook)(*args)
    except Exception:
        log.warning("observer hook %s raised; ignored", hook, exc_info=True)


@contextlib.contextmanager
def handling(observer: Observer | None, batch: Batch) -> Iterator[None]:
    """``observer.handling(batch)``, robust against a failing hook."""
    if observer is None:
        yield
        return
    try:
        manager = observer.handling(batch)
    except Exception:
        log.warning("observer hook handling raised; ignored", exc_info=True)
        manager = contextlib.nullcontext()
    with manager:
        yield
