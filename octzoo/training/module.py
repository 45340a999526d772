"""The LightningModule: an image classifier built from the registry by name."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..models import create_model
from ..profile import profile
from .bf16 import BF16Emulation, cpu_has_fast_bf16
from .optim import as_config, build_optimizer, build_scheduler, resolve

__all__ = ["COMPILE_MODES", "ImageClassifier"]

COMPILE_MODES = ("reduce-overhead", "max-autotune-no-cudagraphs")  # the torch.compile modes ``compile`` takes
_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class ImageClassifier(L.LightningModule):
    """Trains and evaluates any registered octzoo model on an image-classification DataModule.

    The network is built by name (``model_name``, ``model_kwargs``), so the hyperparameters stay plain data:
    W&B shows them as they are and checkpoints reload with no extra arguments. ``pretrained`` takes a
    weights file (or a published tag once weights are published); Lightning's own training checkpoints go
    through ``--ckpt_path``.

    Optimisation: ``optimizer`` "sgd" (``lr``, ``momentum``, ``nesterov``, ``weight_decay``) or "adamw" (``lr``,
    ``weight_decay``); ``scheduler`` "cosine" (linear warm-up over ``warmup_epochs``, then cosine to ``min_lr``),
    "step" (warm-up, then times ``gamma`` at each of ``milestones``, in epochs), "onecycle" (peaking at the
    optimiser's lr) or "none", all stepped per iteration. Any torch optimiser or scheduler can be injected instead,
    as Lightning's ``OptimizerCallable`` (``params -> Optimizer``) and ``LRSchedulerCallable``
    (``optimizer -> LRScheduler``); in a config::

        model:
          optimizer: {class_path: torch.optim.RMSprop, init_args: {lr: 0.01, weight_decay: 1.0e-4}}
          scheduler: {class_path: torch.optim.lr_scheduler.StepLR, init_args: {step_size: 30}}

    An injected optimiser takes its lr and weight decay from its own arguments (``lr``, ``momentum``, ``nesterov``
    and ``weight_decay`` are the shortcuts'); the string schedules scale its lr. An injected scheduler steps once
    per epoch (Lightning's default; a ``ReduceLROnPlateau`` watches ``val/loss``). In Python, a class, a
    ``functools.partial`` or the ``{class_path, init_args}`` mapping serve; the hyperparameters keep the mapping,
    so checkpoints reload without code (:mod:`octzoo.training.optim`). ``no_decay_norm_bias`` puts norm and bias
    parameters in a group without weight decay, for any optimiser. ``label_smoothing``; batch-level
    ``mixup_alpha`` / ``cutmix_alpha`` (one of the two per batch, chosen at random when both are set).

    Speed: ``compile`` runs the network through ``torch.compile`` during a fit (``True``: its default mode, or the
    mode "reduce-overhead" / "max-autotune-no-cudagraphs"). The compiled network is built at the start of every fit
    and is no submodule, so checkpoints and ``state_dict()`` keep the plain ``model.*`` keys and load into compiled
    and eager models alike. The CLI then drops the last, smaller training batch (``data.drop_last``), so that the
    compiled training step sees one batch shape. The network runs eagerly under the bfloat16 emulation (which
    torch.compile does not trace) and in the batch-norm statistics pass of StochasticWeightAveraging. cuDNN
    autotuning is Lightning's own switch, ``--trainer.benchmark true``.

    Memory: ``grad_checkpointing`` turns on the network's activation checkpointing (timm's
    ``set_grad_checkpointing``): each block's activations are recomputed in backward instead of kept, for larger
    batches at about one more forward pass of time.

    The training step does not wait for the device: a non-finite loss is recorded on the device and its update is
    undone there (the weights after it are those before it, bit for bit, and so after every later step).
    The record is read when Lightning writes the step metrics (every ``trainer.log_every_n_steps``), before every
    checkpoint and at the end of every epoch; the run then stops with a :class:`FloatingPointError` naming the
    first bad step, and no checkpoint is written after it. The progress bar shows the loss of the last logged step
    (``loss``), a host copy taken at that read; ``train/lr`` is logged at those steps too.
    """

    _emulate_bf16 = False  # set by setup() for bf16 precision on a CPU without native bf16 convolutions
    _compiled: nn.Module | None = None  # torch.compile(self.model) during a fit: an attribute, never a submodule
    _compile_backend: str | Callable = "inductor"  # torch.compile's backend (tests choose a cheaper one)
    _first_bad: Tensor | None = None  # on the device: the first global step whose loss was not finite, else -1
    _bad_loss: Tensor | None = None  # on the device: that step's loss

    def __init__(
        self,
        model_name: str = "oct_resnet20",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        pretrained: str | bool = False,
        optimizer: Literal["sgd", "adamw"] | OptimizerCallable = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 5e-4,
        no_decay_norm_bias: bool = False,
        scheduler: Literal["cosine", "step", "onecycle", "none"] | LRSchedulerCallable = "cosine",
        warmup_epochs: float = 0.0,
        min_lr: float = 0.0,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        channels_last: bool = False,
        compile: bool | Literal["reduce-overhead", "max-autotune-no-cudagraphs"] = False,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if not (isinstance(compile, bool) or isinstance(compile, str) and compile in COMPILE_MODES):
            raise ValueError(
                f"compile={compile!r}: use false, true (torch.compile's default mode) or one of the modes "
                f"{', '.join(map(repr, COMPILE_MODES))}"
            )
        self._optimizer_choice = resolve(optimizer, "optimizer")  # a name of optim.OPTIMIZERS or a factory
        self._scheduler_choice = resolve(scheduler, "scheduler")
        # save_hyperparameters reads these locals (unless LightningCLI gave the config): plain data, not callables
        optimizer, scheduler = as_config(optimizer), as_config(scheduler)
        self.save_hyperparameters()
        self.model = create_model(model_name, pretrained=pretrained, num_classes=num_classes, **(model_kwargs or {}))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.set_grad_checkpointing(grad_checkpointing)
        top5 = min(5, num_classes)
        # no argument checks in the training step: they read the labels on the host (a device sync)
        self.train_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro", validate_args=False)
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self._places: dict[int, tuple[int, int]] = {}  # global step -> (epoch, batch) since the record was last read

    @property
    def alpha(self) -> float:
        return getattr(self.model, "alpha", 0.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._precision_context():
            return (self.model if self._compiled is None else self._compiled)(x)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        with self._precision_context():
            super().backward(loss, *args, **kwargs)

    def _precision_context(self) -> contextlib.AbstractContextManager:
        """bf16 training on a CPU without bf16 kernels runs its convolutions through float32 ones (setup decides)."""
        return BF16Emulation() if self._emulate_bf16 else contextlib.nullcontext()

    def model_profile(self, input_size: tuple[int, int, int] | None = None) -> dict[str, Any]:
        """Params, multiply-adds and alpha of the network (run metadata for loggers and summaries)."""
        input_size = tuple(input_size or self.model.pretrained_cfg["input_size"])
        p = profile(self.model, input_size)
        return {
            "model": self.hparams.model_name,
            "alpha": self.alpha,
            "params": p.params,
            "macs": p.macs,
            "input_size": list(input_size),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_compiled", None)  # a copy (EMA, SWA, a pickle) runs eagerly; the next fit compiles again
        return state

    def setup(self, stage: str) -> None:
        precision = str(self.trainer.precision)
        on_cpu = self.trainer.strategy.root_device.type == "cpu"
        self._emulate_bf16 = precision.startswith("bf16") and on_cpu and not cpu_has_fast_bf16()
        if self._emulate_bf16:
            rank_zero_info(
                f"precision={precision!r} on a CPU without native bfloat16 convolutions "
                f"({torch.backends.cpu.get_cpu_capability()}): convolutions and matrix products run as float32 "
                "kernels on the bfloat16 operands, rounded back to bfloat16 (octzoo.training.bf16), the arithmetic "
                "of the native kernels at about float32 speed instead of oneDNN's 10-18x slower reference kernels."
            )
        if stage == "fit":
            self._first_bad, self._bad_loss, self._places = None, None, {}
            if self.hparams.compile is not False and self._emulate_bf16:
                rank_zero_info(
                    "compile is not applied under the bfloat16 emulation: torch.compile does not trace through its "
                    "dispatch mode, so the network runs eagerly"
                )
            elif self.hparams.compile is not False:
                mode = None if self.hparams.compile is True else self.hparams.compile
                compiled = torch.compile(self.model, mode=mode, backend=self._compile_backend)
                object.__setattr__(self, "_compiled", compiled)  # not self._compiled = ...: no submodule

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self.__dict__.pop("_compiled", None)

    def on_train_epoch_start(self) -> None:
        # A batch norm without momentum (cumulative averages, as in the statistics pass of StochasticWeightAveraging)
        # reads its batch count on the host in every forward, which splits the compiled network into many graphs.
        if self._compiled is not None and any(getattr(m, "momentum", 0.0) is None for m in self.model.modules()):
            self.__dict__.pop("_compiled", None)

    def on_fit_start(self) -> None:
        input_size = getattr(self.trainer.datamodule, "input_size", None)
        info = self.model_profile(input_size)
        for logger in self.loggers:
            logger.log_hyperparams({f"model_info/{k}": v for k, v in info.items()})

    # -- steps -------------------------------------------------------------------------------------------

    def _mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
        """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) over the batch; returns x, y_a, y_b, lam."""
        alphas = [a for a in (self.hparams.mixup_alpha, self.hparams.cutmix_alpha) if a > 0]
        if not alphas or x.shape[0] < 2:
            return x, y, y, 1.0
        use_cutmix = self.hparams.cutmix_alpha > 0 and (self.hparams.mixup_alpha <= 0 or torch.rand(()) < 0.5)
        alpha = self.hparams.cutmix_alpha if use_cutmix else self.hparams.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(x.shape[0], device=x.device)
        if not use_cutmix:
            return lam * x + (1 - lam) * x[perm], y, y[perm], lam
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        return x, y, y[perm], 1 - (y1 - y0) * (x1 - x0) / (h * w)  # lam from the box actually pasted

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        x, y_a, y_b, lam = self._mix(x, y)
        logits = self(x)
        ls = self.hparams.label_smoothing
        loss = lam * F.cross_entropy(logits, y_a, label_smoothing=ls)
        if lam < 1:
            loss = loss + (1 - lam) * F.cross_entropy(logits, y_b, label_smoothing=ls)
        self._watch(loss, batch_idx)
        self.train_acc1.update(logits, y_a)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        self.log("train/acc1", self.train_acc1, on_step=False, on_epoch=True)
        if self._logging_step():  # the host reads of a step happen here, where Lightning reads the metrics anyway
            self._check_finite()
            self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
            self.log("loss", loss.detach().cpu(), prog_bar=True, logger=False)  # the bar re-reads it every step
        return loss

    # -- non-finite losses, without a host sync per step -----------------------------------------------------

    def _logging_step(self) -> bool:
        """Whether Lightning writes this step's metrics to the loggers (every ``log_every_n_steps``, and at a stop)."""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.trainer.should_stop or (self.global_step + 1) % every == 0)

    def _watch(self, loss: Tensor, batch_idx: int) -> None:
        """Record on the device the first global step whose loss is not finite (on any rank under DDP)."""
        loss = self.all_gather(loss.detach()).sum()  # every rank sees a bad loss of any rank, and skips alike
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
        self._places.setdefault(self.global_step, (self.current_epoch, batch_idx))
        first = ~torch.isfinite(loss) & (self._first_bad < 0)
        self._first_bad = torch.where(first, self.global_step, self._first_bad)
        self._bad_loss = torch.where(first, loss, self._bad_loss)

    def _check_finite(self) -> None:
        """Read the record (a host sync) and stop the run if a loss was not finite since the fit started."""
        if self._first_bad is None:
            return
        step = int(self._first_bad)
        if step < 0:
            self._places.clear()
            return
        epoch, batch = self._places[step]
        raise FloatingPointError(
            f"non-finite training loss ({float(self._bad_loss)}) at global step {step} (epoch {epoch}, batch "
            f"{batch}); its update and those after it were undone and the checkpoints saved so far are untouched. "
            "Lower the learning rate or add --trainer.gradient_clip_val, then resume from the last good checkpoint"
        )

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Lightning's step, undone on the device once a loss was not finite: the weights keep their bits.

        The weights are restored through integer views of their bits, ``new * keep + old * skip``: exact for
        integers, whereas a float NaN times 0 stays NaN. Four multi-tensor kernels, and no host sync. The
        optimiser's state is not restored, as the run stops at the next read of the record, before any checkpoint.
        """
        weights = [p.detach() for group in optimizer.param_groups for p in group["params"]]
        bits = [w.view(_INT_OF_SIZE[w.element_size()]) for w in weights]
        before = torch._foreach_mul(bits, 1)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._first_bad is not None:
            skip = self._first_bad >= 0
            torch._foreach_mul_(bits, ~skip)
            torch._foreach_add_(bits, torch._foreach_mul(before, skip))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite()  # raising here writes nothing: the last checkpoint stays the last good one

    def on_train_epoch_end(self) -> None:
        self._check_finite()

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        acc1, acc5 = getattr(self, f"{stage}_acc1"), getattr(self, f"{stage}_acc5")
        acc1(logits, y)
        acc5(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log(f"{stage}/acc1", acc1, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc5", acc5, on_epoch=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    # -- optimisation ------------------------------------------------------------------------------------

    def _param_groups(self) -> list[dict[str, Any]]:
        if not self.hparams.no_decay_norm_bias:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
                (no_decay if is_norm or name == "bias" else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self) -> dict[str, Any]:
        opt = build_optimizer(self._optimizer_choice, self._param_groups(), self.hparams)
        sched = build_scheduler(self._scheduler_choice, opt, self.hparams, self.trainer)
        return {"optimizer": opt} if sched is None else {"optimizer": opt, "lr_scheduler": sched}
