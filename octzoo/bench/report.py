"""``octzoo bench`` output: the markdown table, CSV, JSON, the goal check and the latency-vs-MACs plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import FAMILIES, INFERENCE_MODES, TRAIN_MODES, Row

__all__ = ["ratio", "markdown_table", "table", "goal_lines", "write_csv", "write_json", "write_plot", "GOALS"]

# (family, alpha, measurement, bound, higher_is_better): the performance goals this benchmark reports on.
GOALS = [
    ("ResNet-50", 0.125, "latency_ms", 1.00, False),
    ("ResNet-50", 0.25, "latency_ms", 0.90, False),
    ("ResNet-50", 0.5, "latency_ms", 0.70, False),
    ("ResNet-50", 0.75, "latency_ms", 0.60, False),
    ("1.0 MobileNetV2", 0.375, "latency_ms", 0.85, False),
    ("CIFAR ResNet-20", 0.5, "train_img_s", 1.50, True),
    ("ResNet-50", 0.5, "train_peak_mib", 0.75, False),
    # deployment: the fastest of the inference backends measured, against the plain twin's fastest of the same
    ("ResNet-50", 0.5, "fastest_ms", 0.62, False),
    ("ResNet-50", 0.75, "fastest_ms", 0.52, False),
    ("1.0 MobileNetV2", 0.375, "fastest_ms", 0.80, False),
]
NO_RATIO = {"train_batch", "onnx_rel_error"}  # measurements without a ratio to the plain twin


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
    """The quickest of the batch-1 modes and backends measured for ``row`` (``-`` if none)."""
    timed = {mode: row.m[k] for k, mode in INFERENCE_MODES.items() if row.m.get(k) is not None}
    return min(timed, key=timed.get) if timed else "-"


def _fastest_cell(rows: list[Row], row: Row) -> str:
    mode = fastest_mode(row)
    return "-" if mode == "-" else f"{mode} " + _cell(row.m.get("fastest_ms"), ratio(rows, row, "fastest_ms"), ".2f")


def _columns(rows: list[Row], batch_size: int) -> list[tuple[str, Callable[[Row], str]]]:
    def timed(key: str, fmt: str = ".2f", base: str | None = None) -> Callable[[Row], str]:
        return lambda row: _cell(row.m.get(key), ratio(rows, row, key, base), fmt)

    prefix = {mode: "" if mode == "eager" else f"{mode} " for mode in TRAIN_MODES}
    train = [(f"train {prefix[mode]}img/s", timed(img_s, ".1f")) for mode, (img_s, _) in TRAIN_MODES.items()]
    host = [(f"{prefix[mode]}host ms/step", timed(key)) for mode, (_, key) in TRAIN_MODES.items()]
    return [
        ("MACs", lambda row: _cell(row.macs / 1e6, ratio_macs(rows, row), ".0f", " M")),
        ("latency b1 ms", timed("latency_ms")),
        ("reference b1 ms", timed("naive_ms", base="latency_ms")),
        (f"latency b{batch_size} ms", timed("batch_ms", ".1f")),
        ("channels_last b1 ms", timed("cl_ms")),
        ("compile b1 ms", timed("compile_ms")),
        ("onnxruntime b1 ms", timed("ort_ms")),
        ("fastest b1 ms", lambda row: _fastest_cell(rows, row)),
        *train,
        *host,
        ("ops/step", timed("train_ops", ".0f")),
        ("train peak MiB", timed("train_peak_mib", ".0f")),
    ]


def table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    """A markdown table: a header row, its rule and one row per line of cells."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])


def markdown_table(rows: list[Row], batch_size: int) -> str:
    """One line per model; "(x)" after a number is its ratio to the plain twin (training img/s: speed-up).
    Columns that no row measured are left out."""
    ident = [("family", lambda r: r.family), ("model", lambda r: r.model), ("alpha", lambda r: f"{r.alpha:g}"),
             ("params", lambda r: f"{r.params / 1e6:.2f} M")]  # fmt: skip
    cells = [(head, [fn(row) for row in rows]) for head, fn in [*ident, *_columns(rows, batch_size)]]
    cells = [(head, col) for i, (head, col) in enumerate(cells) if i < len(ident) or any(c != "-" for c in col)]
    return table([head for head, _ in cells], ([col[i] for _, col in cells] for i in range(len(rows))))


def ratio_macs(rows: list[Row], row: Row) -> float:
    return row.macs / _plain_of(rows, row).macs


def _measured_backends(row: Row, plain: Row) -> str:
    both = [mode for k, mode in INFERENCE_MODES.items() if row.m.get(k) is not None and plain.m.get(k) is not None]
    return ", ".join(both)


def goal_lines(rows: list[Row]) -> list[str]:
    """ "met" / "NOT met" for every goal whose rows were measured."""
    out = []
    what = {"latency_ms": "latency", "train_img_s": "training speed-up", "train_peak_mib": "peak memory"}
    for family, alpha, key, bound, higher in GOALS:
        row = next((r for r in rows if r.family == family and r.alpha == alpha), None)
        r = None if row is None else ratio(rows, row, key)
        if r is None:
            continue
        met = r >= bound if higher else r <= bound
        want = f"{'>=' if higher else '<='} {bound:.2f}"
        if key == "fastest_ms":
            plain = _plain_of(rows, row)
            label = (f"fastest-backend latency ({fastest_mode(row)} {row.m[key]:.2f} ms against plain's "
                     f"{fastest_mode(plain)} {plain.m[key]:.2f} ms; of {_measured_backends(row, plain)})")  # fmt: skip
        else:
            label = what[key]
        out.append(f"{family} alpha {alpha:g} {label} ratio {r:.2f} (goal {want}): {'met' if met else 'NOT met'}")
    return out


def _records(rows: list[Row]) -> list[dict]:
    records = []
    for row in rows:
        rec = dict(family=row.family, model=row.model, alpha=row.alpha, width_mult=row.width_mult,
                   input_side=row.side, params=row.params, macs=row.macs, macs_ratio=ratio_macs(rows, row),
                   fastest_mode=fastest_mode(row))  # fmt: skip
        for key, value in row.m.items():
            rec[key] = value
            if key not in NO_RATIO:
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
    if any(r.m.get(k) is not None for r in octave for k in ("compile_ms", "ort_ms")):
        series.append(("fastest_ms", "octzoo (fastest backend, vs plain's fastest)", "^"))
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
