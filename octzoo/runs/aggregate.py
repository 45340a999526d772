"""Runs grouped and averaged: one row per (data set, model, alpha, width, epoch budget, settings), its seeds
the repeats, each row's top-1 from one source (test, last or best validation epoch)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .records import Run

__all__ = ["METRICS", "SOURCE_LABELS", "Comparison", "Row", "aggregate", "mean_std", "measure_latency"]

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
    latency_ms: float | None = None
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


def measure_latency(rows: list[Row], repeats: int = 20, warmup: int = 2) -> list[str]:
    """Median eager CPU latency at batch 1 for each row's network, interleaved across rows; warnings back."""
    import torch

    from .. import create_model
    from ..bench.measure import interleaved_latency

    nets, warnings = {}, []
    for row in rows:
        run = row.first
        spec = _latency_spec(run)
        if spec in nets:
            continue
        kwargs = {"num_classes": run.num_classes} if run.num_classes else {}
        if run.model.startswith("oct_"):
            kwargs["alpha"] = run.alpha
        if run.width_mult is not None:
            kwargs["width_mult"] = run.width_mult
        try:
            net = create_model(run.model, **kwargs).eval()
        except ValueError as err:
            warnings.append(f"no latency for {run.label}: {err}")
            continue
        size = run.input_size or tuple(net.pretrained_cfg["input_size"])
        nets[spec] = (net, torch.randn(1, *size))
    latency = dict(zip(nets, interleaved_latency(list(nets.values()), repeats, warmup), strict=True))
    for row in rows:
        seconds = latency.get(_latency_spec(row.first))
        row.latency_ms = None if seconds is None else 1e3 * seconds
    return warnings


def _latency_spec(run: Run) -> tuple:
    """What the timed network depends on: a thinner network is never timed as the full-width one."""
    return (run.model, run.alpha, run.width_mult, run.num_classes, run.input_size)
