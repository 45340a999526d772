"""Every published weight against its registry entry and its card, and (with the real data) its accuracy.

The registry lives in octzoo/weights/registry.json; the card in docs/pretrained.md. Nothing is downloaded:
published CIFAR-10 weights ship in the package.
"""

import re

import pytest
from conftest import REPO_ROOT

import octzoo
from octzoo.models import _pretrained, model_entry

WEIGHTS = octzoo.list_pretrained()
CARD = REPO_ROOT / "docs" / "pretrained.md"


def test_the_registry_reads_and_every_file_is_in_the_package():
    registry = _pretrained.read_registry(_pretrained.REGISTRY_FILE)
    assert sorted(registry) == WEIGHTS
    shipped = {p.name for p in _pretrained.WEIGHTS_DIR.glob("*.safetensors")}
    assert shipped == {w.file["name"] for w in registry.values()}, "every shipped file has an entry, and back"


@pytest.mark.parametrize("name", WEIGHTS)
def test_entry_matches_its_model_config_and_file(name):
    w = _pretrained.pretrained_weight(name)
    assert w.file["size"] < 5_000_000, "only weights under 5 MB ship in the package"
    _pretrained.verify_file(_pretrained.WEIGHTS_DIR / w.file["name"], w)
    net = octzoo.create_model(name, pretrained=True)
    profile = octzoo.profile(net, tuple(w.preprocessing["input_size"]))
    assert (profile.params, profile.macs) == (w.params, w.macs)
    assert net.num_classes == w.num_classes and getattr(net, "alpha", 0.0) == w.alpha
    for config in w.training["config"]:
        assert (REPO_ROOT / config).is_file(), f"{name}: training config {config} is not in the repository"
    assert w.training["command"].startswith("octzoo fit")


@pytest.mark.parametrize("arch", sorted({_pretrained.pretrained_weight(n).architecture for n in WEIGHTS}))
def test_pretrained_true_is_the_best_weight_at_the_default_alpha(arch):
    alpha = model_entry(arch).default_alpha or 0.0
    same = [w for w in map(_pretrained.pretrained_weight, WEIGHTS) if w.architecture == arch and w.alpha == alpha]
    if not same:
        pytest.skip(f"{arch} has no published weight at its default alpha {alpha}")
    best = max(same, key=lambda w: w.metrics["top1"])
    assert octzoo.create_model(arch, pretrained=True).pretrained_cfg["tag"] == best.tag, (
        f"list {best.name} first among {arch}'s weights at alpha {alpha} in octzoo/weights/registry.json"
    )


@pytest.mark.parametrize("name", WEIGHTS)
def test_card_lists_the_entry_with_its_numbers(name):
    w = _pretrained.pretrained_weight(name)
    row = next((line for line in CARD.read_text().splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"{CARD.name} has no row for {name}"
    assert re.search(rf"\b{w.metrics['top1']:.2f}\b", row) and re.search(rf"\b{w.metrics['top5']:.2f}\b", row)


@pytest.mark.real_data
@pytest.mark.parametrize("name", WEIGHTS)
def test_accuracy_on_the_real_test_set_is_the_cards(name, real_data):
    from octzoo.data import CIFAR10DataModule
    from octzoo.training.evaluate import evaluate

    w = _pretrained.pretrained_weight(name)
    assert w.dataset == "CIFAR-10 (JPEG q75 copy)", "only the shared copy's weights can be checked here"
    net = octzoo.create_model(name, pretrained=True)
    data = CIFAR10DataModule(data_dir=str(real_data / "cifar10-jpeg.tar.gz"), batch_size=500)
    measured = evaluate(net, data)
    assert measured["images"] == w.metrics["images"] == 10_000
    assert abs(measured["top1"] - w.metrics["top1"]) <= 0.1, (measured, w.metrics)
    assert abs(measured["top5"] - w.metrics["top5"]) <= 0.1, (measured, w.metrics)
