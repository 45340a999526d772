"""``octzoo models``: the registered models listed, or profiled as a table of parameters, multiply-adds and
latency against their plain twins."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from ..models import create_model, list_models
from ..profile import profile
from .measure import interleaved_latency
from .report import table

__all__ = ["add_parser", "main"]

DESCRIPTION = """\
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

EPILOG = """\
examples:
  octzoo models                                 list every registered model
  octzoo models 'oct_*'                         list the octave models
  octzoo models resnet50 oct_resnet50 --profile --latency
  octzoo models resnet50 oct_resnet50 --alpha 0.125 0.25 0.5 0.75 --latency --threads 1"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "models",
        help="list models; profile their params, MACs and latency",
        description=DESCRIPTION,
        epilog=EPILOG,
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
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    as_table = args.profile or args.latency
    table_only = {"--alpha": args.alpha, "--input-size": args.input_size, "--threads": args.threads}
    if not as_table and any(v is not None for v in table_only.values()):
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

    names = _resolve_names(list_models, args.names, parser)
    if not as_table:
        print("\n".join(names))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = [_build_row(name, alpha, args.input_size) for name in names for alpha in _alphas(name, args.alpha)]
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


def _build_row(name: str, alpha: float | None, side: int | None) -> _Row:
    model = create_model(name) if alpha is None else create_model(name, alpha=alpha)
    model.eval()
    input_size = tuple(model.pretrained_cfg["input_size"])
    if side is not None:
        input_size = (input_size[0], side, side)
    prof = profile(model, input_size=input_size)
    return _Row(name, model, float(getattr(model, "alpha", 0.0)), input_size, int(prof.params), int(prof.macs))


def _measure_latency(rows: list[_Row], batch_size: int, repeats: int, warmup: int) -> None:
    """Median forward time per row, interleaved: every round runs each model once, the order rotating."""
    pairs = [(row.model, torch.randn(batch_size, *row.input_size)) for row in rows]
    for row, seconds in zip(rows, interleaved_latency(pairs, repeats, warmup), strict=True):
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
    lines = []
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
        lines.append(cells)
    return table(header, lines)


def _format_macs(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"
