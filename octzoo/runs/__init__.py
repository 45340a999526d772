"""Tier 4: run tooling. Training runs read as records (run folders and W&B), grouped and averaged over seeds,
reported as tables, CSV files and plots (``octzoo compare``), and grids of runs driven one by one
(``octzoo sweep``)."""

from .aggregate import METRICS, SOURCE_LABELS, Comparison, Row, aggregate, mean_std
from .plots import plot_curves, plot_top1_vs_macs, plot_top1_vs_throughput
from .records import Curves, Run, find_run_dirs, read_local_run, read_local_runs, read_metrics_csv, training_settings
from .report import format_report, write_csvs
from .timing import measure_latency, measure_throughput
from .wandb_runs import read_wandb_runs

__all__ = [
    "METRICS",
    "SOURCE_LABELS",
    "Comparison",
    "Curves",
    "Row",
    "Run",
    "aggregate",
    "find_run_dirs",
    "format_report",
    "mean_std",
    "measure_latency",
    "measure_throughput",
    "plot_curves",
    "plot_top1_vs_macs",
    "plot_top1_vs_throughput",
    "read_local_run",
    "read_local_runs",
    "read_metrics_csv",
    "read_wandb_runs",
    "training_settings",
    "write_csvs",
]
