"""Parameter and multiply-add counts, in the paper's convention (one multiply-add = one "FLOP")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["Profile", "profile"]


@dataclass(frozen=True)
class Profile:
    """``params``: trainable parameters; ``macs``: multiply-adds of one forward pass of one image."""

    params: int
    macs: int
    macs_by_operator: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.params / 1e6:.3f} M params, {self.macs / 1e9:.3f} G MACs"


def profile(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)) -> Profile:
    """Count parameters and the multiply-adds of convolutions and matrix products, operator by operator.

    Counting happens at the ATen level (``torch.utils.flop_counter``), so functional convolutions and
    every path of an octave layer are included; pooling, upsampling, norms and adds are not (the paper's
    convention). The model runs once in eval mode on a zero input and is left in the mode it was in.
    """
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, *input_size, device=next(model.parameters()).device)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    by_op = {str(op).split(".")[-1]: n // 2 for op, n in counter.get_flop_counts()["Global"].items()}
    return Profile(params=params, macs=counter.get_total_flops() // 2, macs_by_operator=by_op)
