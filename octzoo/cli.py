"""The ``octzoo`` command: one dispatcher for Lightning's commands and octzoo's own tools.

``fit``, ``validate``, ``test`` and ``predict`` belong to LightningCLI and are handed over untouched to
``octzoo.cli_lightning.main(argv)`` when that module exists. octzoo's own commands are argparse subparsers;
each is a ``_add_<command>`` function that builds its parser and sets ``func``, so a new command is one new
function plus one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["main", "build_parser", "LIGHTNING_COMMANDS"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``octzoo <command> ...``; returns the exit status (argparse errors raise ``SystemExit(2)``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        return _run_lightning(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is None:  # plain `octzoo`
        parser.print_help()
        return 0
    return args.func(args, args.parser) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octzoo",
        description="Octave Convolution (arXiv 1904.05049) model zoo.",
        epilog="Run `octzoo <command> --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.set_defaults(func=None, parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    for name in LIGHTNING_COMMANDS:
        # Listed for --help only: main() hands these to LightningCLI before argparse sees them.
        commands.add_parser(name, help=f"LightningCLI `{name}` (training glue)", add_help=False)
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("octzoo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _run_lightning(argv: list[str]) -> int:
    try:
        from octzoo.cli_lightning import main as lightning_main  # imported lazily: Lightning is slow to import
    except ModuleNotFoundError as err:
        if err.name != "octzoo.cli_lightning":
            raise
        print(
            f"octzoo {argv[0]}: training is not available yet in this version of octzoo "
            f"({', '.join(LIGHTNING_COMMANDS)} arrive with the Lightning training glue). "
            "Available now: `octzoo models`; see `octzoo --help`.",
            file=sys.stderr,
        )
        return 2
    return lightning_main(argv) or 0


# ---------------------------------------------------------------------------------------------------------------------
# octzoo models

_MODELS_DESCRIPTION = """\
List registered models; with --profile, a markdown table of parameters and multiply-adds (MACs) per model,
and with --latency the median inference latency as well.

Names may be fnmatch patterns ('oct_resnet*'); without names every registered model is used.
The input is the model's own pretrained_cfg["input_size"] ((3, 224, 224) for ImageNet models, (3, 32, 32)
for CIFAR ones) unless --input-size is given. --alpha gives one row per alpha for each oct_ model; plain
models always have alpha 0.

Latency is measured in eval mode under torch.inference_mode on random input, interleaved across the rows:
after --warmup rounds, each of --repeats rounds runs every model once (the order rotating between rounds),
so drift in machine load hits all rows alike; the median per row is reported. The ratio columns divide by
the plain twin of each row in the same table (oct_resnet50 -> resnet50, or the same model at alpha 0);
rows whose twin is not in the table show "-"."""

_MODELS_EPILOG = """\
examples:
  octzoo models                                 list every registered model
  octzoo models 'oct_*'                         list the octave models
  octzoo models resnet50 oct_resnet50 --profile --latency
  octzoo models resnet50 oct_resnet50 --alpha 0.125 0.25 0.5 0.75 --latency --threads 1"""


def _add_models(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "models",
        help="list models; profile their params, MACs and latency",
        description=_MODELS_DESCRIPTION,
        epilog=_MODELS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME_OR_PATTERN", help="model names or fnmatch patterns")
    p.add_argument("--profile", action="store_true", help="print a table of params and MACs")
    p.add_argument("--latency", action="store_true", help="add median latency in ms (implies --profile)")
    p.add_argument(
        "--alpha", type=float, nargs="+", metavar="A", help="alphas for oct_ models, one row each (default: their own)"
    )
    p.add_argument("--input-size", type=int, metavar="H", help="square input side (default: the model's own)")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=1, metavar="B", help="latency batch size (default: 1)")
    p.add_argument("--repeats", type=int, default=20, metavar="R", help="timed rounds (default: 20)")
    p.add_argument("--warmup", type=int, default=2, metavar="W", help="untimed rounds first (default: 2)")
    p.set_defaults(func=_cmd_models, parser=p)


def _cmd_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import octzoo

    table = args.profile or args.latency
    table_only = {"--alpha": args.alpha, "--input-size": args.input_size, "--threads": args.threads}
    if not table and any(v is not None for v in table_only.values()):
        given = ", ".join(k for k, v in table_only.items() if v is not None)
        parser.error(f"{given}: only used with the table; add --profile or --latency")
    for flag, value, low in [
        ("--input-size", args.input_size, 1),
        ("--threads", args.threads, 1),
        ("--batch-size", args.batch_size, 1),
        ("--repeats", args.repeats, 1),
        ("--warmup", args.warmup, 0),
    ]:
        if value is not None and value < low:
            parser.error(f"{flag} must be at least {low}, got {value}")

    names = _resolve_names(octzoo.list_models, args.names, parser)
    if not table:
        print("\n".join(names))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = [_build_row(octzoo, name, alpha, args.input_size) for name in names for alpha in _alphas(name, args.alpha)]
    if args.latency:
        _measure_latency(rows, args.batch_size, args.repeats, args.warmup)
    print(_format_table(rows, args.latency))
    if args.latency:
        print(
            f"\nlatency: median of {args.repeats} interleaved runs at batch {args.batch_size}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU; ratios against the plain twin"
        )
    return 0


def _resolve_names(list_models, patterns: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Registered names matching ``patterns`` in the order given, each once; every pattern must match."""
    if not patterns:
        return list(list_models())
    names: list[str] = []
    for pattern in patterns:
        found = list_models(pattern)
        if not found:
            parser.error(f"no registered model matches {pattern!r}; `octzoo models` lists them all")
        names += [n for n in found if n not in names]
    return names


def _alphas(name: str, alphas: list[float] | None) -> list[float | None]:
    """One entry per row: the requested alphas for octave models, the model's default (None) otherwise."""
    return list(alphas) if alphas and name.startswith("oct_") else [None]


@dataclass
class _Row:
    name: str
    model: nn.Module
    alpha: float
    input_size: tuple[int, int, int]
    params: int
    macs: int
    latency_ms: float | None = None


def _build_row(octzoo, name: str, alpha: float | None, side: int | None) -> _Row:
    model = octzoo.create_model(name) if alpha is None else octzoo.create_model(name, alpha=alpha)
    model.eval()
    input_size = tuple(model.pretrained_cfg["input_size"])
    if side is not None:
        input_size = (input_size[0], side, side)
    prof = octzoo.profile(model, input_size=input_size)
    return _Row(name, model, float(getattr(model, "alpha", 0.0)), input_size, int(prof.params), int(prof.macs))


def _measure_latency(rows: list[_Row], batch_size: int, repeats: int, warmup: int) -> None:
    """Median forward time per row, interleaved: every round runs each model once, the order rotating."""
    from octzoo.bench.measure import interleaved_medians

    inputs = [torch.randn(batch_size, *row.input_size) for row in rows]
    with torch.inference_mode():
        fns = [lambda m=row.model, x=x: m(x) for row, x in zip(rows, inputs, strict=True)]
        medians = interleaved_medians(fns, repeats, warmup, time.perf_counter)
    for row, seconds in zip(rows, medians, strict=True):
        row.latency_ms = 1e3 * seconds


def _twin(row: _Row, rows: list[_Row]) -> _Row | None:
    """The plain row of the same family and input: ``oct_x`` -> ``x``, or the same model at alpha 0."""
    plain = row.name.removeprefix("oct_")
    return next(
        (r for r in rows if r.alpha == 0 and r.name in (plain, row.name) and r.input_size == row.input_size), None
    )


def _format_table(rows: list[_Row], latency: bool) -> str:
    header = ["model", "alpha", "input", "params", "MACs", "MACs ratio"]
    if latency:
        header += ["latency (ms)", "latency ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        base = _twin(row, rows)
        cells = [
            row.name,
            f"{row.alpha:g}",
            "x".join(map(str, row.input_size[1:])),
            f"{row.params / 1e6:.2f} M",
            _format_macs(row.macs),
            f"{row.macs / base.macs:.3f}" if base else "-",
        ]
        if latency:
            cells += [f"{row.latency_ms:.2f}", f"{row.latency_ms / base.latency_ms:.2f}" if base else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format_macs(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


# ---------------------------------------------------------------------------------------------------------------------
# octzoo bench


def _add_bench(commands: argparse._SubParsersAction) -> None:
    from octzoo.bench.command import add_parser  # the parser and the run live with the benchmark

    add_parser(commands)


# ---------------------------------------------------------------------------------------------------------------------
# octzoo export

_EXPORT_DESCRIPTION = """\
Write a network as safetensors weights, ONNX or TorchScript. SOURCE is a published weight ('arch.tag'), a
weights file (octzoo's safetensors name their architecture; other files need --model) or a Lightning
checkpoint of an octzoo training run (.ckpt). ONNX and TorchScript files are checked against eager PyTorch
on a fresh batch (ONNX through onnxruntime when it is installed) and the largest relative difference is printed.

With --format safetensors and --tag, a checkpoint becomes a publishable weight: next to the file, OUT.json
holds its registry entry (octzoo/weights/registry.json format), filled from the run's summary.json, with
top-1/top-5 measured in float32 on the test set of --data-dir (or taken from the run's test metrics)."""

_EXPORT_EPILOG = """\
examples:
  octzoo export runs/.../checkpoints/last.ckpt --format onnx --out oct_resnet20.onnx
  octzoo export oct_resnet20.a250_c10 --format torchscript --out oct_resnet20.pt
  octzoo export runs/.../checkpoints/last.ckpt --format safetensors --out oct_resnet20_a250_c10.safetensors \\
      --tag a250_c10 --data-dir path/to/cifar10 --dataset "CIFAR-10 (JPEG q75 copy)"
"""


def _add_export(commands: argparse._SubParsersAction) -> None:
    from octzoo.export import FORMATS

    p = commands.add_parser(
        "export",
        help="write a tag, weights file or checkpoint as safetensors, ONNX or TorchScript",
        description=_EXPORT_DESCRIPTION,
        epilog=_EXPORT_EPILOG,
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
    p.set_defaults(func=_cmd_export, parser=p)


def _cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    from octzoo.export import export_onnx, export_torchscript, load_source, save_safetensors

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
    import json
    from pathlib import Path

    from octzoo.export import weight_entry
    from octzoo.training import read_summary

    summary = read_summary(Path(info["checkpoint"]).resolve().parent.parent) or {}
    data = summary.get("data") or {}
    if args.data_dir:
        import octzoo.data
        from octzoo.training.evaluate import evaluate

        datamodule = getattr(octzoo.data, data.get("class") or "CIFAR10DataModule")(data_dir=args.data_dir)
        metrics = evaluate(net, datamodule)
    elif (summary.get("metrics") or {}).get("test"):
        test = summary["metrics"]["test"]
        metrics = {"top1": 100 * test["test/acc1"], "top5": 100 * test["test/acc5"], "split": "test", "images": 0}
    else:
        raise SystemExit("octzoo export: no test metrics in the run's summary.json; pass --data-dir to measure them")
    if net.num_classes != 10 or data.get("class", "CIFAR10DataModule") != "CIFAR10DataModule":
        raise SystemExit("octzoo export: --tag knows the class names of CIFAR-10 runs only")
    from octzoo.data import CIFAR10_CLASSES

    dataset = args.dataset or data.get("name") or "CIFAR-10"
    entry = weight_entry(net, info, out, args.tag, summary, metrics, dataset, list(CIFAR10_CLASSES), args.commit)
    path = out.with_name(out.name + ".json")
    path.write_text(json.dumps(entry, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# octzoo compare and octzoo sweep


def _add_compare(commands: argparse._SubParsersAction) -> None:
    from octzoo.compare import add_parser  # the parser and the run live with the comparison

    add_parser(commands)


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    from octzoo.sweep import add_parser

    add_parser(commands)


# Each entry adds one subparser; a new command slots in here.
COMMANDS = [_add_models, _add_bench, _add_export, _add_compare, _add_sweep]
