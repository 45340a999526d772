"""octzoo: Octave Convolution (Chen et al., ICCV 2019, arXiv 1904.05049) and the networks built with it."""

from .layers import OctaveTensor, OctConv2d, OctConvNormAct, split_channels
from .models import create_model, list_models, list_pretrained, load_weights
from .profile import Profile, profile

__version__ = "0.1.0"
__all__ = [
    "OctConv2d",
    "OctConvNormAct",
    "OctaveTensor",
    "Profile",
    "create_model",
    "list_models",
    "list_pretrained",
    "load_weights",
    "profile",
    "split_channels",
]
