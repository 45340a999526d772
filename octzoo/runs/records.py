"""Training runs as records: a run folder's ``summary.json`` and ``metrics.csv`` (what every ``octzoo fit``
writes, see :mod:`octzoo.training.summary`) read as a :class:`Run`, with its curves read on demand."""

from __future__ import annotations

import csv
import functools
import glob
import importlib
import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.configs import logger_args, model_width
from ..training.summary import read_summary

__all__ = [
    "Curves",
    "Run",
    "batch_size",
    "class_defaults",
    "find_run_dirs",
    "read_local_run",
    "read_local_runs",
    "read_metrics_csv",
    "training_settings",
]

_SKIP_DIRS = {"wandb", "checkpoints", ".git", "__pycache__"}


@dataclass
class Curves:
    """Validation top-1/top-5 and training top-1 per epoch, training loss per step (the last value where an epoch
    or step repeats). Training top-1 is the epoch's running accuracy on the augmented training batches, in train
    mode, as ``ImageClassifier`` logs it (after a mid-epoch resume: on the batches after the resume)."""

    val_acc1: dict[int, float] = field(default_factory=dict)
    val_acc5: dict[int, float] = field(default_factory=dict)
    train_loss: dict[int, float] = field(default_factory=dict)
    train_acc1: dict[int, float] = field(default_factory=dict)


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
    batch_size: int | None = None  # data.batch_size, also where it is the DataModule's default
    process: tuple[str, int] | None = None  # (host, pid) that last trained a run folder
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
        best = self._best()
        if best is None:
            return None, None
        return _num(best.get("value")), self.curves().val_acc5.get(best.get("epoch"))

    def train_top1(self, source: str) -> float | None:
        """Training top-1 (a fraction) of the epoch that :meth:`top` reads for ``source``: the best validation
        epoch for best, the last epoch otherwise; None where the curves lack it. Set against the validation top-1
        of that epoch it is the generalisation gap."""
        epoch = (self._best() or {}).get("epoch") if source == "best" else max(self.curves().val_acc1, default=None)
        return self.curves().train_acc1.get(epoch)

    def _best(self) -> dict[str, Any] | None:
        """``{"value", "epoch"}`` of the best validation top-1: the summary's, or (W&B keeps the last value only)
        the history's."""
        best = (self.metrics.get("best") or {}).get("val/acc1")
        if not best:
            val = self.curves().val_acc1
            if not val:
                return None
            epoch = max(val, key=lambda e: (val[e], -e))
            best = {"value": val[epoch], "epoch": epoch}
        return best


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
    s = read_summary(run_dir)
    if s is None:
        raise ValueError(f"{run_dir} has no summary.json")
    wandb_logger = logger_args(s.config, "WandbLogger") or {}
    return Run(
        id=str(run_dir),
        status=s.status,
        dataset=str(s.data.get("name") or s.data.get("class") or "unknown"),
        model=s.model,
        alpha=s.alpha,
        epochs=s.max_epochs,
        seed=s.seed,
        metrics=s.metrics,
        updated=s.updated_at,
        epochs_done=s.epochs,
        params=s.params,
        macs=s.macs,
        input_size=s.input_size,
        num_classes=s.num_classes,
        group=wandb_logger.get("group"),
        tags=tuple(wandb_logger.get("tags") or ()),
        settings=training_settings(s.config),
        width_mult=model_width(s.config.get("model")),
        batch_size=batch_size(s.config),
        process=s.process,
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
    """The model's and data's arguments and the trainer's precision of a resolved config as sorted ``(dotted name,
    JSON value)`` pairs.

    Unset (None) arguments and arguments at their class's default (``ImageClassifier``'s, the DataModule's) are
    left out, so a record written before an argument existed matches one that leaves it at its default."""
    data = config.get("data")
    data_class = data.get("class_path") if isinstance(data, dict) else None
    data = data.get("init_args", data) if isinstance(data, dict) else data
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any, defaults: dict[str, str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if defaults.get(key) != json.dumps(value, sort_keys=True):
                    walk(f"{prefix}.{key}", value, {})
        elif node is not None and prefix not in _NOT_SETTINGS:
            out[prefix] = json.dumps(node, sort_keys=True)

    walk("model", config.get("model"), class_defaults("octzoo.training.ImageClassifier"))
    walk("data", data, class_defaults(data_class))
    walk("trainer.precision", (config.get("trainer") or {}).get("precision"), {})
    return tuple(sorted(out.items()))


def batch_size(config: dict[str, Any]) -> int | None:
    """A resolved config's ``data.batch_size``, or its DataModule's default where the config leaves it out."""
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    value = (data.get("init_args") or data).get("batch_size")
    if value is None:
        value = json.loads(class_defaults(data.get("class_path")).get("batch_size", "null"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@functools.cache
def class_defaults(class_path: str | None) -> dict[str, str]:
    """The JSON of each argument's default in ``class_path``'s constructor; nothing where it cannot be imported."""
    module, _, name = (class_path or "").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: json.dumps(p.default, sort_keys=True) for p in params if p.default is not p.empty}
    except (ImportError, AttributeError, ValueError, TypeError):
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
                ("train/acc1", curves.train_acc1, epoch),
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
