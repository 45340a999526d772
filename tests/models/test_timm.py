"""The timm contract: octzoo's octave models are timm models, timm's own models stay timm's."""

import pytest
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


def test_tagged_names_through_timm_are_the_tags_weights(tmp_path):
    """timm hands the tag of "arch.tag" over as a string: the tag's architecture and weights, as octzoo's own
    create_model gives them, pretrained or not; pretrained_cfg_overlay's file loads into that architecture."""
    x = torch.randn(2, 3, 32, 32)
    ours = octzoo.create_model("oct_resnet20.a500_c10", pretrained=True).eval()
    theirs = timm.create_model("oct_resnet20.a500_c10", pretrained=True).eval()
    assert (theirs.alpha, theirs.pretrained_cfg["tag"]) == (0.5, "a500_c10")
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=0, atol=0)
    fresh = timm.create_model("oct_resnet20.a500_c10")
    assert fresh.alpha == 0.5 and not torch.equal(fresh.fc.weight, ours.fc.weight)

    own = octzoo.create_model("oct_resnet20", alpha=0.5).eval()
    torch.save(own.state_dict(), tmp_path / "own.pt")
    overlay = dict(file=str(tmp_path / "own.pt"), mean=(0.5, 0.5, 0.5))
    loaded = timm.create_model("oct_resnet20.a500_c10", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), own(x), rtol=0, atol=0)
    assert loaded.pretrained_cfg["file"] == str(tmp_path / "own.pt") and loaded.pretrained_cfg["mean"] == (0.5,) * 3
    with pytest.raises(ValueError, match=r"pretrained_cfg_overlay \['url'\]: .* pass pretrained_cfg_overlay=dict"):
        timm.create_model("oct_resnet20.a500_c10", pretrained=True, pretrained_cfg_overlay=dict(url="https://x/w"))


def test_timms_device_argument_places_the_model():
    model = timm.create_model("oct_resnet20", device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
