"""The timm contract: octzoo's octave models are timm models, timm's own models stay timm's."""

import timm
import torch

import octzoo  # noqa: F401  (registers the octave models in timm)


def test_octave_models_are_registered_and_built_by_timm():
    assert "oct_resnet50" in timm.list_models("oct_*")
    model = timm.create_model("oct_resnet20", num_classes=4, in_chans=1, alpha=0.5)
    assert model.alpha == 0.5
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert timm.get_pretrained_cfg("oct_resnet50").input_size == (3, 224, 224)


def test_timm_models_are_never_replaced():
    model = timm.create_model("resnet50")
    assert type(model).__module__.startswith("timm.")
    assert not timm.list_models("mobilenet_v1")  # plain names are octzoo's own, not timm's


def test_features_only_through_timm():
    model = timm.create_model("oct_resnet50", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
