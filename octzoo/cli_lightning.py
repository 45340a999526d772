"""``octzoo fit|validate|test|predict``: LightningCLI over :class:`~octzoo.training.ImageClassifier`.

Beyond LightningCLI's own behaviour (repeated ``--config`` files that compose, ``--print_config``,
``class_path``/``init_args``):

- a config file may name the files it builds on in ``_base_`` (a path or a list, relative to the file);
  ``--config leaf.yaml`` then reads as ``--config base.yaml --config leaf.yaml``, recursively;

- ``data.num_classes`` is linked to ``model.num_classes``, and ``data.drop_last`` to ``model.compile``: a compiled
  network trains on whole batches only (one batch shape, one compiled graph), while an eager run keeps every
  image of the epoch, as the published recipes were trained;
- a CSV logger whose ``name`` is ``auto`` is named after the model and alpha (``oct_resnet20_a0.25``), and
  a W&B logger gets its tags from them, so every run has its own ``version_N`` folder;
- ``run_group`` (a recipe's, e.g. ``cifar10_60ep``) is the runs' subfolder under the loggers' ``save_dir`` and
  their W&B group (else the model's name) (``octzoo.training.configs.apply_run_group``);
- ``fit --ckpt_path <run>/checkpoints/last.ckpt`` resumes in the same run folder and the same W&B run;
- ``fit --test_after_fit true`` tests the best checkpoint and prints test top-1 with params and MACs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from .training import ImageClassifier, RunSummary, Summary, read_summary, run_name
from .training.configs import apply_run_group, expand_bases, logger_args, model_alpha, model_width

__all__ = ["OctzooCLI", "main"]


class OctzooCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("model.compile", "data.init_args.drop_last", compute_fn=drop_last_when_compiled)
        parser.add_argument("--test_after_fit", type=bool, default=False, help="test the best checkpoint after fit")
        parser.add_argument(
            "--run_group",
            type=str | None,
            default=None,
            help="the runs' subfolder under the loggers' save_dir and their W&B group (a recipe's, e.g. cifar10_60ep)",
        )

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        model = cfg.model
        alpha, width = model_alpha(model), model_width(model)
        previous = self._resumed_run(cfg.get("ckpt_path")) if self.subcommand == "fit" else None
        apply_run_group(cfg, default_group=model.model_name)
        csv = logger_args(cfg, "CSVLogger")
        if csv is not None:
            if csv.get("name") in (None, "auto"):
                csv.name = run_name(model.model_name, alpha, width)
            if previous:  # continue in the interrupted run's folder
                run_dir = Path(previous.raw["run_dir"])
                csv.save_dir, csv.name, csv.version = str(run_dir.parent.parent), run_dir.parent.name, run_dir.name
        wandb = logger_args(cfg, "WandbLogger")
        if wandb is not None:
            width_tag = [f"width_mult={width:g}"] if width is not None else []
            wandb.tags = wandb.get("tags") or [model.model_name, f"alpha={alpha:g}", *width_tag]
            if previous and previous.wandb:
                wandb.id = previous.wandb["id"]
                wandb.resume = "allow"

    @staticmethod
    def _resumed_run(ckpt_path: str | None) -> Summary | None:
        """The summary of the run a ``<run>/checkpoints/*.ckpt`` belongs to, if it has one."""
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
            return None
        return read_summary(Path(ckpt_path).resolve().parent.parent)

    def after_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        parser = self._parser(self.subcommand)
        resolved = yaml.safe_load(parser.dump(self.config[self.subcommand], skip_none=False))
        for cb in self.trainer.callbacks:
            if isinstance(cb, RunSummary):
                cb.config = resolved

    def after_fit(self) -> None:
        if not self.config["fit"].get("test_after_fit"):
            return
        ckpt = self.trainer.checkpoint_callback
        ckpt_path = "best" if ckpt is not None and getattr(ckpt, "best_model_path", "") else None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
        if self.trainer.is_global_zero and results:
            info = self.model.model_profile(getattr(self.datamodule, "input_size", None))
            print(
                f"{info['model']} (alpha {info['alpha']:g}): {info['params'] / 1e6:.3f} M params, "
                f"{info['macs'] / 1e6:.2f} M MACs, test top-1 {100 * results[0]['test/acc1']:.2f} %"
            )


def drop_last_when_compiled(compile: bool | str) -> bool:
    """``data.drop_last`` from ``model.compile``: true for any compile mode."""
    return compile is not False


def main(argv: Sequence[str] | None = None) -> int:
    """Run LightningCLI with ``argv`` (``fit --config ...``); returns 0 (errors exit through SystemExit)."""
    OctzooCLI(
        ImageClassifier,
        LightningDataModule,
        subclass_mode_data=True,
        args=expand_bases(sys.argv[1:] if argv is None else argv),
        save_config_kwargs={"overwrite": True},  # each run has its own folder; a resumed run rewrites its own
        auto_configure_optimizers=False,
    )
    return 0
