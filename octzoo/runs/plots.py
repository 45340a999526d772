"""A comparison drawn: top-1 against multiply-adds and against training throughput, and the learning curves
(matplotlib)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .aggregate import SOURCE_LABELS, Comparison, Row, mean_std

__all__ = ["plot_curves", "plot_top1_vs_macs", "plot_top1_vs_throughput", "pyplot"]


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a RuntimeError that says how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError(
            "the plots need matplotlib: pip install 'octzoo[bench]' (or matplotlib), or pass --no-plots"
        ) from None
    return plt


def plot_top1_vs_macs(comparison: Comparison, path: Path) -> Path:
    """Top-1 against MACs: one line per (data set, family, budget, settings) through its alphas, and one through
    the widths of its thinner plain networks (which starts from the full-width plain point), points labelled with
    alpha or width (a family of plain networks only, with the network), std error bars."""
    return _plot_top1_against(
        comparison, path, lambda row: row.first.macs and row.first.macs / 1e6, "MACs (M)", "multiply-adds"
    )


def plot_top1_vs_throughput(comparison: Comparison, path: Path) -> Path:
    """Top-1 against training images/s (``octzoo compare --throughput``), lines and labels as
    :func:`plot_top1_vs_macs`; the x axis runs from fast to slow, so that cheaper networks sit on the left in
    both plots."""
    return _plot_top1_against(
        comparison,
        path,
        lambda row: row.train_img_s,
        "training images/s (1 thread, as trained)",
        "training throughput",
        invert_x=True,
    )


@dataclass
class _Line:
    """One line of a top-1 plot: its legend label, marker and points (x, top-1 %, std %, the point's label)."""

    label: str
    marker: str
    points: list[tuple[float, float, float, str | None]]


def _lines(comparison: Comparison, x_of: Callable[[Row], float | None]) -> list[_Line]:
    """The lines of a top-1 plot: per (data set, family, budget, settings) one through its alphas, labelled
    ``α=...``, and one through its thinner plain networks, labelled ``x<width>``, which starts from the full-width
    plain point (left unlabelled there: it is ``α=0`` on the alpha line). A family that has only plain networks at
    full width (``resnet14`` beside ``resnet20``'s alphas) is a plain line, its points labelled with the network."""
    groups: dict[tuple, list[Row]] = {}
    for row in comparison.rows:
        if row.top1 and x_of(row):
            run = row.first
            key = (run.dataset, run.family, run.epochs, row.distinct, run.width_mult is not None)
            groups.setdefault(key, []).append(row)
            if run.alpha == 0 and run.width_mult is None:  # the full-width plain network starts the width line too
                groups.setdefault(key[:-1] + (True,), []).append(row)
    lines = []
    for (dataset, family, epochs, distinct, widths), rows in groups.items():
        if widths and not any(r.first.width_mult for r in rows):
            continue  # no thinner network: the full-width point alone is no width line
        rows.sort(key=lambda r: (r.first.width_mult or 1, r.first.alpha))  # along the family's alphas or widths
        octave = any(r.first.alpha for r in rows)
        kind = "plain, by width" if widths else "by alpha" if octave else "plain"
        sources = sorted({SOURCE_LABELS[r.source] for r in rows})
        label = f"{family} {kind} ({dataset}, {epochs if epochs is not None else '?'} ep; {', '.join(sources)})"
        label += f"\n{distinct}" if distinct else ""
        points = []
        for r in rows:
            mean, std = mean_std(r.top1)
            if widths:
                text = None if r.first.width_mult is None else f"x{r.first.width_mult:g}"
            else:
                text = f"α={r.first.alpha:g}" if octave else r.first.label
            points.append((x_of(r), 100 * mean, 100 * (std or 0.0), text))
        lines.append(_Line(label, "s" if widths else "o", points))
    return lines


def _plot_top1_against(
    comparison: Comparison,
    path: Path,
    x_of: Callable[[Row], float | None],
    xlabel: str,
    what: str,
    invert_x: bool = False,
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    lines = _lines(comparison, x_of)
    for line in lines:
        xs, ys, errs, texts = zip(*line.points, strict=True)
        ax.errorbar(xs, ys, yerr=errs, marker=line.marker, capsize=3, label=line.label)
        for x, y, text in zip(xs, ys, texts, strict=True):
            if text:
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"top-1 against {what} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if invert_x:
        ax.invert_xaxis()
    if lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(comparison: Comparison, path: Path) -> Path:
    """Validation top-1 (and, dotted, training top-1) per epoch and training loss per step of every run in the
    table and every unfinished run."""
    plt = pyplot()
    fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    runs = [(r, "-") for row in comparison.rows for r in row.runs + row.missing]
    runs += [(r, "--") for r in comparison.unfinished]
    color_of: dict[tuple, str] = {}
    for run, style in runs:
        color = color_of.setdefault(run.key, colors[len(color_of) % len(colors)])
        seed = "" if run.seed is None else f" s{run.seed}"
        label = f"{run.label} α={run.alpha:g}{seed}" + ("" if run.finished else f" ({run.status})")
        curves = run.curves()
        if curves.val_acc1:
            epochs = sorted(curves.val_acc1)
            ax_val.plot(epochs, [100 * curves.val_acc1[e] for e in epochs], style, color=color, label=label)
        if curves.train_acc1:  # thin and dotted, the colour of its run: the distance is the generalisation gap
            epochs = sorted(curves.train_acc1)
            ax_val.plot(epochs, [100 * curves.train_acc1[e] for e in epochs], ":", color=color, lw=0.9)
        if curves.train_loss:
            steps = sorted(curves.train_loss)
            ax_loss.plot(steps, [curves.train_loss[s] for s in steps], style, color=color, label=label, lw=0.8)
    ax_val.set(xlabel="epoch", ylabel="top-1 (%)", title="validation top-1 (training top-1 dotted)")
    ax_loss.set(xlabel="step", ylabel="train loss", title="training loss")
    for ax in (ax_val, ax_loss):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
