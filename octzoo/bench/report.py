"""``octzoo bench`` output: the markdown table, CSV, JSON, the goal check and the latency-vs-MACs plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from . import FAMILIES, Row

__all__ = ["ratio", "markdown_table", "goal_lines", "write_csv", "write_json", "write_plot", "GOALS"]

# (family, alpha, measurement, bound, higher_is_better): the performance goals this benchmark reports on.
GOALS = [
    ("ResNet-50", 0.125, "latency_ms", 1.00, False),
    ("ResNet-50", 0.25, "latency_ms", 0.90, False),
    ("ResNet-50", 0.5, "latency_ms", 0.70, False),
    ("ResNet-50", 0.75, "latency_ms", 0.60, False),
    ("1.0 MobileNetV2", 0.375, "latency_ms", 0.85, False),
    ("CIFAR ResNet-20", 0.5, "train_img_s", 1.50, True),
    ("ResNet-50", 0.5, "train_peak_mib", 0.75, False),
]
MODES = {"latency_ms": "eager", "cl_ms": "channels_last", "compile_ms": "compile"}


def _plain_of(rows: list[Row], row: Row) -> Row:
    return next(r for r in rows if r.family == row.family and r.plain)


def ratio(rows: list[Row], row: Row, key: str, base_key: str | None = None) -> float | None:
    """``row``'s measurement divided by its plain twin's (``base_key`` of the twin, default the same key)."""
    value, base = row.m.get(key), _plain_of(rows, row).m.get(base_key or key)
    return None if value is None or not base else value / base


def _cell(value: float | None, r: float | None, fmt: str = ".1f", unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{fmt}}{unit}" + ("" if r is None else f" ({r:.2f})")


def fastest_mode(row: Row) -> str:
    timed = {mode: row.m[k] for k, mode in MODES.items() if row.m.get(k) is not None}
    return min(timed, key=timed.get) if timed else "-"


def markdown_table(rows: list[Row], batch_size: int) -> str:
    """One line per model; "(x)" after a number is its ratio to the plain twin (training: speed-up)."""
    head = ["family", "model", "alpha", "params", "MACs", "latency b1 ms", "reference b1 ms",
            f"latency b{batch_size} ms", "channels_last b1 ms", "compile b1 ms", "fastest", "train img/s",
            "train peak MiB"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row.family,
            row.model,
            f"{row.alpha:g}",
            f"{row.params / 1e6:.2f} M",
            _cell(row.macs / 1e6, ratio_macs(rows, row), ".0f", " M"),
            _cell(row.m.get("latency_ms"), ratio(rows, row, "latency_ms"), ".2f"),
            _cell(row.m.get("naive_ms"), ratio(rows, row, "naive_ms", "latency_ms"), ".2f"),
            _cell(row.m.get("batch_ms"), ratio(rows, row, "batch_ms")),
            _cell(row.m.get("cl_ms"), ratio(rows, row, "cl_ms"), ".2f"),
            _cell(row.m.get("compile_ms"), ratio(rows, row, "compile_ms"), ".2f"),
            fastest_mode(row),
            _cell(row.m.get("train_img_s"), ratio(rows, row, "train_img_s")),
            _cell(row.m.get("train_peak_mib"), ratio(rows, row, "train_peak_mib"), ".0f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_macs(rows: list[Row], row: Row) -> float:
    return row.macs / _plain_of(rows, row).macs


def goal_lines(rows: list[Row]) -> list[str]:
    """ "met" / "NOT met" for every goal whose rows were measured."""
    out = []
    for family, alpha, key, bound, higher in GOALS:
        row = next((r for r in rows if r.family == family and r.alpha == alpha), None)
        r = None if row is None else ratio(rows, row, key)
        if r is None:
            continue
        met = r >= bound if higher else r <= bound
        what = {"latency_ms": "latency", "train_img_s": "training speed-up", "train_peak_mib": "peak memory"}[key]
        want = f"{'>=' if higher else '<='} {bound:.2f}"
        out.append(f"{family} alpha {alpha:g} {what} ratio {r:.2f} (goal {want}): {'met' if met else 'NOT met'}")
    return out


def _records(rows: list[Row]) -> list[dict]:
    records = []
    for row in rows:
        rec = dict(family=row.family, model=row.model, alpha=row.alpha, width_mult=row.width_mult,
                   input_side=row.side, params=row.params, macs=row.macs, macs_ratio=ratio_macs(rows, row),
                   fastest_mode=fastest_mode(row))  # fmt: skip
        for key, value in row.m.items():
            rec[key] = value
            if key != "train_batch":
                rec[key + "_ratio"] = ratio(rows, row, key, "latency_ms" if key == "naive_ms" else None)
        records.append(rec)
    return records


def write_csv(rows: list[Row], path: Path) -> None:
    records = _records(rows)
    fields = list(dict.fromkeys(k for rec in records for k in rec))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)


def write_json(rows: list[Row], meta: dict, path: Path) -> None:
    path.write_text(json.dumps({"meta": meta, "rows": _records(rows), "goals": goal_lines(rows)}, indent=2) + "\n")


def write_plot(rows: list[Row], path: Path) -> bool:
    """Latency ratio against MACs ratio, with the paper's points; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    octave = [r for r in rows if not r.plain]
    series = [("latency_ms", "octzoo (eager)", "o"), ("naive_ms", "reference four-conv (eager)", "x"),
              ("cl_ms", "octzoo (channels_last, vs plain channels_last)", "s")]  # fmt: skip
    for key, label, marker in series:
        pts = [(ratio_macs(rows, r), ratio(rows, r, key, "latency_ms" if key == "naive_ms" else None)) for r in octave]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, label=label)
    paper = [(f.paper[a][0] / f.paper[0][0], f.paper[a][1] / f.paper[0][1]) for f in FAMILIES if 0 in f.paper
             for a in f.paper if a]  # fmt: skip
    ax.scatter(*zip(*paper, strict=True), marker="*", s=120, color="k", label="paper (TVM, 1 thread)")
    ax.plot([0, 1.1], [0, 1.1], color="grey", lw=0.8, ls="--", label="latency ratio = MACs ratio")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="MACs / plain twin's MACs", ylabel="batch-1 latency / plain twin's", xlim=(0, 1.1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
