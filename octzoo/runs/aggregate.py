"""Runs grouped and averaged: one row per (data set, model, alpha, width, epoch budget, settings), its seeds
the repeats, each row's top-1 from one source (test, last or best validation epoch)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .records import Run

__all__ = ["METRICS", "SOURCE_LABELS", "Comparison", "Row", "aggregate", "mean_std"]

METRICS = ("test", "final", "best")
SOURCE_LABELS = {"test": "test", "final": "val, last epoch", "best": "val, best epoch"}


@dataclass
class Row:
    """One line of the table: the finished runs of one (data set, model, alpha, epoch budget, settings)."""

    runs: list[Run]  # averaged (they have the metric)
    missing: list[Run]  # finished, kept, but without the metric
    source: str  # test | final | best
    top1: list[float]
    top5: list[float]
    train_top1: list[float] = field(default_factory=list)  # training top-1 of the epoch top-1 comes from
    latency_ms: float | None = None  # octzoo compare --latency (runs.timing)
    train_img_s: float | None = None  # octzoo compare --throughput (runs.timing)
    distinct: str = ""  # the settings that set this row apart: those not shared by every row of the table

    @property
    def first(self) -> Run:
        return (self.runs or self.missing)[0]

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


@dataclass
class Comparison:
    rows: list[Row]
    unfinished: list[Run]
    duplicates: list[tuple[Run, Run]]  # (dropped, kept)
    metric: str


def aggregate(runs: Iterable[Run], metric: str = "test") -> Comparison:
    """Group finished runs, drop duplicate seeds (newest kept), pick each row's metric source, average."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    runs = list(runs)
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.finished:
            groups.setdefault(run.key, []).append(run)
    rows, duplicates = [], []
    for members in groups.values():
        kept: dict[Any, Run] = {}
        for run in sorted(members, key=lambda r: r.updated, reverse=True):
            slot = run.seed if run.seed is not None else id(run)
            if slot in kept:
                duplicates.append((run, kept[slot]))
            else:
                kept[slot] = run
        members = sorted(kept.values(), key=lambda r: (r.seed is None, r.seed or 0, r.updated))
        source = metric
        if metric == "test" and not all(r.top("test")[0] is not None for r in members):
            source = "final"  # never average test and validation numbers together
        tops = [(r, *r.top(source)) for r in members]
        with_metric = [t for t in tops if t[1] is not None]
        rows.append(
            Row(
                runs=[t[0] for t in with_metric],
                missing=[t[0] for t in tops if t[1] is None],
                source=source,
                top1=[t[1] for t in with_metric],
                top5=[t[2] for t in with_metric if t[2] is not None],
                train_top1=[t for t in (r.train_top1(source) for r, *_ in with_metric) if t is not None],
            )
        )
    rows.sort(
        key=lambda r: (r.first.dataset, r.first.family, r.first.epochs or 0, r.first.width_mult or 1, r.first.alpha)
    )
    shared = set.intersection(*(set(row.first.settings) for row in rows)) if rows else set()
    for row in rows:
        row.distinct = " ".join(f"{k}={_plain(v)}" for k, v in row.first.settings if (k, v) not in shared)
    unfinished = sorted((r for r in runs if not r.finished), key=lambda r: (r.dataset, r.family, r.alpha, r.updated))
    return Comparison(rows, unfinished, duplicates, metric)


def _plain(value: str) -> str:
    """A JSON setting as written on a command line: strings without their quotes."""
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)
