"""``summary.json``: what every run writes in its run folder, so runs compare without a W&B server.

Schema (version 1), written atomically at the start of a run, after every validation, at the end of
``fit`` and after ``test``:

- ``schema``: 1; ``status``: ``running`` | ``finished`` | ``interrupted`` (Ctrl+C or SIGTERM) | ``failed`` (an
  error; a run killed without warning stays ``running``: its ``updated_at`` and ``process`` tell)
- ``run_dir``, ``command`` (argv), ``config`` (the resolved LightningCLI config), ``seed``
- ``model``, ``alpha``, ``params``, ``macs``, ``input_size``
- ``data``: ``{"class": ..., "name": ..., "data_dir": ..., "num_classes": ...}``
- ``epochs`` (completed), ``global_step``, ``wall_time_s`` (summed over resumed sessions)
- ``metrics``: ``{"final": {name: value}, "best": {"val/acc1": {"value": ..., "epoch": ...}}, "test": {...}}``
- ``checkpoints``: ``{"last": path | null, "best": path | null}``
- ``wandb``: ``{"id": ..., "project": ..., "mode": "online" | "offline"}`` or null
- ``versions``: octzoo, torch, lightning; ``started_at``, ``updated_at`` (ISO 8601, UTC)
- ``commit``: the git commit of the working directory when the run first started (``+dirty`` when tracked
  files differed from it), or null outside a git checkout
- ``process``: ``{"host": ..., "pid": ...}`` of the process that last trained it, so that a run left ``running``
  by a killed process on this host is known to be dead (``octzoo sweep`` resumes it at once)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .checkpoint_io import atomic_write
from .loggers import CSVLogger

__all__ = ["RunSummary", "Summary", "read_summary", "run_name", "write_json_atomic"]

SCHEMA = 1


def run_name(model: str, alpha: float, width_mult: float | None = None) -> str:
    """A run's name and folder: ``<model>_a<alpha>``, with ``_w<width_mult>`` before the alpha for a width other
    than 1 (``resnet20_w0.84_a0``), so a thinner network's runs never mix with the full-width one's."""
    width = "" if width_mult is None or width_mult == 1 else f"_w{width_mult:g}"
    return f"{model}{width}_a{alpha:g}"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file and rename it over ``path``: a crash never leaves half a file."""
    text = json.dumps(data, indent=2, default=str) + "\n"  # fails before the file is touched
    atomic_write(path, lambda f: f.write(text.encode()))


@dataclass(frozen=True)
class Summary:
    """A run folder's ``summary.json`` as :func:`read_summary` reads it: typed fields over the record (schema
    above), ``None`` or empty where the record lacks a value; ``raw`` is the whole record."""

    run_dir: Path
    raw: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.raw.get("status") or "unknown")

    @property
    def model(self) -> str:
        return str(self.raw["model"])

    @property
    def alpha(self) -> float:
        return float(self.raw.get("alpha") or 0.0)

    @property
    def seed(self) -> int | None:
        """The run's seed; None for an unseeded run (recorded as -1)."""
        seed = self.raw.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None

    @property
    def config(self) -> dict[str, Any]:
        """The resolved LightningCLI config."""
        return self.raw.get("config") or {}

    @property
    def data(self) -> dict[str, Any]:
        return self.raw.get("data") or {}

    @property
    def num_classes(self) -> int | None:
        return _int(self.data.get("num_classes"))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.raw.get("metrics") or {}

    @property
    def test_metrics(self) -> dict[str, float]:
        return self.metrics.get("test") or {}

    @property
    def epochs(self) -> int | None:
        """Completed epochs (the budget is ``config["trainer"]["max_epochs"]``)."""
        return _int(self.raw.get("epochs"))

    @property
    def max_epochs(self) -> int | None:
        return _int((self.config.get("trainer") or {}).get("max_epochs"))

    @property
    def params(self) -> int | None:
        return _int(self.raw.get("params"))

    @property
    def macs(self) -> int | None:
        return _int(self.raw.get("macs"))

    @property
    def input_size(self) -> tuple[int, ...] | None:
        return tuple(self.raw["input_size"]) if self.raw.get("input_size") else None

    @property
    def updated_at(self) -> str:
        return str(self.raw.get("updated_at") or "")

    @property
    def wandb(self) -> dict[str, Any] | None:
        return self.raw.get("wandb") or None

    @property
    def process(self) -> tuple[str, int] | None:
        """(host, pid) of the process that last trained the run; None in summaries written before it was kept."""
        p = self.raw.get("process") or {}
        host, pid = p.get("host"), _int(p.get("pid"))
        return (str(host), pid) if host and pid is not None else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_summary(run_dir: str | os.PathLike) -> Summary | None:
    """The ``summary.json`` of a run folder; None when the folder has none, ``ValueError`` when the file is not a
    summary that ``octzoo fit`` wrote (not JSON, or no model)."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(raw, dict) or not raw.get("model"):
        raise ValueError(f"{path} names no model: not a summary written by octzoo fit")
    return Summary(run_dir, raw)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, torch.Tensor)) and "/" in k}


class RunSummary(Callback):
    """Keeps ``<run folder>/summary.json`` up to date (rank zero only). ``config`` is set by the CLI."""

    def __init__(self, monitor: str = "val/acc1") -> None:
        self.monitor = monitor
        self.config: dict[str, Any] | None = None
        self.data: dict[str, Any] = {}
        self._t0 = time.time()
        self._wall_before = 0.0
        self._file: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank zero: every rank must ask, and only here, never from rank zero alone
        log_dir = trainer.log_dir
        if self.data and stage != "fit":
            return  # a test after fit in the same process keeps the fit's summary
        self._file = path = Path(log_dir) / "summary.json" if log_dir is not None else None
        if not trainer.is_global_zero or path is None:
            return
        self._t0 = time.time()
        old = read_summary(path.parent)  # a resumed run continues its summary
        old = old.raw if old is not None else {}
        self._wall_before = old.get("wall_time_s", 0.0) if stage == "fit" else 0.0
        dm = trainer.datamodule
        info = pl_module.model_profile(getattr(dm, "input_size", None))
        self.data = old or {"started_at": _now(), "metrics": {"final": {}, "best": {}, "test": {}}}
        self.data.update(
            schema=SCHEMA,
            run_dir=str(path.parent),
            command=["octzoo", *sys.argv[1:]],
            seed=int(os.environ.get("PL_GLOBAL_SEED", -1)),
            data={
                "class": type(dm).__name__ if dm is not None else None,
                "name": getattr(dm, "name", None),
                "data_dir": str(getattr(dm, "data_dir", "")) or None,
                "num_classes": getattr(dm, "num_classes", None),
            },
            versions={"octzoo": _version(), "torch": torch.__version__, "lightning": L.__version__},
            process={"host": socket.gethostname(), "pid": os.getpid()},
            **info,
        )
        if "commit" not in self.data:  # where the run started; a resumed run keeps it
            self.data["commit"] = _git_commit()
        if self.config is not None:
            self.data["config"] = self.config
            for logger in trainer.loggers:  # W&B keeps the whole resolved config beside the module's hparams
                if isinstance(logger, WandbLogger):
                    logger.log_hyperparams({"resolved_config": self.config})
        self._write(trainer, "running")

    def _write(self, trainer: L.Trainer, status: str) -> None:
        path = self._file
        if not trainer.is_global_zero or path is None or not self.data:
            return
        d = self.data
        d["status"] = status
        d["updated_at"] = _now()
        d["epochs"] = trainer.fit_loop.epoch_progress.current.completed
        d["global_step"] = trainer.global_step
        d["wall_time_s"] = round(self._wall_before + time.time() - self._t0, 1)
        ckpts = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        old = d.get("checkpoints") or {}
        d["checkpoints"] = {  # a test run restores an older checkpoint state: keep the paths already known
            "last": next((c.last_model_path for c in ckpts if c.last_model_path), None) or old.get("last"),
            "best": next((c.best_model_path for c in ckpts if c.best_model_path), None) or old.get("best"),
        }
        wb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        d["wandb"] = (
            {"id": wb.version, "project": wb.name, "mode": "offline" if wb._offline else "online"} if wb else None
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, d)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path and trainer.is_global_zero:  # resumed: forget what was logged past the checkpoint
            for logger in trainer.loggers:
                if isinstance(logger, CSVLogger):
                    logger.experiment.drop_rows_from(trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.data:
            return
        metrics = _scalars(trainer.callback_metrics)
        self.data["metrics"]["final"].update(metrics)
        if self.monitor in metrics:
            best = self.data["metrics"]["best"].get(self.monitor)
            if best is None or metrics[self.monitor] > best["value"]:
                self.data["metrics"]["best"][self.monitor] = {
                    "value": metrics[self.monitor],
                    "epoch": trainer.current_epoch,
                }
        self._write(trainer, "running")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.data:
            self.data["metrics"]["final"].update(_scalars(trainer.callback_metrics))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "interrupted" if trainer.interrupted else "finished")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.data:
            self.data["metrics"]["test"] = {
                k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test/")
            }
            self._write(trainer, self.data.get("status") if self.data.get("status") != "running" else "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Ctrl+C and SIGTERM (a scheduler's pre-emption, kill's default) stop a run; anything else fails it
        stopped = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        self._write(trainer, "interrupted" if stopped else "failed")


def _git_commit() -> str | None:
    """HEAD of the git checkout in the working directory, ``+dirty`` if tracked files changed; None elsewhere."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version() -> str:
    from .. import __version__

    return __version__
