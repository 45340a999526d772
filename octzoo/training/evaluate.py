"""Top-1 / top-5 of a network on a DataModule's test (or validation) set, in float32, without a Trainer."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

__all__ = ["evaluate"]


def evaluate(model: nn.Module, datamodule: L.LightningDataModule, stage: str = "test") -> dict[str, Any]:
    """``{"top1", "top5"}`` in percent, ``"split"`` and ``"images"``: the network in eval mode, float32, on the CPU,
    batches normalised by the DataModule exactly as in ``octzoo test``."""
    datamodule.prepare_data()
    datamodule.setup(stage)
    loader = datamodule.test_dataloader() if stage == "test" else datamodule.val_dataloader()
    model = model.eval().float()
    correct1 = correct5 = count = 0
    with torch.inference_mode():
        for batch in loader:
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            top = model(x).topk(min(5, model.num_classes), dim=1).indices
            hits = top == y[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            count += len(y)
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "split": stage, "images": count}
