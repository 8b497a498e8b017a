"""Interleaved rounds, medians and spreads.

Every comparison runs its contenders in alternating rounds (A, B, A, B, ...),
so that a slow moment of the machine hits both alike, and reports the median
of each with its interquartile spread, and the median of the per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Figure", "Table", "interleaved", "quantiles"]


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """(p25, median, p75) of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


@dataclass
class Figure:
    """One measured figure with its baseline and goal."""

    name: str
    unit: str
    value: float
    spread: tuple[float, float]
    baseline_name: str = ""
    baseline: float | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Table:
    """The figures of one run, printed as a table and written as JSON."""

    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(render_row(figure), flush=True)
        return figure


def render_row(f: Figure) -> str:
    base = (
        f"{f.baseline_name} {f.baseline:,.1f} {f.unit}"
        if f.baseline is not None
        else "-"
    )
    ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
    verdict = {True: "met", False: "NOT MET", None: ""}[f.met]
    low, high = f.spread
    return (
        f"{f.name:<44} {f.value:>12,.1f} {f.unit:<10} [{low:,.1f}-{high:,.1f}]"
        f"  vs {base:<34} ratio {ratio:>6}  goal {f.goal} {verdict}"
        + (f"  ({f.note})" if f.note else "")
    )


def interleaved(
    contenders: dict[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Run each contender once per round, alternating; each returns a rate."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(rounds):
        names = list(contenders)
        if i % 2:
            names.reverse()
        for name in names:
            results[name].append(contenders[name]())
    return results


def rate(operations: int, run: Callable[[], None]) -> float:
    """Operations per second of one call of ``run``."""
    start = time.perf_counter()
    run()
    return operations / (time.perf_counter() - start)


def ratio_figure(
    name: str,
    unit: str,
    samples: dict[str, list[float]],
    ours: str,
    baseline: str,
    goal: float,
) -> Figure:
    """Our median beside the baseline's, and the median per-round ratio."""
    _, mine, _ = quantiles(samples[ours])
    low, _, high = quantiles(samples[ours])
    _, theirs, _ = quantiles(samples[baseline])
    ratios = [a / b for a, b in zip(samples[ours], samples[baseline])]
    r = statistics.median(ratios)
    return Figure(
        name=name,
        unit=unit,
        value=mine,
        spread=(low, high),
        baseline_name=baseline,
        baseline=theirs,
        ratio=r,
        goal=f">= {goal:g}x",
        met=r >= goal,
    )
