"""Published weights: the registry, tags, file checks, head/stem adaptation, torchvision's weights, export.

The published entries themselves are checked in test_published_weights.py; here a registry of weights made
by the tests stands in for the package's, so every path runs without a network.
"""

import json
import logging
import re
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
import torchvision

import octzoo
from octzoo.export import save_safetensors, weight_entry
from octzoo.layers import set_norm_folding
from octzoo.models import WeightSource, _pretrained, _registry, resolve_weights

SUMMARY = {
    "command": ["octzoo", "fit", "--config", "configs/cifar10/oct_resnet20.yaml", "--trainer.max_epochs", "2"],
    "config": {"trainer": {"precision": "32-true"}},
    "epochs": 2,
    "wall_time_s": 12.5,
    "seed": 0,
}
METRICS = {"top1": 50.0, "top5": 90.0, "split": "test", "images": 100}
CLASSES = [f"class{i}" for i in range(10)]


def _publish(folder, name, alpha, url=None):
    """Random oct_resnet20 weights as a published file + entry (the way `octzoo export --tag` makes them)."""
    arch, tag = name.split(".")
    torch.manual_seed(int(alpha * 100))
    net = octzoo.create_model(arch, alpha=alpha).eval()
    for m in net.modules():  # non-trivial statistics, so a wrong load cannot pass unnoticed
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    info = {"architecture": arch, "model_kwargs": {"alpha": alpha}, "num_classes": 10}
    path = save_safetensors(net, folder / f"{arch}_{tag}.safetensors", info)
    entry = weight_entry(net, info, path, tag, SUMMARY, METRICS, "test data", CLASSES, commit="0" * 40)
    entry["file"]["url"] = url
    return net, entry


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A package folder with two published oct_resnet20 weights (alpha .5 and the default .25)."""
    package = tmp_path / "package"
    package.mkdir()
    nets, entries = {}, []
    for name, alpha in [("oct_resnet20.a500_t", 0.5), ("oct_resnet20.a250_t", 0.25)]:
        nets[name], entry = _publish(package, name, alpha)
        entries.append(entry)
    (package / "registry.json").write_text(json.dumps({"schema": 1, "weights": entries}))
    monkeypatch.setattr(_pretrained, "WEIGHTS_DIR", package)
    monkeypatch.setattr(_pretrained, "REGISTRY_FILE", package / "registry.json")
    monkeypatch.setenv("OCTZOO_CACHE_DIR", str(tmp_path / "cache"))
    _pretrained._registry.cache_clear()
    yield nets
    _pretrained._registry.cache_clear()


def _same(a, b, x):
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


X = torch.randn(2, 3, 32, 32)


def test_tags_select_weights_and_their_alpha(registry):
    assert octzoo.list_pretrained() == ["oct_resnet20.a250_t", "oct_resnet20.a500_t"]
    by_name = octzoo.create_model("oct_resnet20.a500_t", pretrained=True)
    assert by_name.alpha == 0.5 and by_name.pretrained_cfg["tag"] == "a500_t"
    _same(by_name, registry["oct_resnet20.a500_t"], X)
    for spelled in ("a500_t", "oct_resnet20.a500_t"):
        _same(octzoo.create_model("oct_resnet20", pretrained=spelled), by_name, X)
    # pretrained=True: the weight at the family's default alpha (.25)
    default = octzoo.create_model("oct_resnet20", pretrained=True)
    assert default.alpha == 0.25
    _same(default, registry["oct_resnet20.a250_t"], X)
    # a tag without pretrained: its architecture, freshly initialised (timm's meaning)
    fresh = octzoo.create_model("oct_resnet20.a500_t")
    assert fresh.alpha == 0.5 and not torch.equal(fresh.fc.weight, by_name.fc.weight)


def test_a_file_loads_into_the_architecture_of_the_names_tag(registry, tmp_path):
    """A tagged name with a weights file: the tag's architecture and preprocessing, the file's weights (timm's
    pretrained_cfg_overlay file); the cfg names the file, not the published one's checksum and metrics."""
    own = octzoo.create_model("oct_resnet20", alpha=0.5)  # weights of the same architecture, not the published
    path = tmp_path / "own.pt"
    torch.save(own.state_dict(), path)
    loaded = octzoo.create_model("oct_resnet20.a500_t", pretrained=path)
    assert loaded.alpha == 0.5
    _same(loaded, own, X)
    published = registry["oct_resnet20.a500_t"].pretrained_cfg
    assert (loaded.pretrained_cfg["file"], loaded.pretrained_cfg["tag"]) == (str(path), "a500_t")
    assert loaded.pretrained_cfg["mean"] == published["mean"]
    assert "sha256" not in loaded.pretrained_cfg and "metrics" not in loaded.pretrained_cfg


def test_the_first_listed_weight_at_the_default_alpha_is_the_default(registry):
    """Two weights at the default alpha: pretrained=True loads the one listed first in the file, whatever the
    names' sort order (timm's first-tag rule)."""
    package = _pretrained.WEIGHTS_DIR
    longer, entry = _publish(package, "oct_resnet20.a250_b", 0.25)
    data = json.loads(_pretrained.REGISTRY_FILE.read_text())
    for first in (True, False):
        weights = [w for w in data["weights"] if w["name"] != entry["name"]]
        weights.insert(0 if first else len(weights), entry)
        _pretrained.REGISTRY_FILE.write_text(json.dumps({"schema": 1, "weights": weights}))
        _pretrained._registry.cache_clear()
        default = octzoo.create_model("oct_resnet20", pretrained=True)
        assert default.pretrained_cfg["tag"] == ("a250_b" if first else "a250_t")
        _same(default, longer if first else registry["oct_resnet20.a250_t"], X)


@pytest.mark.parametrize(
    "call, match",
    [
        (dict(name="oct_resnet20.a500_t", pretrained=True, alpha=0.25), "alpha=0.25 contradicts oct_resnet20.a500_t"),
        (dict(name="oct_resnet20.a999_t", pretrained=True), r"published for oct_resnet20: .*a250_t"),
        (dict(name="oct_resnet20", pretrained="zzz"), "unknown pretrained weight"),
        (dict(name="oct_resnet32", pretrained="oct_resnet20.a500_t"), "another model"),
        (dict(name="oct_resnet32", pretrained=True), "no published weights for oct_resnet32"),
        (dict(name="oct_resnet20", pretrained="torchvision"), "torchvision has no weights for the octave"),
        (dict(name="resnet20", pretrained="weights/missing.safetensors"), "does not exist"),
    ],
)
def test_wrong_tags_and_arguments_are_named(registry, call, match):
    name = call.pop("name")
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        octzoo.create_model(name, **call)


def test_the_resolver_names_each_kind_of_source(registry):
    """What each kind of ``pretrained`` loads, found without building a model or reading a file."""
    a500, a250 = (_pretrained.pretrained_weight(f"oct_resnet20.{t}") for t in ("a500_t", "a250_t"))
    # nothing: a fresh model; a tag in the name still gives the architecture (and cfg) of its weight
    assert resolve_weights("oct_resnet20") == WeightSource("oct_resnet20", None, None)
    assert resolve_weights("oct_resnet20.a500_t") == WeightSource("oct_resnet20", a500, None)
    assert resolve_weights("oct_resnet20.a500_t").kind is None
    # True: the name's tag, else the published weight at the default alpha
    assert resolve_weights("oct_resnet20", True) == WeightSource("oct_resnet20", a250, a250)
    assert resolve_weights("oct_resnet20.a500_t", True) == WeightSource("oct_resnet20", a500, a500)
    # a tag, short or full, also when it repeats the name's own
    for spelled in ("a500_t", "oct_resnet20.a500_t"):
        assert resolve_weights("oct_resnet20", spelled) == WeightSource("oct_resnet20", a500, a500)
    assert resolve_weights("oct_resnet20.a500_t", "a500_t").kind == "published"
    assert resolve_weights("oct_resnet20", "a500_t", alpha=0.5).load is a500  # an agreeing alpha is fine
    # torchvision (plain models); nothing is downloaded to resolve it
    with mock.patch.object(_registry, "torchvision_state_dict") as fetch:
        tv = resolve_weights("resnet18", "torchvision")
    fetch.assert_not_called()
    assert tv == WeightSource("resnet18", None, "torchvision") and tv.kind == "torchvision"
    # a file: a path with a folder or a weights suffix, a str or a PathLike; it need not exist yet
    for path in ("weights/w.pt", "w.safetensors", Path("w.bin")):
        source = resolve_weights("resnet20", path)
        assert source == WeightSource("resnet20", None, path) and source.kind == "file"
    # a file with a tagged name: the tag's weight gives the architecture, the file the weights
    assert resolve_weights("oct_resnet20.a500_t", "w.safetensors") == WeightSource(
        "oct_resnet20", a500, "w.safetensors"
    )


def _only(weights):
    """Make the test registry hold just ``weights`` (entries of the fixture's registry, by name)."""
    data = json.loads(_pretrained.REGISTRY_FILE.read_text())
    data["weights"] = [w for w in data["weights"] if w["name"] in weights]
    _pretrained.REGISTRY_FILE.write_text(json.dumps(data))
    _pretrained._registry.cache_clear()


@pytest.mark.parametrize(
    "name, pretrained, alpha, message",
    [
        ("oct_resnet20.a500_t", True, 0.25, "alpha=0.25 contradicts oct_resnet20.a500_t, which has alpha=0.5"),
        ("oct_resnet20", "a500_t", 0.0, "alpha=0.0 contradicts oct_resnet20.a500_t, which has alpha=0.5"),
        (
            "oct_resnet20",
            "torchvision",
            None,
            "torchvision has no weights for the octave model oct_resnet20; use resnet20",
        ),
        (
            "oct_resnet32",
            True,
            None,
            "no published weights for oct_resnet32 at its default alpha (0.25); pass a tag, a weights file "
            "(pretrained='path/to/file') or, for plain ImageNet models, pretrained='torchvision'",
        ),
        (
            "oct_resnet32",
            "oct_resnet20.a500_t",
            None,
            "pretrained='oct_resnet20.a500_t' is a weight of another model than 'oct_resnet32'",
        ),
        (
            "oct_resnet20.a500_t",
            "a250_t",
            None,
            "pretrained='a250_t' is a weight of another model than 'oct_resnet20.a500_t'",
        ),
        (
            "oct_resnet20",
            "zzz",
            None,
            "unknown pretrained weight 'oct_resnet20.zzz' (published for oct_resnet20: oct_resnet20.a250_t, "
            "oct_resnet20.a500_t)",
        ),
        ("mobilenetv2", False, None, "unknown model 'mobilenetv2'; did you mean 'mobilenet_v2'"),
        (
            "oct_resnet20.a500_t",
            "torchvision",
            None,
            "'oct_resnet20.a500_t' names octzoo's published weight oct_resnet20.a500_t and pretrained='torchvision' "
            "names torchvision's: pass one of them",
        ),
    ],
)
def test_the_resolver_refuses_with_todays_messages(registry, name, pretrained, alpha, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_weights(name, pretrained, alpha)
    with pytest.raises(ValueError, match=re.escape(message)):  # create_model refuses the same way
        octzoo.create_model(name, pretrained, alpha=alpha)


def test_the_resolver_lists_the_published_tags_when_none_has_the_default_alpha(registry):
    _only(["oct_resnet20.a500_t"])
    message = "no published weights for oct_resnet20 at its default alpha (0.25); published: oct_resnet20.a500_t; "
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_weights("oct_resnet20", True)


def test_the_resolver_checks_builder_arguments_against_the_weight(registry):
    """A weight's non-alpha architecture arguments must agree with the caller's, and are passed to the builder."""
    data = json.loads(_pretrained.REGISTRY_FILE.read_text())
    data["weights"][0]["model_kwargs"]["drop_rate"] = 0.1  # oct_resnet20.a500_t
    _pretrained.REGISTRY_FILE.write_text(json.dumps(data))
    _pretrained._registry.cache_clear()
    with pytest.raises(
        ValueError, match=re.escape("drop_rate=0.2 contradicts oct_resnet20.a500_t, which has drop_rate=0.1")
    ):
        resolve_weights("oct_resnet20.a500_t", kwargs={"drop_rate": 0.2})
    assert resolve_weights("oct_resnet20.a500_t", kwargs={"drop_rate": 0.1}).weight.model_kwargs["drop_rate"] == 0.1
    net = octzoo.create_model("oct_resnet20.a500_t")
    assert net.alpha == 0.5 and net.drop_rate == 0.1


def test_a_changed_or_truncated_file_is_refused_naming_the_hash(registry):
    weight = octzoo.models._pretrained.pretrained_weight("oct_resnet20.a500_t")
    path = _pretrained.WEIGHTS_DIR / weight.file["name"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path.name}: sha256 .* {weight.file['sha256']}"):
        octzoo.create_model("oct_resnet20.a500_t", pretrained=True)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match=f"{weight.file['size']} bytes .* truncated"):
        octzoo.create_model("oct_resnet20.a500_t", pretrained=True)


def test_a_file_not_in_the_package_is_downloaded_to_the_cache_and_checked(registry, tmp_path):
    weight = octzoo.models._pretrained.pretrained_weight("oct_resnet20.a500_t")
    served = tmp_path / "server" / weight.file["name"]
    served.parent.mkdir()
    shutil.move(_pretrained.WEIGHTS_DIR / weight.file["name"], served)
    with pytest.raises(FileNotFoundError, match="neither in the package"):
        octzoo.create_model("oct_resnet20.a500_t", pretrained=True)
    data = json.loads(_pretrained.REGISTRY_FILE.read_text())
    data["weights"][0]["file"]["url"] = served.as_uri()
    _pretrained.REGISTRY_FILE.write_text(json.dumps(data))
    _pretrained._registry.cache_clear()
    net = octzoo.create_model("oct_resnet20.a500_t", pretrained=True)
    _same(net, registry["oct_resnet20.a500_t"], X)
    assert (tmp_path / "cache" / "weights" / weight.file["name"]).is_file()
    elsewhere = tmp_path / "elsewhere"  # cache_dir (timm's argument too) over the environment's cache
    _same(octzoo.create_model("oct_resnet20.a500_t", pretrained=True, cache_dir=elsewhere), net, X)
    assert (elsewhere / "weights" / weight.file["name"]).is_file()
    served.write_bytes(b"not the weights")  # a wrong download is refused before it reaches the cache
    (tmp_path / "cache" / "weights" / weight.file["name"]).unlink()
    with pytest.raises(RuntimeError, match="could not download"):
        octzoo.create_model("oct_resnet20.a500_t", pretrained=True)
    assert not (tmp_path / "cache" / "weights" / weight.file["name"]).exists()


def test_other_num_classes_reset_the_head_and_in_chans_adapt_the_stem(registry, caplog):
    ref = registry["oct_resnet20.a500_t"]
    with caplog.at_level(logging.INFO, logger="octzoo"):
        net = octzoo.create_model("oct_resnet20.a500_t", pretrained=True, num_classes=3)
    assert "classifier of 10 classes not loaded" in caplog.text
    assert net.fc.out_features == 3
    with torch.no_grad():
        torch.testing.assert_close(net.eval().forward_features(X), ref.forward_features(X), rtol=0, atol=0)
    headless = octzoo.create_model("oct_resnet20.a500_t", pretrained=True, num_classes=0).eval()
    with torch.no_grad():
        torch.testing.assert_close(headless(X), ref.forward_head(ref.forward_features(X), pre_logits=True))
    grey = torch.randn(2, 1, 32, 32)
    with caplog.at_level(logging.INFO, logger="octzoo"):
        one = octzoo.create_model("oct_resnet20.a500_t", pretrained=True, in_chans=1).eval()
    assert "adapted from 3 to 1 input channels" in caplog.text
    with torch.no_grad():  # summed stem: a grey image gives what the RGB model gives for grey stacked thrice
        torch.testing.assert_close(one(grey), ref(grey.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-5)


def test_non_strict_loading_reports_what_did_not_fit(tmp_path):
    net = octzoo.create_model("resnet20")
    state = net.state_dict()
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing \('fc.bias'\); 1 unexpected \('extra.weight'\)"):
        octzoo.load_weights(octzoo.create_model("resnet20"), state)
    other = octzoo.create_model("resnet20")
    report = octzoo.load_weights(other, state, strict=False)
    assert report.missing == ["fc.bias"] and report.unexpected == ["extra.weight"]
    assert torch.equal(other.fc.weight, net.fc.weight)


def test_an_entry_names_the_command_that_trains_from_scratch(tmp_path):
    """A resumed run's summary keeps --ckpt_path; the published command and overrides leave it out."""
    net = octzoo.create_model("resnet20")
    info = {"architecture": "resnet20", "model_kwargs": {}, "num_classes": 10}
    path = save_safetensors(net, tmp_path / "w.safetensors", info)
    resumed = dict(SUMMARY, command=SUMMARY["command"] + ["--ckpt_path", "runs/x/last.ckpt", "--ckpt_path=y"])
    entry = weight_entry(net, info, path, "t", resumed, METRICS, "test data", CLASSES, commit="0" * 40)
    assert entry["training"]["command"] == (
        "octzoo fit --config configs/cifar10/oct_resnet20.yaml --trainer.max_epochs 2"
    )
    assert entry["training"]["config"] == ["configs/cifar10/oct_resnet20.yaml"]
    assert entry["training"]["overrides"] == ["--trainer.max_epochs", "2"]


def test_registry_entries_are_validated(tmp_path):
    _, entry = _publish(tmp_path, "oct_resnet20.a500_t", 0.5)
    path = tmp_path / "registry.json"
    for change, match in [
        (lambda e: e.pop("metrics"), "missing field"),
        (lambda e: e["file"].update(sha256="abc"), "64 lowercase hex"),
        (lambda e: e["metrics"].update(top1=101.0), "percentage"),
        (lambda e: e.update(name="oct_resnet20"), "architecture.*tag|'oct_resnet20.<tag>'"),
        (lambda e: e.update(class_names=["a"]), "1 class names for 10 classes"),
        (lambda e: e.update(params="many"), "params: expected int"),
    ]:
        bad = json.loads(json.dumps(entry))
        change(bad)
        path.write_text(json.dumps({"schema": 1, "weights": [bad]}))
        with pytest.raises(ValueError, match=match):
            _pretrained.read_registry(path)
    path.write_text(json.dumps({"schema": 1, "weights": [entry, entry]}))
    with pytest.raises(ValueError, match="listed twice"):
        _pretrained.read_registry(path)


def test_timm_entrypoint_passes_the_tag(registry):
    from octzoo.models._timm import _entrypoint

    net = _entrypoint("oct_resnet20")(pretrained=True, pretrained_cfg={"tag": "a500_t"})
    _same(net, registry["oct_resnet20.a500_t"], X)


def test_torchvision_weights_through_torchvisions_cache(tmp_path, monkeypatch):
    """pretrained="torchvision" goes through torchvision's weight API; a file already in torch.hub's cache (put
    there by the test, as a download would) is used, and the network gives torchvision's outputs."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    target = tmp_path / "torch" / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True)
    torch.save(tv.state_dict(), target)
    net = octzoo.create_model("resnet18", pretrained="torchvision").eval()
    assert net.pretrained_cfg["tag"] == "torchvision"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(set_norm_folding(net, False)(x), tv(x), rtol=0, atol=0)
    ten = octzoo.create_model("resnet18", pretrained="torchvision", num_classes=10)
    assert ten.fc.out_features == 10


def test_torchvision_weights_offline_say_how_to_supply_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match=r"when offline, download that file elsewhere .*resnet18-"):
        octzoo.create_model("resnet18", pretrained="torchvision")
