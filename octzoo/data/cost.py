"""What CIFAR-10 loading costs next to a training step: ``python -m octzoo.data.cost --data-dir DIR``.

Times, batch by batch and interleaved (so that both see the same machine load), (a) taking the next batch from
``CIFAR10DataModule.train_dataloader()`` and augmenting/normalising it with ``on_after_batch_transfer``, and
(b) one forward/backward/SGD step of a model on such a batch, and prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from ..models import create_model
from .cifar import CIFAR10DataModule

__all__ = ["measure_loader_cost"]


def measure_loader_cost(
    datamodule: CIFAR10DataModule, model: str = "resnet20", steps: int = 30, warmup: int = 3
) -> dict[str, Any]:
    """Median milliseconds per batch of loading+augmentation and of a training step, and load/step in percent."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    net = create_model(model, num_classes=datamodule.num_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loader_iter = iter(datamodule.train_dataloader())
    load_ms, step_ms = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = datamodule.on_after_batch_transfer(next(loader_iter), 0)
        t1 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= warmup:
            load_ms.append(1e3 * (t1 - t0))
            step_ms.append(1e3 * (t2 - t1))
    load, step = statistics.median(load_ms), statistics.median(step_ms)
    return {
        "model": model,
        "batch_size": datamodule.batch_size,
        "augment": datamodule.hparams.augment,
        "threads": torch.get_num_threads(),
        "load_ms": load,
        "step_ms": step,
        "load_pct": 100 * load / step,
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; prints one line per augmentation mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="any data_dir CIFAR10DataModule accepts")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--augment", nargs="+", default=["standard"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for augment in args.augment:
        dm = CIFAR10DataModule(args.data_dir, batch_size=args.batch_size, augment=augment, cache_dir=args.cache_dir)
        r = measure_loader_cost(dm, args.model, args.steps)
        print(
            f"{r['model']} batch {r['batch_size']} threads {r['threads']} augment={augment}: loading+augmentation "
            f"{r['load_ms']:.2f} ms, training step {r['step_ms']:.1f} ms -> {r['load_pct']:.2f} % of a step"
        )


if __name__ == "__main__":
    main()
