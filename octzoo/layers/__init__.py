"""Tier 1: the octave operator and the block every family is built from (depends on torch only)."""

from .blocks import OctConvNormAct, OctMap, convert_alpha, from_octave, oct_add, oct_apply, set_norm_folding, to_octave
from .cpu_fast import cpu_fast_path, set_cpu_fast_path
from .octconv import OctaveTensor, OctConv2d, check_alpha, low_size, split_channels
from .resample import add_upsampled, pool2x, upsample_to

__all__ = [
    "OctConv2d",
    "OctConvNormAct",
    "OctMap",
    "OctaveTensor",
    "add_upsampled",
    "check_alpha",
    "convert_alpha",
    "cpu_fast_path",
    "from_octave",
    "low_size",
    "oct_add",
    "oct_apply",
    "pool2x",
    "set_cpu_fast_path",
    "set_norm_folding",
    "split_channels",
    "to_octave",
    "upsample_to",
]
