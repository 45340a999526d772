"""Training runs as W&B records them: the runs of a W&B project read through ``wandb.Api`` as :class:`Run`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..training.configs import model_width
from .records import Curves, Run, batch_size, training_settings

__all__ = ["read_wandb_runs", "read_wandb_runs_explained"]

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
        batch_size=batch_size(resolved),
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
    for row in r.history(keys=["epoch", "train/acc1"], samples=100_000, pandas=False):
        curves.train_acc1[int(row["epoch"])] = float(row["train/acc1"])
    for row in r.history(keys=["trainer/global_step", "train/loss"], samples=100_000, pandas=False):
        curves.train_loss[int(row["trainer/global_step"])] = float(row["train/loss"])
    return curves


def read_wandb_runs_explained(path: str, group: str | None, tags: Sequence[str]) -> tuple[list[Run], list[str]]:
    """:func:`read_wandb_runs`, its failure a ``RuntimeError`` that says what reading W&B needs."""
    import wandb

    try:
        return read_wandb_runs(path, group, tags)
    except (wandb.errors.Error, ValueError) as err:
        raise RuntimeError(
            f"reading W&B project {path} failed: {str(err).rstrip('.')}. It needs a W&B server and credentials "
            "(WANDB_API_KEY or `wandb login`); without them, compare the run folders instead (octzoo compare runs/...)"
        ) from err


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
