"""The ``octzoo`` command, run in-process through ``octzoo.cli.main``."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import octzoo
from octzoo.cli import LIGHTNING_COMMANDS, main


def run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def parse_table(out: str) -> list[dict[str, str]]:
    """Rows of the markdown table in ``out`` as dicts keyed by column name."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header, separator, *body = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    assert set("".join(separator)) == {"-"}
    return [dict(zip(header, row, strict=True)) for row in body]


def number(cell: str, unit: str = "") -> float:
    value, _, got = cell.partition(" ")
    assert got == unit, f"{cell!r}: expected unit {unit!r}"
    return float(value)


def test_models_lists_every_registered_name(capsys):
    names = run(capsys, "models").split()
    assert names == octzoo.list_models()
    assert {"resnet20", "oct_resnet20", "resnet50", "oct_resnet50"} <= set(names)


def test_models_pattern(capsys):
    names = run(capsys, "models", "oct_resnet2*").split()
    assert "oct_resnet20" in names
    assert all(n.startswith("oct_resnet2") for n in names)
    assert names == octzoo.list_models("oct_resnet2*")


def test_models_keeps_order_and_drops_duplicates(capsys):
    assert run(capsys, "models", "resnet20", "oct_resnet20", "resnet20").split() == ["resnet20", "oct_resnet20"]


def test_models_profile_latency(capsys):
    out = run(capsys, "models", "resnet20", "oct_resnet20", "--profile", "--latency", "--repeats", "2")
    rows = parse_table(out)
    assert list(rows[0]) == [
        "model",
        "alpha",
        "input",
        "params",
        "MACs",
        "MACs ratio",
        "latency (ms)",
        "latency ratio",
    ]
    assert [r["model"] for r in rows] == ["resnet20", "oct_resnet20"]
    plain, octave = rows
    assert float(plain["alpha"]) == 0 and 0 < float(octave["alpha"]) < 1
    assert plain["input"] == octave["input"] == "32x32"
    for row, name in zip(rows, ["resnet20", "oct_resnet20"], strict=True):
        expected = octzoo.profile(octzoo.create_model(name), input_size=(3, 32, 32))
        assert number(row["params"], "M") == pytest.approx(expected.params / 1e6, abs=0.005)
        assert number(row["MACs"], "M") == pytest.approx(expected.macs / 1e6, abs=0.05)
        assert number(row["latency (ms)"]) > 0
    assert float(plain["MACs ratio"]) == 1 and float(plain["latency ratio"]) == 1
    assert 0 < float(octave["MACs ratio"]) < 1  # the point of octave convolution
    assert float(octave["latency ratio"]) > 0
    assert "median of 2 interleaved runs at batch 1" in out and "ratios against the plain twin" in out


def test_models_alpha_gives_one_row_per_alpha(capsys):
    rows = parse_table(run(capsys, "models", "resnet20", "oct_resnet20", "--profile", "--alpha", "0.125", "0.5"))
    assert [(r["model"], float(r["alpha"])) for r in rows] == [
        ("resnet20", 0),
        ("oct_resnet20", 0.125),
        ("oct_resnet20", 0.5),
    ]
    assert "latency (ms)" not in rows[0]
    macs = [number(r["MACs"], "M") for r in rows]
    assert macs[0] > macs[1] > macs[2]
    assert len({r["params"] for r in rows}) == 1  # octave convolution keeps the parameter count


def test_models_ratios_are_against_each_rows_plain_twin(capsys):
    rows = parse_table(
        run(
            capsys,
            "models",
            "resnet20",
            "oct_resnet20",
            "resnet50",
            "oct_resnet50",
            "oct_resnet56",
            "--profile",
            "--alpha",
            "0.5",
        )
    )
    ratio = {r["model"]: r["MACs ratio"] for r in rows}
    assert ratio["resnet20"] == ratio["resnet50"] == "1.000"
    assert ratio["oct_resnet20"] == "0.476" and ratio["oct_resnet50"] == "0.579"  # 19.3 / 40.6 M, 2.367 / 4.089 G
    assert ratio["oct_resnet56"] == "-"  # its twin is not in the table


def test_models_input_size(capsys):
    small, large = (
        parse_table(run(capsys, "models", "resnet20", "--profile", *size))[0] for size in ([], ["--input-size", "64"])
    )
    assert (small["input"], large["input"]) == ("32x32", "64x64")
    assert number(large["MACs"], "M") == pytest.approx(4 * number(small["MACs"], "M"), rel=0.01)


def test_models_imagenet_default_input(capsys):
    row = parse_table(run(capsys, "models", "resnet50", "--profile"))[0]
    assert row["input"] == "224x224"
    assert row["params"] == "25.56 M" and row["MACs"] == "4.089 G"  # torchvision's ResNet-50


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "no_such_model*"], "no registered model matches 'no_such_model*'"),
        (["models", "resnet20", "--alpha", "0.5"], "add --profile or --latency"),
        (["models", "resnet20", "--profile", "--repeats", "0"], "--repeats must be at least 1"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["models"]])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(['octzoo', *command])}")
    if command == ["models"]:
        for text in ("--profile", "--latency", "--alpha", "--input-size", "--threads", "pretrained_cfg", "interleaved"):
            assert text in out
    else:
        for name in (*LIGHTNING_COMMANDS, "models"):
            assert name in out


def test_no_command_prints_help(capsys):
    assert "usage: octzoo" in run(capsys)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("octzoo ")


def test_lightning_commands_are_handed_over_untouched(monkeypatch):
    seen = []
    glue = types.ModuleType("octzoo.cli_lightning")
    glue.main = seen.append
    monkeypatch.setitem(sys.modules, "octzoo.cli_lightning", glue)
    assert main(["fit", "--config", "x.yaml", "--help"]) == 0
    assert seen == [["fit", "--config", "x.yaml", "--help"]]


def test_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "octzoo", "models", "resnet20"], capture_output=True, text=True, check=True, timeout=300
    )
    assert result.stdout.split() == ["resnet20"]


# -- octzoo export ------------------------------------------------------------------------------------------------


def _training_run(tmp_path, name="oct_resnet20", alpha=0.5):
    """A run folder as `octzoo fit` leaves it: checkpoints/last.ckpt (an ImageClassifier's) and summary.json."""
    import json

    import torch

    torch.manual_seed(0)
    net = octzoo.create_model(name, alpha=alpha, num_classes=10)
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    hp = {"model_name": name, "model_kwargs": {"alpha": alpha}, "num_classes": 10, "lr": 0.1}
    torch.save({"epoch": 1, "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": hp}, ckpt)  # fmt: skip
    summary = {
        "model": name,
        "alpha": alpha,
        "command": ["octzoo", "fit", "--config", "configs/cifar10/oct_resnet20.yaml", "--trainer.max_epochs", "2"],
        "config": {"trainer": {"precision": "bf16-mixed"}},
        "data": {"class": "CIFAR10DataModule", "name": "cifar10", "num_classes": 10},
        "epochs": 2,
        "wall_time_s": 31.0,
        "seed": 0,
        "commit": "1234567",
        "metrics": {"test": {"test/acc1": 0.5, "test/acc5": 0.9}},
    }
    (ckpt.parent.parent / "summary.json").write_text(json.dumps(summary))
    return net.eval(), ckpt


def test_export_checkpoint_to_a_publishable_weight(capsys, tmp_path, cifar10_pickles):
    import json

    import torch

    net, ckpt = _training_run(tmp_path)
    out = tmp_path / "pub" / "oct_resnet20_a500_x.safetensors"
    argv = ["export", str(ckpt), "--format", "safetensors", "--out", str(out), "--tag", "a500_x"]
    assert "registry.json" in run(capsys, *argv, "--data-dir", str(cifar10_pickles), "--dataset", "tiny")
    entry = json.loads(out.with_name(out.name + ".json").read_text())
    assert entry["name"] == "oct_resnet20.a500_x" and entry["model_kwargs"] == {"alpha": 0.5}
    assert entry["params"] == sum(p.numel() for p in net.parameters())
    assert entry["training"]["config"] == ["configs/cifar10/oct_resnet20.yaml"]
    assert entry["training"]["overrides"] == ["--trainer.max_epochs", "2"]
    assert entry["training"]["precision"] == "bf16-mixed" and entry["training"]["commit"] == "1234567"
    from octzoo.data import CIFAR10DataModule
    from octzoo.training.evaluate import evaluate

    measured = evaluate(net, CIFAR10DataModule(data_dir=str(cifar10_pickles)))
    assert entry["metrics"] == measured and measured["images"] > 0
    # the file alone rebuilds the network: its metadata names the architecture and alpha
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(octzoo.create_model("oct_resnet20", alpha=0.5, pretrained=out).eval()(x), net(x))
    run(capsys, "export", str(ckpt), "--format", "safetensors", "--out", str(out), "--tag", "a500_x")
    entry = json.loads(out.with_name(out.name + ".json").read_text())
    assert entry["metrics"]["top1"] == 50.0 and entry["dataset"] == "cifar10"  # from the run's own test metrics


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_for_deployment_reports_parity(capsys, tmp_path, fmt):
    net, ckpt = _training_run(tmp_path)
    weights = tmp_path / "w.safetensors"
    run(capsys, "export", str(ckpt), "--format", "safetensors", "--out", str(weights))
    out = run(capsys, "export", str(weights), "--format", fmt, "--out", str(tmp_path / f"m.{fmt}"))
    error = float(out.rsplit("max relative difference ", 1)[1])
    assert error < 1e-4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope.safetensors", "--format", "onnx"], "no such file"),
        (["resnet20", "--format", "onnx"], "neither a file nor a published weight"),
        (["resnet20.zz", "--format", "onnx"], "unknown pretrained weight"),
    ],
)
def test_export_bad_sources_are_named(capsys, tmp_path, argv, message):
    assert main(["export", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_export_plain_weights_need_the_model_name(capsys, tmp_path):
    import torch

    path = tmp_path / "w.pth"
    torch.save(octzoo.create_model("resnet20").state_dict(), path)
    assert main(["export", str(path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 2
    assert "pass the model name (--model)" in capsys.readouterr().err
    run(capsys, "export", str(path), "--model", "resnet20", "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    with pytest.raises(SystemExit):
        main(["export", str(path), "--format", "onnx", "--out", str(tmp_path / "m"), "--tag", "x"])
