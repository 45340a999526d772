"""What several test modules share (fixtures live in conftest.py): independent references (octave convolution
in float64 from the paper's Eq. 1-2, with its own pooling and upsampling, not octzoo's; a reader of W&B's
transaction log) and a tiny data module with a learning-rate trace for training-loop tests."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from octzoo.layers import OctConv2d

PATHS = ("h2h", "h2l", "l2h", "l2l")


def ref_split(c: int, alpha: float) -> tuple[int, int]:
    c_low = int(alpha * c)
    return c - c_low, c_low


def ref_pool(x: Tensor) -> Tensor:
    """2x2 / stride-2 mean over the valid pixels of each block (ceil mode), without avg_pool2d."""
    n, c, h, w = x.shape
    ph, pw = h % 2, w % 2
    xp = F.pad(x, (0, pw, 0, ph))  # zeros on the bottom / right border
    ones = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype), (0, pw, 0, ph))
    h2, w2 = (h + ph) // 2, (w + pw) // 2
    total = xp.reshape(n, c, h2, 2, w2, 2).sum(dim=(3, 5))
    count = ones.reshape(1, 1, h2, 2, w2, 2).sum(dim=(3, 5))
    return total / count


def ref_upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest 2x upsample cropped to ``size``: out[..., i, j] = x[..., i // 2, j // 2]."""
    rows = torch.arange(size[0]) // 2
    cols = torch.arange(size[1]) // 2
    return x[:, :, rows[:, None], cols[None, :]]


def ref_low_side(side: int) -> int:
    return (side + 1) // 2


def expected_paths(c_in, c_out, alpha_in, alpha_out, groups):
    """Which paths exist and their groups, straight from the spec."""
    ci_h, ci_l = ref_split(c_in, alpha_in)
    co_h, co_l = ref_split(c_out, alpha_out)
    depthwise = groups > 1 and groups == c_in == c_out and alpha_in == alpha_out
    if depthwise:
        paths = {"h2h": ci_h, "h2l": None, "l2h": None, "l2l": ci_l if ci_l else None}
    else:
        paths = {
            "h2h": groups,
            "h2l": groups if co_l else None,
            "l2h": groups if ci_l else None,
            "l2l": groups if ci_l and co_l else None,
        }
    return paths


def reference_octconv(layer: OctConv2d, x, *, c_in, c_out, alpha_in, alpha_out, groups, stride, padding, dilation):
    """Eq. 1-2 in float64 with the layer's own weights; returns a Tensor or an (high, low) tuple."""
    ci_h, ci_l = ref_split(c_in, alpha_in)
    co_h, co_l = ref_split(c_out, alpha_out)
    paths = expected_paths(c_in, c_out, alpha_in, alpha_out, groups)

    def conv(name, inp, conv_stride=1):
        mod = getattr(layer, name)
        w = mod.weight.detach().double()
        b = None if mod.bias is None else mod.bias.detach().double()
        return F.conv2d(inp, w, b, stride=conv_stride, padding=padding, dilation=dilation, groups=paths[name])

    if ci_l == 0:
        x_h, x_l = x, None
    else:
        x_h, x_l = x
    x_h = x_h.double()
    x_l = None if x_l is None else x_l.double()

    if ci_l == 0 and co_l == 0:  # a plain (strided) convolution
        return conv("h2h", x_h, stride)

    if stride == 2:
        xh_s = ref_pool(x_h)
        xl_s = None if x_l is None else ref_pool(x_l)
    else:
        xh_s, xl_s = x_h, x_l

    y_h = conv("h2h", xh_s)
    if paths["l2h"] is not None:
        t = conv("l2h", x_l)  # the un-pooled low map
        y_h = y_h + (t if stride == 2 else ref_upsample(t, tuple(y_h.shape[-2:])))
    if co_l == 0:
        return y_h
    y_l = None
    if paths["h2l"] is not None:
        y_l = conv("h2l", ref_pool(xh_s))
    if paths["l2l"] is not None:
        t = conv("l2l", xl_s)
        y_l = t if y_l is None else y_l + t
    return y_h, y_l


def read_wandb_records(path: Path):
    """The protobuf records of a W&B transaction log (``run-*.wandb``): leveldb-style 32 KiB blocks of
    chunks with a 7-byte header (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) after a 7-byte
    file header (b":W&B", magic, version)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


class TinyData(L.LightningDataModule):
    """Random 8x8 images in 10 classes: enough to drive the training loop, fast on 2 cores."""

    num_classes = 10
    input_size = (3, 8, 8)

    def __init__(self, n: int = 16, batch_size: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ds = TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size)

    test_dataloader = val_dataloader


class LrTrace(Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
