"""``octzoo export``: a published tag, a weights file or a training checkpoint, as safetensors, ONNX or TorchScript.

- ``load_source`` builds the network a source describes: a tag (``oct_resnet20.a250_c10``), an octzoo
  safetensors file (its metadata names the architecture), any other weights file with ``model=`` given, or a
  Lightning checkpoint of an ``octzoo.ImageClassifier`` (its hyper-parameters name the network; the file is
  read with ``weights_only=True``).
- ``save_safetensors`` writes the weights with the architecture in the file's metadata, so the file alone is
  enough to rebuild the model; ``weight_entry`` fills a registry entry for it from the run's ``summary.json``.
- ``export_onnx`` / ``export_torchscript`` write the model for deployment and check the written file against
  eager PyTorch on a fresh input; the largest relative difference is returned. ONNX export traces the model's
  ``onnx_form()`` where it has one (``onnx_form``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .models import (
    PretrainedWeight,
    create_model,
    load_weights,
    looks_like_a_file,
    pretrained_weight,
    read_state_dict,
    sha256_of,
    split_tag,
)

__all__ = [
    "FORMATS",
    "add_parser",
    "main",
    "export_onnx",
    "export_torchscript",
    "load_source",
    "onnx_form",
    "save_safetensors",
    "weight_entry",
]

FORMATS = ("safetensors", "onnx", "torchscript")
METADATA_KEY = "octzoo"  # safetensors metadata: {"octzoo": json {"architecture", "model_kwargs", "num_classes"}}


def _checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the message says what torch refused
        raise ValueError(f"{path}: not a readable training checkpoint ({e})") from e
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "model_name" not in hp or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(
            f"{path}: not a checkpoint of an octzoo.ImageClassifier (no model_name in its hyper-parameters)"
        )
    return ckpt


def load_source(source: str | os.PathLike, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The network ``source`` describes, in eval mode, and what is known of it: ``architecture``,
    ``model_kwargs``, ``num_classes`` and, for checkpoints, ``checkpoint`` and ``epoch``."""
    path = Path(source)
    if not path.is_file():
        if looks_like_a_file(source):
            raise FileNotFoundError(f"{source}: no such file")
        if not split_tag(str(source))[1]:
            raise ValueError(f"{source!r} is neither a file nor a published weight 'architecture.tag'")
        weight = pretrained_weight(str(source))
        net = create_model(weight.name, pretrained=True)
        return net.eval(), {k: getattr(weight, k) for k in ("architecture", "model_kwargs", "num_classes")}
    if path.suffix == ".ckpt":
        ckpt = _checkpoint(path)
        hp = ckpt["hyper_parameters"]
        info = {
            "architecture": hp["model_name"],
            "model_kwargs": dict(hp.get("model_kwargs") or {}),
            "num_classes": hp.get("num_classes"),
            "checkpoint": str(path),
            "epoch": int(ckpt.get("epoch", 0)) + 1,
        }
        net = create_model(info["architecture"], num_classes=info["num_classes"], **info["model_kwargs"])
        load_weights(net, path)
        return net.eval(), info
    meta = _safetensors_metadata(path) if path.suffix == ".safetensors" else None
    if meta is None and model is None:
        raise ValueError(f"{path}: the file does not say which architecture it holds; pass the model name (--model)")
    info = meta or {"architecture": model, "model_kwargs": {}, "num_classes": None}
    if model is not None and split_tag(model)[0] != info["architecture"]:
        raise ValueError(f"{path} holds {info['architecture']}, not {model}")
    state = read_state_dict(path)
    num_classes = info["num_classes"]
    net = create_model(info["architecture"], num_classes=num_classes, **info["model_kwargs"])
    load_weights(net, state)
    return net.eval(), info


def _safetensors_metadata(path: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); the file may be truncated") from e
    return None if raw is None else json.loads(raw)


def save_safetensors(net: nn.Module, path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write ``net``'s state dict (CPU, contiguous) with the architecture in the metadata; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: info[k] for k in ("architecture", "model_kwargs", "num_classes")}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, tmp, metadata={"format": "pt", METADATA_KEY: json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)
    return path


def _example(net: nn.Module, batch: int, input_size: tuple[int, ...] | None, seed: int) -> Tensor:
    size = tuple(input_size or net.pretrained_cfg["input_size"])
    return torch.randn((batch, *size), generator=torch.Generator().manual_seed(seed))


def _rel_error(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def export_torchscript(net: nn.Module, path: str | os.PathLike, input_size: tuple[int, ...] | None = None) -> float:
    """Trace ``net`` to TorchScript, save it, reload it and compare on another batch size; returns the error."""
    path = Path(path)
    with torch.no_grad():
        traced = torch.jit.trace(net, _example(net, 2, input_size, 0))
        traced.save(str(path))
        x = _example(net, 3, input_size, 1)
        return _rel_error(torch.jit.load(str(path))(x), net(x))


def onnx_form(net: nn.Module) -> nn.Module:
    """The network :func:`export_onnx` traces: the model's own ``onnx_form()`` where it has one (the same function
    written in the ops ONNX Runtime optimises best, as Oct-MobileNetV2's octave blocks), else ``net``."""
    form = getattr(net, "onnx_form", None)
    return net if form is None else form()


def _name_batch_dims(path: Path) -> None:
    """Name the first dimension of every 4-D map of the exported graph ``batch``, as the input's is.

    Shape inference loses the name through Resize, so ONNX Runtime cannot prove that the two inputs of an octave
    layer's upsample-add have one shape, and runs the sums as separate reshapes and adds instead of fusing them
    into the convolutions (Oct-MobileNetV2 1.0: 36 Reshape and 12 Add nodes left, about 3 % of its time). In
    these networks every map keeps the input's batch. Without the onnx package the file stays as written.
    """
    try:
        import onnx
    except ImportError:
        return
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    for value in (*model.graph.value_info, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[0].dim_param = "batch"
    onnx.save(model, str(path))


def export_onnx(net: nn.Module, path: str | os.PathLike, input_size: tuple[int, ...] | None = None) -> float | None:
    """Export to ONNX (the installed torch's default opset, dynamic batch; the graph of :func:`onnx_form`), and,
    when onnxruntime is installed, compare its outputs with eager ``net`` on another batch size; returns the error
    (None without onnxruntime)."""
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(
            onnx_form(net),
            (_example(net, 2, input_size, 0),),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
        _name_batch_dims(path)
        try:
            import onnxruntime
        except ImportError:
            return None
        x = _example(net, 3, input_size, 1)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(None, {"images": x.numpy()})[0]
        return _rel_error(torch.from_numpy(out), net(x))


def _without_resume(command: list[str]) -> list[str]:
    """The training command without ``--ckpt_path``: resuming an interrupted run changes nothing it computes,
    and a published command must reproduce the weight from scratch."""
    out, skip = [], False
    for arg in command:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            out.append(arg)
    return out


def weight_entry(
    net: nn.Module,
    info: dict[str, Any],
    file: Path,
    tag: str,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    dataset: str,
    class_names: list[str],
    commit: str | None = None,
) -> dict[str, Any]:
    """A registry entry for ``file`` (validated), from the run's ``summary.json`` and measured ``metrics``
    (``top1``, ``top5`` in percent, ``split``, ``images``)."""
    from .profile import profile

    cfg = net.pretrained_cfg
    command = _without_resume(summary.get("command") or [])
    configs = [command[i + 1] for i, a in enumerate(command[:-1]) if a == "--config"]
    overrides = [a for i, a in enumerate(command) if i >= 2 and a != "--config" and command[i - 1] != "--config"]
    trainer = (summary.get("config") or {}).get("trainer") or {}
    prof = profile(net, tuple(cfg["input_size"]))
    entry = {
        "name": f"{info['architecture']}.{tag}",
        "architecture": info["architecture"],
        "model_kwargs": info["model_kwargs"],
        "num_classes": net.num_classes,
        "in_chans": int(cfg["input_size"][0]),
        "params": prof.params,
        "macs": prof.macs,
        "dataset": dataset,
        "metrics": metrics,
        "preprocessing": {
            "input_size": list(cfg["input_size"]),
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
            "crop_pct": float(cfg["crop_pct"]),
            "interpolation": cfg["interpolation"],
        },
        "class_names": list(class_names),
        "training": {
            "config": configs,
            "overrides": overrides,
            "command": shlex.join(command),
            "commit": commit or summary.get("commit") or "unknown",
            "epochs": int(summary.get("epochs") or info.get("epoch") or 0),
            "wall_time_s": float(summary.get("wall_time_s") or 0.0),
            "precision": str(trainer.get("precision", "unknown")),
            "seed": int(summary.get("seed") or 0),
        },
        "file": {"name": file.name, "size": file.stat().st_size, "sha256": sha256_of(file), "url": None},
    }
    PretrainedWeight.from_dict(entry)
    return entry


# ---------------------------------------------------------------------------------------------------------------------
# the command


DESCRIPTION = """\
Write a network as safetensors weights, ONNX or TorchScript. SOURCE is a published weight ('arch.tag'), a
weights file (octzoo's safetensors name their architecture; other files need --model) or a Lightning
checkpoint of an octzoo training run (.ckpt). ONNX and TorchScript files are checked against eager PyTorch
on a fresh batch (ONNX through onnxruntime when it is installed) and the largest relative difference is printed.

With --format safetensors and --tag, a checkpoint becomes a publishable weight: next to the file, OUT.json
holds its registry entry (octzoo/weights/registry.json format), filled from the run's summary.json, with
top-1/top-5 measured in float32 on the test set of --data-dir (or taken from the run's test metrics)."""

EPILOG = """\
examples:
  octzoo export runs/.../checkpoints/last.ckpt --format onnx --out oct_resnet20.onnx
  octzoo export oct_resnet20.a250_c10 --format torchscript --out oct_resnet20.pt
  octzoo export runs/.../checkpoints/last.ckpt --format safetensors --out oct_resnet20_a250_c10.safetensors \\
      --tag a250_c10 --data-dir path/to/cifar10 --dataset "CIFAR-10 (JPEG q75 copy)"
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="write a tag, weights file or checkpoint as safetensors, ONNX or TorchScript",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="arch.tag, a weights file or a training checkpoint (.ckpt)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, metavar="PATH", help="the file to write")
    p.add_argument("--model", metavar="NAME", help="architecture of a weights file that does not name its own")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), help="example input (default: model's)")
    p.add_argument("--tag", help="safetensors from a checkpoint: also write OUT.json, the registry entry arch.TAG")
    p.add_argument("--data-dir", metavar="DIR", help="with --tag: measure top-1/top-5 on this data's test set")
    p.add_argument("--dataset", metavar="NAME", help="with --tag: the data set's exact name (default: the run's)")
    p.add_argument("--commit", metavar="SHA", help="with --tag: the commit that trained it (default: the run's)")
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.tag and (args.format != "safetensors" or not str(args.source).endswith(".ckpt")):
        parser.error(
            "--tag makes a published weight of a training checkpoint (.ckpt): use it with --format safetensors"
        )
    if not args.tag and (args.data_dir or args.dataset or args.commit):
        parser.error("--data-dir, --dataset and --commit describe a published weight: add --tag")
    try:
        net, info = load_source(args.source, args.model)
    except (ValueError, FileNotFoundError) as e:
        print(f"octzoo export: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = tuple(args.input_size) if args.input_size else None
    if args.format == "safetensors":
        save_safetensors(net, out, info)
        print(f"wrote {out} ({out.stat().st_size:,} bytes): {info['architecture']} {info['model_kwargs'] or ''}")
        if args.tag:
            entry_file = _write_entry(args, net, info, out)
            print(f"wrote {entry_file}: add it to octzoo/weights/registry.json and the file to octzoo/weights/")
        return 0
    export = export_onnx if args.format == "onnx" else export_torchscript
    error = export(net, out, size)
    checked = "not checked (install onnxruntime)" if error is None else f"max relative difference {error:.2e}"
    print(f"wrote {out} ({out.stat().st_size:,} bytes), {args.format} vs eager PyTorch: {checked}")
    return 0


def _write_entry(args: argparse.Namespace, net: nn.Module, info: dict, out) -> object:
    from .training import Summary, read_summary

    run_dir = Path(info["checkpoint"]).resolve().parent.parent
    summary = read_summary(run_dir) or Summary(run_dir, {})  # a run without one: --data-dir measures the metrics
    data = summary.data
    if args.data_dir:
        from . import data as octzoo_data
        from .training.evaluate import evaluate

        datamodule = getattr(octzoo_data, data.get("class") or "CIFAR10DataModule")(data_dir=args.data_dir)
        metrics = evaluate(net, datamodule)
    elif summary.test_metrics:
        test = summary.test_metrics
        metrics = {"top1": 100 * test["test/acc1"], "top5": 100 * test["test/acc5"], "split": "test", "images": 0}
    else:
        raise SystemExit("octzoo export: no test metrics in the run's summary.json; pass --data-dir to measure them")
    if net.num_classes != 10 or data.get("class", "CIFAR10DataModule") != "CIFAR10DataModule":
        raise SystemExit("octzoo export: --tag knows the class names of CIFAR-10 runs only")
    from .data import CIFAR10_CLASSES

    dataset = args.dataset or data.get("name") or "CIFAR-10"
    entry = weight_entry(net, info, out, args.tag, summary.raw, metrics, dataset, list(CIFAR10_CLASSES), args.commit)
    path = out.with_name(out.name + ".json")
    path.write_text(json.dumps(entry, indent=2) + "\n")
    return path
