"""Augmentation of whole batches of uint8 image tensors, on whatever device they are on.

Every random number comes from a CPU ``torch.Generator`` passed in, so a batch is augmented the same way on the
CPU and on a GPU, and the same seed gives the same batch. The geometry is done on uint8 (4x less memory traffic);
normalisation to float comes after it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

__all__ = ["AUGMENTS", "BatchAugment", "BatchAutoAugment", "cutout", "equalize", "normalize", "random_crop_flip"]

AUGMENTS = ("none", "standard", "cutout", "autoaugment")


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (B, C, H, W) in 0..255 -> float32 ``(x / 255 - mean) / std``, as one multiply-subtract."""
    shift, scale = _normalizer(tuple(mean), tuple(std), x.device)
    return torch.addcmul(shift, x.float(), scale)


@functools.lru_cache(maxsize=16)
def _normalizer(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """(-mean / std, 1 / (255 std)) as (1, C, 1, 1) tensors on ``device``, made once: a host-to-GPU copy per batch
    would wait for the device."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=device).view(1, -1, 1, 1)
    return shift, scale


def random_crop_flip(x: Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> Tensor:
    """Per sample: pad with ``padding`` zero pixels, crop back to (H, W) at a random offset, and mirror half of
    the samples left-right. One gather for the whole batch: each sample's crop offset and flip are folded into
    one index into its flattened padded image."""
    b, c, h, w = x.shape
    oy = torch.randint(0, 2 * padding + 1, (b, 1, 1), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b, 1, 1), generator=generator)
    flips = torch.rand(b, 1, 1, generator=generator) < 0.5 if flip else torch.zeros(b, 1, 1, dtype=torch.bool)
    cols = torch.arange(w).view(1, 1, w)
    cols = ox + torch.where(flips, w - 1 - cols, cols)  # (B, 1, W)
    rows = oy + torch.arange(h).view(1, h, 1)  # (B, H, 1)
    index = (rows * (w + 2 * padding) + cols).view(b, 1, h * w).to(x.device, non_blocking=True)
    padded = F.pad(x, (padding,) * 4).flatten(2)  # (B, C, (H + 2p) * (W + 2p))
    return padded.gather(2, index.expand(b, c, h * w)).view(b, c, h, w)


def cutout(x: Tensor, generator: torch.Generator, size: int = 16) -> Tensor:
    """Cutout (DeVries & Taylor 2017): zero a ``size`` x ``size`` square centred anywhere in each image (clipped
    at the borders). Applied after normalisation, so the square holds the mean colour. Works in place."""
    b, _, h, w = x.shape
    cy = torch.randint(h, (b, 1), generator=generator).to(x.device, non_blocking=True)
    cx = torch.randint(w, (b, 1), generator=generator).to(x.device, non_blocking=True)
    r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (r >= cy - size // 2) & (r < cy + size - size // 2)  # (B, H)
    in_cols = (c >= cx - size // 2) & (c < cx + size - size // 2)  # (B, W)
    return x.masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)


def equalize(x: Tensor) -> Tensor:
    """Histogram equalisation of every channel of a uint8 batch at once; the same result as torchvision's
    ``F.equalize`` (which loops over images and channels): the same step, rounding and look-up table."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    offsets = torch.arange(b * c, device=x.device).view(-1, 1) * 256
    hist = torch.bincount((flat + offsets).flatten(), minlength=b * c * 256).view(b * c, 256)
    at_max = hist.gather(1, flat.amax(1, keepdim=True))  # count of the last non-empty bin
    step = torch.div(h * w - at_max, 255, rounding_mode="floor")
    lut = torch.div(
        hist.cumsum(1) + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1), rounding_mode="floor"
    )
    lut = F.pad(lut, [1, 0])[:, :-1].clamp(0, 255)
    out = torch.where(step > 0, lut.gather(1, flat), flat)
    return out.to(torch.uint8).view(b, c, h, w)


class BatchAutoAugment:
    """torchvision's AutoAugment (Cubuk et al. 2019), CIFAR-10 policy by default, drawn independently per sample.

    The draws follow ``torchvision.transforms.AutoAugment.forward`` (sub-policy, apply probabilities, signs) for
    every sample; samples that drew the same operation with the same signed magnitude (from any sub-policy) are
    transformed together with torchvision's own operations, so a batch of 128 costs about 40 operator calls, not
    one or two per image.
    """

    def __init__(self, policy: AutoAugmentPolicy = AutoAugmentPolicy.CIFAR10, fill: float | None = None) -> None:
        self._aa = AutoAugment(policy)
        self.fill = fill
        self.prob = torch.tensor([[op[1] for op in sub] for sub in self._aa.policies])  # (P, 2)
        self._ops: dict[tuple[int, int], tuple[list[tuple[str, float]], Tensor]] = {}

    def _operations(self, h: int, w: int) -> tuple[list[tuple[str, float]], Tensor]:
        """For images of h x w: the distinct (operation, signed magnitude) pairs of the policy, and a table
        (policy * 2 + negative, slot) -> index into them."""
        if (h, w) not in self._ops:
            space = self._aa._augmentation_space(10, (h, w))
            ops: dict[tuple[str, float], int] = {}
            table = []
            for sub in self._aa.policies:
                for negative in (False, True):
                    row = []
                    for name, _, level in sub:
                        magnitudes, signed = space[name]
                        magnitude = float(magnitudes[level]) if level is not None else 0.0
                        op = (name, -magnitude if signed and negative else magnitude)
                        row.append(ops.setdefault(op, len(ops)))
                    table.append(row)
            self._ops[(h, w)] = (list(ops), torch.tensor(table))
        return self._ops[(h, w)]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a uint8 batch (B, C, H, W); returns a new tensor."""
        b, c, h, w = x.shape
        ops, table = self._operations(h, w)
        policy = torch.randint(len(self._aa.policies), (b,), generator=generator)
        probs = torch.rand(b, 2, generator=generator)
        negative = torch.randint(2, (b, 2), generator=generator) == 0
        apply = probs <= self.prob[policy]
        op_ids = table[policy[:, None] * 2 + negative.long(), torch.arange(2)]  # (B, 2)
        fill = None if self.fill is None else [float(self.fill)] * c
        out = x.clone()
        for slot in range(2):  # every sample's first operation, then every sample's second
            samples = torch.nonzero(apply[:, slot]).flatten()
            keys, order = op_ids[samples, slot].sort()
            uniq, counts = torch.unique_consecutive(keys, return_counts=True)
            for k, idx in zip(uniq.tolist(), samples[order].split(counts.tolist()), strict=True):
                name, magnitude = ops[k]
                idx = idx.to(x.device, non_blocking=True)
                if name == "Equalize":  # torchvision's loops over images and channels: the costliest operation
                    out[idx] = equalize(out[idx])
                else:
                    out[idx] = _apply_op(out[idx], name, magnitude, interpolation=InterpolationMode.NEAREST, fill=fill)
        return out


class BatchAugment:
    """The CIFAR training augmentation of a uint8 batch, followed by normalisation to float.

    ``mode``: "none" (normalise only), "standard" (4-pixel zero pad + random 32x32 crop + horizontal flip),
    "cutout" (standard + a 16-pixel Cutout square) or "autoaugment" (standard + AutoAugment, CIFAR-10 policy).
    """

    def __init__(
        self,
        mode: str,
        mean: Sequence[float],
        std: Sequence[float],
        padding: int = 4,
        cutout_size: int = 16,
    ) -> None:
        if mode not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {mode!r}")
        self.mode, self.mean, self.std = mode, tuple(mean), tuple(std)
        self.padding, self.cutout_size = padding, cutout_size
        self.autoaugment = BatchAutoAugment() if mode == "autoaugment" else None

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment and normalise a uint8 batch (B, C, H, W) -> float32 (B, C, H, W)."""
        if self.mode != "none":
            x = random_crop_flip(x, generator, self.padding)
        if self.autoaugment is not None:
            x = self.autoaugment(x, generator)
        x = normalize(x, self.mean, self.std)
        if self.mode == "cutout":
            x = cutout(x, generator, self.cutout_size)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, padding={self.padding}, cutout_size={self.cutout_size})"
