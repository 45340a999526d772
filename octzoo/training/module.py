"""The LightningModule: an image classifier built from the registry by name."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..models import create_model
from ..profile import profile
from .bf16 import BF16Emulation, cpu_has_fast_bf16

__all__ = ["ImageClassifier"]


class ImageClassifier(L.LightningModule):
    """Trains and evaluates any registered octzoo model on an image-classification DataModule.

    The network is built by name (``model_name``, ``model_kwargs``), so the hyperparameters stay plain data:
    W&B shows them as they are and checkpoints reload with no extra arguments. ``pretrained`` takes a
    weights file (or a published tag once weights are published); Lightning's own training checkpoints go
    through ``--ckpt_path``.

    Optimisation: ``optimizer`` SGD (momentum, Nesterov) or AdamW; ``scheduler`` cosine with linear
    warm-up, step (``milestones`` in epochs, ``gamma``) or one-cycle, all stepped per iteration;
    ``no_decay_norm_bias`` skips weight decay on norm and bias parameters; ``label_smoothing``; batch-level
    ``mixup_alpha`` / ``cutmix_alpha`` (one of the two per batch, chosen at random when both are set).
    """

    _emulate_bf16 = False  # set by setup() for bf16 precision on a CPU without native bf16 convolutions

    def __init__(
        self,
        model_name: str = "oct_resnet20",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        pretrained: str | bool = False,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 5e-4,
        no_decay_norm_bias: bool = False,
        scheduler: Literal["cosine", "step", "onecycle", "none"] = "cosine",
        warmup_epochs: float = 0.0,
        min_lr: float = 0.0,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model_name, pretrained=pretrained, num_classes=num_classes, **(model_kwargs or {}))
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        top5 = min(5, num_classes)
        self.train_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")

    @property
    def alpha(self) -> float:
        return getattr(self.model, "alpha", 0.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._precision_context():
            return self.model(x)

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
        if not torch.isfinite(loss):  # stop before the optimiser spreads it into the weights
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); the checkpoints saved so far are untouched. Lower the "
                f"learning rate or add --trainer.gradient_clip_val, then resume from the last good checkpoint"
            )
        self.train_acc1(logits, y_a)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc1", self.train_acc1, on_step=False, on_epoch=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

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
        hp = self.hparams
        groups = self._param_groups()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov, weight_decay=hp.weight_decay
            )
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            raise ValueError(f"optimizer={hp.optimizer!r}: use 'sgd' or 'adamw'")
        if hp.scheduler == "none":
            return {"optimizer": opt}
        total = self.trainer.estimated_stepping_batches
        if hp.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=int(total))
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_lambda(int(total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _lr_lambda(self, total_steps: int):
        """Per-step multiplier of ``lr``: linear warm-up, then cosine to ``min_lr`` or step decay."""
        hp = self.hparams
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs or 1))
        warmup = int(hp.warmup_epochs * steps_per_epoch)
        floor = hp.min_lr / hp.lr if hp.lr > 0 else 0.0
        milestones = [m * steps_per_epoch for m in (hp.milestones or [])]

        def multiplier(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if hp.scheduler == "step":
                return hp.gamma ** sum(step >= m for m in milestones)
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return multiplier
