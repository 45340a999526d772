"""The optimiser and learning-rate schedule of :class:`~octzoo.training.ImageClassifier`.

Each is a name from a table (the recipes' shortcuts: :data:`OPTIMIZERS`, :data:`SCHEDULES`) or an injected
factory: an optimiser is any callable ``params -> Optimizer`` (Lightning's ``OptimizerCallable``), a schedule any
callable ``optimizer -> LRScheduler`` (``LRSchedulerCallable``). LightningCLI builds such a factory from
``{class_path: torch.optim.RMSprop, init_args: {lr: 0.01}}``; in Python a ``functools.partial``, a class or that
same mapping serve. The hyperparameters keep the plain form (:func:`as_config`), so checkpoints reload.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

__all__ = ["OPTIMIZERS", "SCHEDULES", "as_config", "build_optimizer", "build_scheduler", "resolve"]


def _sgd(groups: list[dict[str, Any]], hp: Mapping[str, Any]) -> Optimizer:
    return torch.optim.SGD(
        groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["nesterov"], weight_decay=hp["weight_decay"]
    )


def _adamw(groups: list[dict[str, Any]], hp: Mapping[str, Any]) -> Optimizer:
    return torch.optim.AdamW(groups, lr=hp["lr"], weight_decay=hp["weight_decay"])


def _warmup_then(after: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    """Per-step multiplier of the base lr: linear warm-up over ``warmup`` steps, then ``after``."""

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return after(step)

    return multiplier


def _cosine(opt: Optimizer, hp: Mapping[str, Any], total_steps: int, steps_per_epoch: int) -> LRScheduler:
    """Linear warm-up, then cosine from the optimiser's lr to ``min_lr`` at the last step."""
    warmup = int(hp["warmup_epochs"] * steps_per_epoch)
    lr = opt.param_groups[0]["lr"]  # the string optimisers' ``lr``; an injected optimiser's own
    floor = hp["min_lr"] / lr if lr > 0 else 0.0

    def cosine(step: int) -> float:
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(opt, _warmup_then(cosine, warmup))


def _step(opt: Optimizer, hp: Mapping[str, Any], total_steps: int, steps_per_epoch: int) -> LRScheduler:
    """Linear warm-up, then the lr times ``gamma`` at each of ``milestones`` (epochs)."""
    warmup = int(hp["warmup_epochs"] * steps_per_epoch)
    milestones = [m * steps_per_epoch for m in (hp["milestones"] or [])]
    return LambdaLR(opt, _warmup_then(lambda step: hp["gamma"] ** sum(step >= m for m in milestones), warmup))


def _onecycle(opt: Optimizer, hp: Mapping[str, Any], total_steps: int, steps_per_epoch: int) -> LRScheduler:
    return OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=total_steps)


# name -> factory(param groups, hyperparameters)
OPTIMIZERS: dict[str, Callable[[list[dict[str, Any]], Mapping[str, Any]], Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}
# name -> factory(optimizer, hyperparameters, total steps, steps per epoch), stepped every iteration; None: no schedule
SCHEDULES: dict[str, Callable[[Optimizer, Mapping[str, Any], int, int], LRScheduler] | None] = {
    "cosine": _cosine,
    "step": _step,
    "onecycle": _onecycle,
    "none": None,
}
_KINDS = {  # what resolve() checks: the table, the base classes, the module of short class names
    "optimizer": (OPTIMIZERS, (Optimizer,), "torch.optim"),
    "scheduler": (SCHEDULES, (LRScheduler, ReduceLROnPlateau), "torch.optim.lr_scheduler"),
}


def resolve(spec: Any, kind: str) -> str | Callable:
    """``spec`` checked: a name of the ``kind``'s table, a callable, or a ``class_path``/``init_args`` mapping
    (made a ``functools.partial`` of a subclass of torch's optimiser or scheduler base classes)."""
    table, bases, module = _KINDS[kind]
    if isinstance(spec, str):
        if spec not in table:
            raise ValueError(
                f"{kind}={spec!r}: use one of {', '.join(map(repr, table))} or a class "
                f"({{class_path: {module}.<Class>, init_args: {{...}}}})"
            )
        return spec
    if isinstance(spec, Mapping) and "class_path" in spec:
        path = spec["class_path"]
        module_name, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module_name or module), name)
        if not (isinstance(cls, type) and issubclass(cls, bases)):
            raise ValueError(f"{kind} class_path {path!r} is no subclass of {' or '.join(b.__name__ for b in bases)}")
        return functools.partial(cls, **spec.get("init_args", {}))
    if callable(spec):
        return spec
    raise TypeError(f"{kind}={spec!r}: a name, a callable or a {{class_path, init_args}} mapping")


def as_config(spec: Any) -> Any:
    """The plain-data form of ``spec`` for the hyperparameters: a class, ``functools.partial(Class, **kwargs)``
    or jsonargparse's factory of a ``class_path`` (a partial of its instantiation helpers and the class)
    becomes ``{class_path, init_args}``; names, mappings and other callables stay as they are."""
    cls, kwargs = spec, {}
    if isinstance(spec, functools.partial):
        *helpers, cls = spec.func, *spec.args  # the class alone, or jsonargparse's helpers then the class
        if any(not getattr(h, "__module__", "").startswith("jsonargparse") for h in helpers):
            return spec
        kwargs = dict(spec.keywords)
    if isinstance(cls, type):
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": kwargs}
    return spec


def build_optimizer(spec: str | Callable, groups: list[dict[str, Any]], hp: Mapping[str, Any]) -> Optimizer:
    """The optimiser over the parameter ``groups``: a table entry (from ``hp``) or the injected factory."""
    return OPTIMIZERS[spec](groups, hp) if isinstance(spec, str) else spec(groups)


def build_scheduler(spec: str | Callable, opt: Optimizer, hp: Mapping[str, Any], trainer: Any) -> dict | None:
    """Lightning's ``lr_scheduler`` entry: a table schedule stepped every iteration, an injected one every
    epoch (Lightning's default; a ``ReduceLROnPlateau`` watches ``val/loss``), or None for "none"."""
    if not isinstance(spec, str):
        scheduler = spec(opt)
        monitor = {"monitor": "val/loss"} if isinstance(scheduler, ReduceLROnPlateau) else {}
        return {"scheduler": scheduler, "interval": "epoch", **monitor}
    factory = SCHEDULES[spec]
    if factory is None:
        return None
    total = int(trainer.estimated_stepping_batches)
    steps_per_epoch = max(1, total // max(1, trainer.max_epochs or 1))
    return {"scheduler": factory(opt, hp, total, steps_per_epoch), "interval": "step"}
