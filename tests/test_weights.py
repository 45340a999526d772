"""Weight loading: torchvision parity for the plain models, safetensors round trips, refusal of code."""

import os
import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import octzoo

PARITY = [
    pytest.param(n, marks=() if n in ("resnet18", "resnet50", "mobilenet_v2") else pytest.mark.slow)
    for n in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2"]
]


def _randomise_norms(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)


@pytest.mark.parametrize("name", PARITY)
def test_torchvision_state_dict_gives_torchvision_logits(name, tmp_path):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    _randomise_norms(tv)
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)
    model = octzoo.create_model(name, pretrained=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), rtol=0, atol=0)


def test_octzoo_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    model = octzoo.create_model("oct_resnet20", alpha=0.5).eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    loaded = octzoo.create_model("oct_resnet20", alpha=0.5, pretrained=path).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > should_not_exist",))


def test_a_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": _Evil()}, f, protocol=2)
    with pytest.raises(ValueError, match="would run code"):
        octzoo.create_model("resnet20", pretrained=path)
    assert not (tmp_path / "should_not_exist").exists()


def test_truncated_and_missing_files(tmp_path):
    model = octzoo.create_model("resnet20")
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        octzoo.create_model("resnet20", pretrained=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        octzoo.create_model("resnet20", pretrained=tmp_path / "nope.safetensors")


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(octzoo.create_model("resnet20").state_dict(), path)
    with pytest.raises(ValueError, match="missing .* tensors; the weights are for another architecture"):
        octzoo.create_model("resnet32", pretrained=path)
    save_file(octzoo.create_model("oct_resnet20", alpha=0.5).state_dict(), path)
    with pytest.raises(ValueError, match=r"has shape .* another configuration \(alpha"):
        octzoo.create_model("oct_resnet20", alpha=0.25, pretrained=path)


def test_a_training_checkpoint_loads_and_tensors_from_another_dtype_are_cast(tmp_path):
    net = octzoo.create_model("resnet20")
    state = {f"model.{k}": v.double() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"model_name": "resnet20"}}, path)
    loaded = octzoo.create_model("resnet20", pretrained=path)
    assert loaded.fc.weight.dtype == torch.float32
    assert torch.equal(loaded.fc.weight, net.fc.weight)
