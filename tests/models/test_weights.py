"""Weight loading: torchvision parity for the plain models, safetensors round trips, refusal of code."""

import os
import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import octzoo
from octzoo.layers import set_norm_folding

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
        want = tv(x)
        # folded batch norms round differently; unfolded, the remapped network is torchvision's, bit for bit
        torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
        torch.testing.assert_close(set_norm_folding(model, False)(x), want, rtol=0, atol=0)


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


def _octconv_pytorch_resnet(depths, alpha=0.5, classes=1000):
    """A state dict in octconv.pytorch's OctResNet layout, names and shapes from its own rules (branch outputs
    int(alpha * C) low and C - int(alpha * C) high; layer1's first block 0 -> alpha, layer4 alpha -> 0 in its
    first block's conv1 and projection, plain after), filled with distinct random values."""
    norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

    def bn(prefix, c):
        shapes.update({f"{prefix}.{n}": (c,) if n != "num_batches_tracked" else () for n in norm})

    shapes = {"conv1.weight": (64, 3, 7, 7)}
    bn("bn1", 64)

    def conv_bn(prefix, c_in, c_out, k, a_in, a_out, groups=1):
        lo_in, lo_out = int(a_in * c_in), int(a_out * c_out)
        hi_in, hi_out = c_in - lo_in, c_out - lo_out
        for path, i, o in (
            ("h2h", hi_in, hi_out),
            ("h2l", hi_in, lo_out),
            ("l2h", lo_in, hi_out),
            ("l2l", lo_in, lo_out),
        ):
            if i and o:
                shapes[f"{prefix}.conv.conv_{path}.weight"] = (o, i, k, k)
        for branch, c in (("h", hi_out), ("l", lo_out)):
            if c:
                bn(f"{prefix}.bn_{branch}", c)

    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), depths, strict=True), 1):
        for j in range(blocks):
            output = i == 4
            a_in = 0.0 if (i == 1 and j == 0) or (output and j > 0) else alpha
            a_out = 0.0 if output else alpha
            a_mid = 0.0 if output else alpha
            p = f"module.layer{i}.{j}"
            conv_bn(f"{p}.conv1", inplanes if j == 0 else planes * 4, planes, 1, a_in, a_mid)
            conv_bn(f"{p}.conv2", planes, planes, 3, a_mid, a_mid)
            conv_bn(f"{p}.conv3", planes, planes * 4, 1, a_mid, a_mid)
            if j == 0:
                conv_bn(f"{p}.downsample.0", inplanes, planes * 4, 1, a_in, a_out)
        inplanes = planes * 4
    shapes.update({"fc.weight": (classes, 2048), "fc.bias": (classes,)})
    return {k: torch.randn(s).abs() if s else torch.tensor(7) for k, s in shapes.items()}


@pytest.mark.parametrize("name, depths", [("oct_resnet26", (2, 2, 2, 2)), ("oct_resnet50", (3, 4, 6, 3))])
def test_octconv_pytorch_checkpoints_load_into_the_same_architecture(name, depths, tmp_path):
    state = _octconv_pytorch_resnet(depths)
    path = tmp_path / "their.pth.tar"
    torch.save({"epoch": 120, "arch": name, "state_dict": state}, path)  # their training checkpoint's layout
    model = octzoo.create_model(name, alpha=0.5, pretrained=path)
    own = model.state_dict()
    assert torch.equal(own["conv1.conv.h2h.weight"], state["conv1.weight"])
    assert torch.equal(
        own["layer4.0.downsample.conv.l2h.weight"], state["module.layer4.0.downsample.0.conv.conv_l2h.weight"]
    )
    assert torch.equal(own["layer2.1.conv2.norm_l.bias"], state["module.layer2.1.conv2.bn_l.bias"])
    loaded = sum(
        any(torch.equal(v, w) for w in [own[k]]) for k, v in octzoo.models._convert.from_octconv_pytorch(state).items()
    )
    assert loaded == len(state)  # every tensor of theirs landed, none was left out (strict load)
    with pytest.raises(ValueError, match="has shape"):  # their alpha .5 weights do not fit alpha .25
        octzoo.create_model(name, alpha=0.25, pretrained=path)
