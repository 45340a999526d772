"""Tier 1: the octave operator and the block every family is built from (depends on torch only)."""

from .blocks import (
    OctConvNormAct,
    OctMap,
    as_octave,
    convert_alpha,
    from_octave,
    oct_add,
    oct_apply,
    scriptable_trace,
    set_norm_folding,
    to_octave,
)
from .cpu_fast import cpu_fast_path, set_cpu_fast_path
from .octconv import OctaveTensor, OctConv2d, check_alpha, low_size, split_channels
from .resample import add_upsampled, is_fx_tracing, pool2x, upsample_to

__all__ = [
    "OctConv2d",
    "OctConvNormAct",
    "OctMap",
    "OctaveTensor",
    "add_upsampled",
    "as_octave",
    "check_alpha",
    "convert_alpha",
    "cpu_fast_path",
    "from_octave",
    "is_fx_tracing",
    "low_size",
    "oct_add",
    "oct_apply",
    "pool2x",
    "scriptable_trace",
    "set_cpu_fast_path",
    "set_norm_folding",
    "split_channels",
    "to_octave",
    "upsample_to",
]
