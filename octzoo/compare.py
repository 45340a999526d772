"""``octzoo compare``: training runs side by side, averaged over seeds, as a table, CSV files and plots.

Runs come from run folders (the ``summary.json`` and ``metrics.csv`` every ``octzoo fit`` writes, see
``octzoo/training/summary.py``) or from a W&B project through ``wandb.Api``. What is compared:

- Finished runs are grouped by (data set, model, alpha, epoch budget ``trainer.max_epochs``, settings); the
  seeds of a group are its repeats, reported as mean +- sample standard deviation with the number of runs.
  The settings are the model's and data's training arguments (``model.lr``, ``model.pretrained``,
  ``data.augment``, ...; not paths, loader options or seeds): runs of different data sets, budgets or
  settings never share a row, and a settings column names what sets each row apart from the others.
- Two finished runs of one group with the same seed are duplicates: the newest (``updated_at`` of the run
  folder, ``created_at`` on W&B) is kept and the others are listed as dropped. Unseeded runs are never
  duplicates of each other.
- Unfinished runs (running, interrupted, failed; on W&B also crashed, killed, ...) are listed on their own,
  never averaged.
- Top-1 and top-5 come from one source per row, named in the table: ``test`` uses the test metrics when every
  run of the row has them and the last validation epoch otherwise (never a mix); ``final`` the last
  validation epoch; ``best`` the best validation epoch (top-5 at that epoch). A finished run without the
  metric stays out of the mean and is named below the table.

Files written to ``--out``: ``compare.csv`` (one line per table row), ``runs.csv`` (one line per run read, with
its role), ``top1_vs_macs.png`` (one line per model family, points labelled with alpha, error bars over seeds)
and ``curves.png`` (validation top-1 per epoch and training loss per step of every run in the table).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Curves",
    "Run",
    "Row",
    "Comparison",
    "add_parser",
    "aggregate",
    "find_run_dirs",
    "main",
    "model_width",
    "read_local_run",
    "read_local_runs",
    "read_wandb_runs",
]

METRICS = ("test", "final", "best")
SOURCE_LABELS = {"test": "test", "final": "val, last epoch", "best": "val, best epoch"}
_SKIP_DIRS = {"wandb", "checkpoints", ".git", "__pycache__"}


# ---------------------------------------------------------------------------------------------------------------------
# runs


@dataclass
class Curves:
    """Validation top-1/top-5 per epoch and training loss per step (the last value where a step repeats)."""

    val_acc1: dict[int, float] = field(default_factory=dict)
    val_acc5: dict[int, float] = field(default_factory=dict)
    train_loss: dict[int, float] = field(default_factory=dict)


@dataclass
class Run:
    """One training run, from a run folder or from W&B, in the terms of ``summary.json``."""

    id: str  # the run folder, or entity/project/run_id
    status: str  # finished | running | interrupted | failed (W&B: also crashed, killed, preempted, ...)
    dataset: str
    model: str
    alpha: float
    epochs: int | None  # the budget, trainer.max_epochs
    seed: int | None
    metrics: dict[str, Any]  # {"final": {name: value}, "best": {"val/acc1": {"value", "epoch"}}, "test": {...}}
    updated: str = ""  # ISO 8601; orders duplicates
    epochs_done: int | None = None
    params: int | None = None
    macs: int | None = None
    input_size: tuple[int, ...] | None = None
    num_classes: int | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # from training_settings()
    width_mult: float | None = None  # model_kwargs.width_mult other than 1
    load_curves: Callable[[], Curves] | None = field(default=None, repr=False, compare=False)
    _curves: Curves | None = field(default=None, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def family(self) -> str:
        return self.model.removeprefix("oct_")

    @property
    def key(self) -> tuple:
        return (self.dataset, self.model, round(float(self.alpha), 6), self.width_mult, self.epochs, self.settings)

    @property
    def label(self) -> str:
        """The network: its model name, with its width when it is not the paper's (``resnet20 x0.84``)."""
        return self.model if self.width_mult is None else f"{self.model} x{self.width_mult:g}"

    def curves(self) -> Curves:
        if self._curves is None:
            self._curves = self.load_curves() if self.load_curves else Curves()
        return self._curves

    def completed_epochs(self) -> int | None:
        if self.epochs_done is not None:
            return self.epochs_done
        val = self.curves().val_acc1
        return max(val) + 1 if val else None

    def top(self, source: str) -> tuple[float | None, float | None]:
        """(top-1, top-5) as fractions from ``source`` (test, final or best); None where the run lacks it."""
        if source == "test":
            test = self.metrics.get("test") or {}
            return _num(test.get("test/acc1")), _num(test.get("test/acc5"))
        if source == "final":
            final = self.metrics.get("final") or {}
            return _num(final.get("val/acc1")), _num(final.get("val/acc5"))
        best = (self.metrics.get("best") or {}).get("val/acc1")
        if not best:  # W&B keeps the last value only: the best comes from the history
            val = self.curves().val_acc1
            if not val:
                return None, None
            epoch = max(val, key=lambda e: (val[e], -e))
            best = {"value": val[epoch], "epoch": epoch}
        return _num(best.get("value")), self.curves().val_acc5.get(best.get("epoch"))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run folders (holding ``summary.json``) named by ``paths``: run folders, folders holding them, globs.

    ``FileNotFoundError`` names a path (or glob) that matches nothing."""
    found: dict[Path, None] = {}
    for spec in map(str, paths):
        matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else ([spec] if os.path.exists(spec) else [])
        if not matches:
            raise FileNotFoundError(
                f"{spec}: no such file or folder; pass run folders (runs/<model>_a<alpha>/version_N), "
                "folders holding them (runs/) or globs"
            )
        for match in map(Path, matches):
            if match.is_file() and match.name == "summary.json":
                match = match.parent
            if (match / "summary.json").is_file():
                found[match] = None
                continue
            for root, dirs, files in os.walk(match):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
                if "summary.json" in files:
                    found[Path(root)] = None
    return list(found)


def read_local_run(run_dir: str | os.PathLike) -> Run:
    """A run folder as a :class:`Run`; ``ValueError`` when its summary.json is not a run summary."""
    run_dir = Path(run_dir)
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{run_dir}/summary.json is not valid JSON ({err})") from None
    if not isinstance(s, dict) or not s.get("model"):
        raise ValueError(f"{run_dir}/summary.json names no model: not a summary written by octzoo fit")
    config = s.get("config") or {}
    data = s.get("data") or {}
    wandb_logger = _logger_args(config, "WandbLogger")
    seed = s.get("seed")
    return Run(
        id=str(run_dir),
        status=str(s.get("status") or "unknown"),
        dataset=str(data.get("name") or data.get("class") or "unknown"),
        model=str(s["model"]),
        alpha=float(s.get("alpha") or 0.0),
        epochs=_int((config.get("trainer") or {}).get("max_epochs")),
        seed=seed if isinstance(seed, int) and seed >= 0 else None,
        metrics=s.get("metrics") or {},
        updated=str(s.get("updated_at") or ""),
        epochs_done=_int(s.get("epochs")),
        params=_int(s.get("params")),
        macs=_int(s.get("macs")),
        input_size=tuple(s["input_size"]) if s.get("input_size") else None,
        num_classes=_int(data.get("num_classes")),
        group=wandb_logger.get("group"),
        tags=tuple(wandb_logger.get("tags") or ()),
        settings=training_settings(config),
        width_mult=model_width(config.get("model")),
        load_curves=lambda: read_metrics_csv(run_dir / "metrics.csv"),
    )


# Arguments that name where data, loaders and seeds come from, or the model itself (in Run.key already): what
# stays out of a run's settings. Seeds are a group's repeats.
_NOT_SETTINGS = frozenset(
    ["model.model_name", "model.model_kwargs.alpha", "model.model_kwargs.width_mult"]
    + ["data.data_dir", "data.cache_dir", "data.download"]
    + ["data.num_workers", "data.pin_memory", "data.persistent_workers", "data.on_bad_image", "data.seed"]
)


def training_settings(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The model's and data's arguments of a resolved config as sorted ``(dotted name, JSON value)`` pairs.

    Unset (None) arguments are left out, so a record written before an argument existed matches one that
    leaves it at None."""
    data = config.get("data")
    data = data.get("init_args", data) if isinstance(data, dict) else data
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}", value)
        elif node is not None and prefix not in _NOT_SETTINGS:
            out[prefix] = json.dumps(node, sort_keys=True)

    walk("model", config.get("model"))
    walk("data", data)
    return tuple(sorted(out.items()))


def model_width(model: Any) -> float | None:
    """A run's ``model.model_kwargs.width_mult`` (``model``: a config's model section), None for the paper's
    width (1 or unset): what tells a thinner network's runs from the full-width one's."""
    width = ((model or {}).get("model_kwargs") or {}).get("width_mult") if isinstance(model, dict) else None
    return None if width is None or width == 1 else float(width)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _logger_args(config: dict[str, Any], kind: str) -> dict[str, Any]:
    loggers = (config.get("trainer") or {}).get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(logger, dict) and str(logger.get("class_path", "")).endswith(kind):
            return logger.get("init_args") or {}
    return {}


def read_metrics_csv(path: Path) -> Curves:
    """Curves from Lightning's CSVLogger file; a resumed run repeats steps, and the last value wins."""
    curves = Curves()
    if not path.is_file():
        return curves
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            epoch, step = _cell(row.get("epoch")), _cell(row.get("step"))
            for name, target, at in [
                ("val/acc1", curves.val_acc1, epoch),
                ("val/acc5", curves.val_acc5, epoch),
                ("train/loss", curves.train_loss, step),
            ]:
                value = _cell(row.get(name))
                if value is not None and at is not None:
                    target[int(at)] = value
    return curves


def _cell(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_local_runs(
    paths: Iterable[str | os.PathLike], group: str | None = None, tags: Sequence[str] = ()
) -> tuple[list[Run], list[str]]:
    """The runs under ``paths`` (optionally only those whose W&B logger had ``group`` and all ``tags``) and
    a warning for every summary.json that could not be read."""
    runs, warnings = [], []
    for run_dir in find_run_dirs(paths):
        try:
            run = read_local_run(run_dir)
        except (ValueError, OSError) as err:
            warnings.append(f"skipped {run_dir}: {err}")
            continue
        if (group is None or run.group == group) and set(tags) <= set(run.tags):
            runs.append(run)
    return runs, warnings


# W&B states that are not "finished" are unfinished; "pending" and "running" show as running.
_WANDB_STATES = {"running": "running", "pending": "running"}


def read_wandb_runs(path: str, group: str | None = None, tags: Sequence[str] = ()) -> tuple[list[Run], list[str]]:
    """The runs of the W&B project ``path`` (entity/project), filtered on the server by group and tags.

    Reads what octzoo's W&B logging records: the module's hyperparameters and ``model_info/*`` and
    ``resolved_config`` in the run config, the last logged metrics in the run summary, curves from the
    history. Runs without ``model_info/model`` or ``model_name`` (not octzoo training runs) are skipped."""
    import wandb

    filters: dict[str, Any] = {}
    if group is not None:
        filters["group"] = group
    if len(tags) == 1:
        filters["tags"] = {"$in": [tags[0]]}
    elif tags:
        filters["$and"] = [{"tags": {"$in": [tag]}} for tag in tags]
    runs, warnings = [], []
    for r in wandb.Api().runs(path, filters=filters or None):
        run = _wandb_run(path, r)
        if run is None:
            warnings.append(f"skipped W&B run {path}/{r.id} ({r.name}): no model_info/model in its config")
        else:
            runs.append(run)
    return runs, warnings


def _wandb_run(path: str, r: Any) -> Run | None:
    config = dict(r.config or {})
    model = config.get("model_info/model") or config.get("model_name")
    if not model:
        return None
    resolved = config.get("resolved_config") or {}
    data = resolved.get("data") or {}
    summary = r.summary
    seed = resolved.get("seed_everything")
    test = {k: summary.get(k) for k in ("test/acc1", "test/acc5", "test/loss") if summary.get(k) is not None}
    final = {k: summary.get(k) for k in ("val/acc1", "val/acc5", "val/loss") if summary.get(k) is not None}
    input_size = config.get("model_info/input_size")
    return Run(
        id=f"{path}/{r.id}",
        status=_WANDB_STATES.get(r.state, r.state),
        dataset=_dataset_name(data),
        model=str(model),
        alpha=float(config.get("model_info/alpha") or (config.get("model_kwargs") or {}).get("alpha") or 0.0),
        epochs=_int((resolved.get("trainer") or {}).get("max_epochs")),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None,
        metrics={"final": final, "best": {}, "test": test},
        updated=str(getattr(r, "created_at", "") or ""),
        params=_int(config.get("model_info/params")),
        macs=_int(config.get("model_info/macs")),
        input_size=tuple(input_size) if input_size else None,
        num_classes=_int(config.get("num_classes")),
        group=r.group,
        tags=tuple(r.tags or ()),
        settings=training_settings(resolved),
        width_mult=model_width(resolved.get("model") or {"model_kwargs": config.get("model_kwargs")}),
        load_curves=lambda: _wandb_curves(r),
    )


def _dataset_name(data: dict[str, Any]) -> str:
    """The data set a DataModule class reads (its ``name``, as in summary.json), from its class path."""
    class_path = str(data.get("class_path") or "")
    if not class_path:
        return "unknown"
    module, _, name = class_path.rpartition(".")
    try:
        import importlib

        return str(getattr(importlib.import_module(module), name).name)
    except (ImportError, AttributeError):
        return name


def _wandb_curves(r: Any) -> Curves:
    curves = Curves()
    for row in r.history(keys=["epoch", "val/acc1", "val/acc5"], samples=100_000, pandas=False):
        epoch = int(row["epoch"])
        curves.val_acc1[epoch], curves.val_acc5[epoch] = float(row["val/acc1"]), float(row["val/acc5"])
    for row in r.history(keys=["trainer/global_step", "train/loss"], samples=100_000, pandas=False):
        curves.train_loss[int(row["trainer/global_step"])] = float(row["train/loss"])
    return curves


# ---------------------------------------------------------------------------------------------------------------------
# aggregation


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
    import time

    import torch

    import octzoo
    from octzoo.bench.measure import interleaved_medians

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
            net = octzoo.create_model(run.model, **kwargs).eval()
        except ValueError as err:
            warnings.append(f"no latency for {run.label}: {err}")
            continue
        size = run.input_size or tuple(net.pretrained_cfg["input_size"])
        nets[spec] = (net, torch.randn(1, *size))
    specs = list(nets)
    with torch.inference_mode():
        fns = [lambda net=nets[s][0], x=nets[s][1]: net(x) for s in specs]
        medians = interleaved_medians(fns, repeats, warmup, time.perf_counter) if fns else []
    latency = dict(zip(specs, medians, strict=True))
    for row in rows:
        run = row.first
        seconds = latency.get(_latency_spec(run))
        row.latency_ms = None if seconds is None else 1e3 * seconds
    return warnings


def _latency_spec(run: Run) -> tuple:
    """What the timed network depends on: a thinner network is never timed as the full-width one."""
    return (run.model, run.alpha, run.width_mult, run.num_classes, run.input_size)


# ---------------------------------------------------------------------------------------------------------------------
# output


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


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])


def format_report(comparison: Comparison) -> str:
    """The printed report: the table, then unfinished runs, duplicates and runs without the metric."""
    header = ["data", "model", "alpha", "epochs", "params", "MACs", "CPU latency (ms)", "top-1 (%)", "top-5 (%)"]
    header += ["runs", "seeds", "top-1 from"]
    with_settings = any(row.distinct for row in comparison.rows)
    header += ["settings"] if with_settings else []
    lines = []
    for row in comparison.rows:
        run = row.first
        runs = str(len(row.runs)) + (f" (+{len(row.missing)} without it)" if row.missing else "")
        lines.append(
            [
                run.dataset,
                run.label,
                f"{run.alpha:g}",
                _epochs(row),
                _params(run.params),
                _macs(run.macs),
                "-" if row.latency_ms is None else f"{row.latency_ms:.2f}",
                _pct(row.top1),
                _pct(row.top5),
                runs,
                ",".join("-" if s is None else str(s) for s in row.seeds) or "-",
                SOURCE_LABELS[row.source],
            ]
            + ([row.distinct or "-"] if with_settings else [])
        )
    parts = [_table(header, lines) if lines else "No finished runs."]
    if comparison.unfinished:
        header = ["status", "data", "model", "alpha", "seed", "epochs", "last val top-1 (%)", "updated", "run"]
        lines = []
        for r in comparison.unfinished:
            done, acc = r.completed_epochs(), r.top("final")[0]
            lines.append(
                [
                    r.status,
                    r.dataset,
                    r.label,
                    f"{r.alpha:g}",
                    "-" if r.seed is None else str(r.seed),
                    f"{'?' if done is None else done} of {'?' if r.epochs is None else r.epochs}",
                    "-" if acc is None else f"{100 * acc:.2f}",
                    r.updated or "-",
                    r.id,
                ]
            )
        parts.append("Unfinished runs (not averaged):\n\n" + _table(header, lines))
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


def write_csvs(comparison: Comparison, out: Path) -> list[Path]:
    """``compare.csv`` (one line per row, top-1/top-5 in percent) and ``runs.csv`` (every run and its role)."""
    out.mkdir(parents=True, exist_ok=True)
    rows_path, runs_path = out / "compare.csv", out / "runs.csv"
    with rows_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["dataset", "model", "family", "alpha", "width_mult", "epochs", "params", "macs", "latency_ms", "top1_mean"]
            + ["top1_std", "top5_mean", "top5_std", "n", "seeds", "source", "without_metric", "runs", "settings"]
        )
        for row in comparison.rows:
            run = row.first
            (m1, s1), (m5, s5) = mean_std(row.top1), mean_std(row.top5)
            w.writerow(
                [run.dataset, run.model, run.family, run.alpha, run.width_mult or 1, run.epochs, run.params, run.macs]
                + [_round(row.latency_ms), _round(m1, 100), _round(s1, 100), _round(m5, 100), _round(s5, 100)]
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


def _pyplot():
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
    alpha or width, std error bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    lines: dict[tuple, list[Row]] = {}
    for row in comparison.rows:
        if row.top1 and row.first.macs:
            run = row.first
            key = (run.dataset, run.family, run.epochs, row.distinct, run.width_mult is not None)
            lines.setdefault(key, []).append(row)
            if run.alpha == 0 and run.width_mult is None:  # the full-width plain network starts the width line too
                lines.setdefault(key[:-1] + (True,), []).append(row)
    lines = {key: rows for key, rows in lines.items() if not key[-1] or any(r.first.width_mult for r in rows)}
    for (dataset, family, epochs, distinct, widths), rows in lines.items():
        rows.sort(key=lambda r: r.first.macs)
        xs = [r.first.macs / 1e6 for r in rows]
        stats = [mean_std(r.top1) for r in rows]
        ys = [100 * m for m, _ in stats]
        errs = [100 * (s or 0.0) for _, s in stats]
        sources = sorted({SOURCE_LABELS[r.source] for r in rows})
        kind = "plain, by width" if widths else "by alpha"
        label = f"{family} {kind} ({dataset}, {epochs if epochs is not None else '?'} ep; {', '.join(sources)})"
        label += f"\n{distinct}" if distinct else ""
        ax.errorbar(xs, ys, yerr=errs, marker="s" if widths else "o", capsize=3, label=label)
        for x, y, r in zip(xs, ys, rows, strict=True):
            text = f"x{r.first.width_mult or 1:g}" if widths else f"α={r.first.alpha:g}"
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("top-1 against multiply-adds (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(comparison: Comparison, path: Path) -> Path:
    """Validation top-1 per epoch and training loss per step of every run in the table and every unfinished run."""
    plt = _pyplot()
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
        if curves.train_loss:
            steps = sorted(curves.train_loss)
            ax_loss.plot(steps, [curves.train_loss[s] for s in steps], style, color=color, label=label, lw=0.8)
    ax_val.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation top-1")
    ax_loss.set(xlabel="step", ylabel="train loss", title="training loss")
    for ax in (ax_val, ax_loss):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# command

DESCRIPTION = __doc__.split("\n", 2)[2].replace("``", "")

EPILOG = """\
examples:
  octzoo compare runs/cifar10_60ep                      every run under the folder
  octzoo compare 'runs/cifar10_60ep/oct_resnet20_*' runs/cifar10_60ep/resnet20_a0 --metric best
  octzoo compare --wandb ENTITY/octzoo --group cifar10_60ep --out results/alpha --latency"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare",
        help="compare training runs (run folders or W&B) averaged over seeds: table, CSV, plots",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="*", metavar="RUN_DIR_OR_GLOB", help="run folders, folders holding them, globs (default: runs)"
    )
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs of this W&B project through wandb.Api")
    p.add_argument("--group", help="only runs of this W&B group (for run folders: their W&B logger's group)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="only runs with this tag (repeatable)")
    p.add_argument("--metric", choices=METRICS, default="test", help="top-1/top-5 source (default: test)")
    p.add_argument("--latency", action="store_true", help="measure each row's CPU latency (batch 1, eager)")
    p.add_argument(
        "--out",
        default="compare-results",
        metavar="DIR",
        help="where the CSV and PNG files go (default: compare-results)",
    )
    p.add_argument("--no-plots", action="store_true", help="write the CSV files only")
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.wandb is not None and args.wandb.count("/") != 1:
        parser.error(f"--wandb takes ENTITY/PROJECT (e.g. my-team/octzoo), got {args.wandb!r}")
    if not args.no_plots:
        try:
            _pyplot()
        except RuntimeError as err:
            print(f"octzoo compare: {err}", file=sys.stderr)
            return 2
    runs, warnings = [], []
    try:
        if args.wandb:
            runs, warnings = _read_wandb_or_explain(args.wandb, args.group, args.tag)
        if args.paths or not args.wandb:
            local, more = read_local_runs(args.paths or ["runs"], args.group, args.tag)
            runs, warnings = runs + local, warnings + more
    except (FileNotFoundError, RuntimeError) as err:
        print(f"octzoo compare: {err}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"octzoo compare: {warning}", file=sys.stderr)
    if not runs:
        where = f"W&B project {args.wandb}" if args.wandb and not args.paths else ", ".join(args.paths or ["runs"])
        wanted = ([f"group {args.group!r}"] if args.group else []) + ([f"tags {args.tag}"] if args.tag else [])
        filters = f" with {' and '.join(wanted)}" if wanted else ""
        print(
            f"octzoo compare: no runs found in {where}{filters}; pass run folders or the folder `octzoo fit` wrote "
            "(trainer.logger save_dir, e.g. runs/cifar10_60ep)",
            file=sys.stderr,
        )
        return 2
    comparison = aggregate(runs, args.metric)
    if args.latency:
        for warning in measure_latency(comparison.rows):
            print(f"octzoo compare: {warning}", file=sys.stderr)
    print(format_report(comparison))
    out = Path(args.out)
    written = write_csvs(comparison, out)
    if not args.no_plots:
        written += [
            plot_top1_vs_macs(comparison, out / "top1_vs_macs.png"),
            plot_curves(comparison, out / "curves.png"),
        ]
    print(f"\nwrote {', '.join(map(str, written))}")
    return 0


def _read_wandb_or_explain(path: str, group: str | None, tags: Sequence[str]) -> tuple[list[Run], list[str]]:
    import wandb

    try:
        return read_wandb_runs(path, group, tags)
    except (wandb.errors.Error, ValueError) as err:
        raise RuntimeError(
            f"reading W&B project {path} failed: {str(err).rstrip('.')}. It needs a W&B server and credentials "
            "(WANDB_API_KEY or `wandb login`); without them, compare the run folders instead (octzoo compare runs/...)"
        ) from err
