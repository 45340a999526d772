"""``octzoo compare``: training runs side by side, averaged over seeds, as a table, CSV files and plots.

Runs come from run folders (the ``summary.json`` and ``metrics.csv`` every ``octzoo fit`` writes, see
``octzoo/training/summary.py``) or from a W&B project through ``wandb.Api``. What is compared:

- Finished runs are grouped by (data set, model, alpha, epoch budget ``trainer.max_epochs``, settings); the
  seeds of a group are its repeats, reported as mean +- sample standard deviation with the number of runs.
  The settings are the model's and data's training arguments (``model.lr``, ``model.pretrained``,
  ``data.augment``, ...; not paths, loader options or seeds; an argument at its default counts as unset, as in
  a record written before it existed) and the trainer's precision: runs of different data sets, budgets or
  settings never share a row, and a settings column names what sets each row apart from the others.
- Two finished runs of one group with the same seed are duplicates: the newest (``updated_at`` of the run
  folder, ``created_at`` on W&B) is kept and the others are listed as dropped. Unseeded runs are never
  duplicates of each other.
- Unfinished runs (running, interrupted, failed; on W&B also crashed, killed, ...) are listed on their own,
  never averaged.
- Top-1 and top-5 come from one source per row, named in the table: ``test`` uses the test metrics when every
  run of the row has them and the last validation epoch otherwise (never a mix); ``final`` the last
  validation epoch; ``best`` the best validation epoch (top-5 at that epoch). A finished run without the
  metric stays out of the mean and is named below the table.
- Training top-1 is that of the same epoch (the last, or the best validation epoch for ``best``): the running
  accuracy on the augmented training batches that ``octzoo fit`` logs, so the distance to the validation top-1
  shows how far a network fits its training set beyond what it generalises.

Files written to ``--out``: ``compare.csv`` (one line per table row), ``runs.csv`` (one line per run read, with its
role), ``top1_vs_macs.png`` (one line per model family through its alphas and one through its thinner plain
networks, a family of plain networks only as a plain line; error bars over seeds), ``curves.png`` (validation top-1,
training top-1 dotted, per epoch and training loss per step of every run in the table) and, with ``--throughput``,
``top1_vs_throughput.png``.

Costs measured on request, each network once, the rows interleaved: ``--latency`` the eager CPU latency at batch
1; ``--throughput`` training images/s as the runs trained (their batch, bfloat16 autocast where the run's
precision was bf16, channels_last where the model was), measured as ``octzoo bench`` measures training: SGD steps
with one intra-op thread, timed by the thread's CPU clock, so trainings running beside it do not change the
number the way they change a run's wall time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .aggregate import METRICS, aggregate
from .plots import plot_curves, plot_top1_vs_macs, plot_top1_vs_throughput, pyplot
from .records import read_local_runs
from .report import format_report, write_csvs
from .timing import measure_latency, measure_throughput
from .wandb_runs import read_wandb_runs_explained

__all__ = ["add_parser", "main"]


DESCRIPTION = __doc__.split("\n", 2)[2].replace("``", "")

EPILOG = """\
examples:
  octzoo compare runs/cifar10_60ep                      every run under the folder
  octzoo compare 'runs/cifar10_60ep/oct_resnet20_*' runs/cifar10_60ep/resnet20_a0 --metric best
  octzoo compare --wandb ENTITY/octzoo --group cifar10_60ep --out results/alpha --latency
  octzoo compare 'docs/results/cifar10_60ep/resnet2*' 'docs/results/cifar10_60ep/oct_resnet20_*' --throughput
                                                        top-1 against multiply-adds and training throughput"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare",
        help="compare training runs (run folders or W&B) averaged over seeds: table, CSV, plots",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="*", metavar="RUN_DIR_OR_GLOB", help="run folders, folders holding them, globs (default: runs)"
    )
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs of this W&B project through wandb.Api")
    p.add_argument("--group", help="only runs of this W&B group (for run folders: their W&B logger's group)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="only runs with this tag (repeatable)")
    p.add_argument("--metric", choices=METRICS, default="test", help="top-1/top-5 source (default: test)")
    p.add_argument("--latency", action="store_true", help="measure each row's CPU latency (batch 1, eager)")
    p.add_argument(
        "--throughput",
        action="store_true",
        help="measure each row's training images/s as its runs trained (batch, precision, memory format), "
        "octzoo bench's way: one thread, the rows interleaved, CPU time of the thread",
    )
    p.add_argument(
        "--out",
        default="compare-results",
        metavar="DIR",
        help="where the CSV and PNG files go (default: compare-results)",
    )
    p.add_argument("--no-plots", action="store_true", help="write the CSV files only")
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.wandb is not None and args.wandb.count("/") != 1:
        parser.error(f"--wandb takes ENTITY/PROJECT (e.g. my-team/octzoo), got {args.wandb!r}")
    if not args.no_plots:
        try:
            pyplot()
        except RuntimeError as err:
            print(f"octzoo compare: {err}", file=sys.stderr)
            return 2
    runs, warnings = [], []
    try:
        if args.wandb:
            runs, warnings = read_wandb_runs_explained(args.wandb, args.group, args.tag)
        if args.paths or not args.wandb:
            local, more = read_local_runs(args.paths or ["runs"], args.group, args.tag)
            runs, warnings = runs + local, warnings + more
    except (FileNotFoundError, RuntimeError) as err:
        print(f"octzoo compare: {err}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"octzoo compare: {warning}", file=sys.stderr)
    if not runs:
        where = f"W&B project {args.wandb}" if args.wandb and not args.paths else ", ".join(args.paths or ["runs"])
        wanted = ([f"group {args.group!r}"] if args.group else []) + ([f"tags {args.tag}"] if args.tag else [])
        filters = f" with {' and '.join(wanted)}" if wanted else ""
        print(
            f"octzoo compare: no runs found in {where}{filters}; pass run folders or the folder `octzoo fit` wrote "
            "(trainer.logger save_dir, e.g. runs/cifar10_60ep)",
            file=sys.stderr,
        )
        return 2
    comparison = aggregate(runs, args.metric)
    if args.latency:
        for warning in measure_latency(comparison.rows):
            print(f"octzoo compare: {warning}", file=sys.stderr)
    if args.throughput:
        for warning in measure_throughput(comparison.rows):
            print(f"octzoo compare: {warning}", file=sys.stderr)
    print(format_report(comparison))
    out = Path(args.out)
    written = write_csvs(comparison, out)
    if not args.no_plots:
        written += [
            plot_top1_vs_macs(comparison, out / "top1_vs_macs.png"),
            plot_curves(comparison, out / "curves.png"),
        ]
        if args.throughput:
            written.append(plot_top1_vs_throughput(comparison, out / "top1_vs_throughput.png"))
    print(f"\nwrote {', '.join(map(str, written))}")
    return 0
