"""A comparison written out: the printed markdown report and the CSV files."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from ..bench.report import table
from .aggregate import SOURCE_LABELS, Comparison, Row, mean_std
from .records import Run

__all__ = ["format_report", "write_csvs"]


def _pct(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "-"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _params(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.3f} M" if n < 1e7 else f"{n / 1e6:.2f} M"


def _macs(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.3f} G" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _epochs(row: Row) -> str:
    budget = row.first.epochs
    done = sorted({r.completed_epochs() for r in row.runs + row.missing} - {None})
    if not done or done == [budget]:
        return "-" if budget is None else str(budget)
    span = str(done[0]) if len(done) == 1 else f"{done[0]}-{done[-1]}"
    return f"{span} of {budget if budget is not None else '?'}"


def format_report(comparison: Comparison) -> str:
    """The printed report: the table, then unfinished runs, duplicates and runs without the metric."""
    parts = [_rows_table(comparison.rows) if comparison.rows else "No finished runs."]
    if comparison.unfinished:
        parts.append("Unfinished runs (not averaged):\n\n" + _unfinished_table(comparison.unfinished))
    if comparison.duplicates:
        parts.append(
            "Duplicates (same data, model, alpha, epochs, settings and seed; the newest finished run is kept):\n"
            + "\n".join(f"- dropped {d.id} (seed {d.seed}), kept {k.id}" for d, k in comparison.duplicates)
        )
    missing = [(r, row.source) for row in comparison.rows for r in row.missing]
    if missing:
        parts.append(
            "Finished runs without the metric (not averaged):\n"
            + "\n".join(f"- {r.id}: no {SOURCE_LABELS[src]} top-1" for r, src in missing)
        )
    return "\n\n".join(parts)


def _rows_table(rows: list[Row]) -> str:
    with_throughput = any(row.train_img_s is not None for row in rows)  # measured by --throughput
    header = ["data", "model", "alpha", "epochs", "params", "MACs", "CPU latency (ms)"]
    header += ["train img/s"] if with_throughput else []
    header += ["top-1 (%)", "top-5 (%)"]
    with_train = any(row.train_top1 for row in rows)
    header += ["train top-1 (%)"] if with_train else []
    header += ["runs", "seeds", "top-1 from"]
    with_settings = any(row.distinct for row in rows)
    header += ["settings"] if with_settings else []
    lines = []
    for row in rows:
        run = row.first
        runs = str(len(row.runs)) + (f" (+{len(row.missing)} without it)" if row.missing else "")
        throughput = ["-" if row.train_img_s is None else f"{row.train_img_s:.1f}"] if with_throughput else []
        lines.append(
            [run.dataset, run.label, f"{run.alpha:g}", _epochs(row), _params(run.params), _macs(run.macs)]
            + ["-" if row.latency_ms is None else f"{row.latency_ms:.2f}", *throughput]
            + [_pct(row.top1), _pct(row.top5)]
            + ([_pct(row.train_top1)] if with_train else [])
            + [runs]
            + [",".join("-" if s is None else str(s) for s in row.seeds) or "-", SOURCE_LABELS[row.source]]
            + ([row.distinct or "-"] if with_settings else [])
        )
    return table(header, lines)


def _unfinished_table(runs: list[Run]) -> str:
    header = ["status", "data", "model", "alpha", "seed", "epochs", "last val top-1 (%)", "updated", "run"]
    lines = []
    for r in runs:
        done, acc = r.completed_epochs(), r.top("final")[0]
        lines.append(
            [r.status, r.dataset, r.label, f"{r.alpha:g}", "-" if r.seed is None else str(r.seed)]
            + [f"{'?' if done is None else done} of {'?' if r.epochs is None else r.epochs}"]
            + ["-" if acc is None else f"{100 * acc:.2f}", r.updated or "-", r.id]
        )
    return table(header, lines)


def write_csvs(comparison: Comparison, out: Path) -> list[Path]:
    """``compare.csv`` (one line per row, top-1/top-5 in percent) and ``runs.csv`` (every run and its role)."""
    out.mkdir(parents=True, exist_ok=True)
    rows_path, runs_path = out / "compare.csv", out / "runs.csv"
    with rows_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["dataset", "model", "family", "alpha", "width_mult", "epochs", "params", "macs", "latency_ms"]
            + ["train_img_s", "top1_mean", "top1_std", "top5_mean", "top5_std", "train_top1_mean", "train_top1_std"]
            + ["n", "seeds", "source"]
            + ["without_metric", "runs", "settings"]
        )
        for row in comparison.rows:
            run = row.first
            (m1, s1), (m5, s5), (mt, st) = mean_std(row.top1), mean_std(row.top5), mean_std(row.train_top1)
            w.writerow(
                [run.dataset, run.model, run.family, run.alpha, run.width_mult or 1, run.epochs, run.params, run.macs]
                + [_round(row.latency_ms), _round(row.train_img_s)]
                + [_round(m1, 100), _round(s1, 100), _round(m5, 100), _round(s5, 100), _round(mt, 100), _round(st, 100)]
                + [len(row.runs), " ".join("-" if s is None else str(s) for s in row.seeds), row.source]
                + [len(row.missing), " ".join(r.id for r in row.runs), row.distinct]
            )
    roles: list[tuple[Run, str, str | None]] = []
    for row in comparison.rows:
        roles += [(r, "averaged", row.source) for r in row.runs] + [(r, "without metric", None) for r in row.missing]
    roles += [(d, "duplicate", None) for d, _ in comparison.duplicates]
    roles += [(r, "unfinished", "final") for r in comparison.unfinished]  # where it stands: its last validation
    with runs_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["run", "role", "status", "dataset", "model", "alpha", "width_mult", "epochs", "epochs_done", "seed"]
            + ["top1", "top5", "source", "updated"]
        )
        for r, role, source in roles:
            top1, top5 = r.top(source) if source else (None, None)
            w.writerow(
                [r.id, role, r.status, r.dataset, r.model, r.alpha, r.width_mult or 1, r.epochs, r.completed_epochs()]
                + [r.seed]
                + [_round(top1, 100), _round(top5, 100), source or "", r.updated]
            )
    return [rows_path, runs_path]


def _round(value: float | None, scale: float = 1.0) -> float | str:
    return "" if value is None else round(scale * value, 4)
