"""How many ATen operators a training step runs: the measure of per-step host work behind ``ops/step``.

On a GPU every ATen compute operator is at least one kernel launch and a trip through the dispatcher, so a
network whose step is host-bound gets faster only by running fewer of them. The count is taken on any device
(the CPU will do) with a dispatch mode that sees every operator autograd and the modules call:

- one forward in train mode, the cross-entropy loss and its backward; no optimizer step;
- views (``view``, ``transpose``, ``split``, ``detach``, ...) and bare allocations (``empty*``) are left out:
  they launch no kernel;
- everything else counts once per call, including copies (``clone``, ``contiguous``), the batch norms'
  ``num_batches_tracked`` increments and the adds that accumulate a gradient from two consumers. Operators
  called inside a custom autograd Function count as the ATen operators it calls.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OpCounter", "count_train_ops", "train_op_counts"]

_ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}


class OpCounter(TorchDispatchMode):
    """Counts the ATen compute operators called while active, by name (``conv2d`` rather than overloads)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in _ALLOCATIONS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def train_op_counts(model: nn.Module, x: Tensor, num_classes: int | None = None) -> Counter[str]:
    """Operators of one training step of ``model`` on ``x``: forward in train mode, cross-entropy, backward.

    The model's gradients are cleared before and after (``set_to_none``), so the backward assigns rather than
    accumulates them; its mode is restored.
    """
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        classes = num_classes or model(x).shape[-1]
    target = torch.arange(x.shape[0], device=x.device) % classes
    try:
        with OpCounter() as counter:
            F.cross_entropy(model(x), target).backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return counter.counts


def count_train_ops(model: nn.Module, x: Tensor) -> int:
    """The total of :func:`train_op_counts`: ATen compute operators of one forward and backward."""
    return sum(train_op_counts(model, x).values())
