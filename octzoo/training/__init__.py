"""Tier 3: training glue (Lightning, W&B); imports the tiers below, never the reverse."""

from .checkpoint_io import AtomicCheckpointIO, LastCheckpoint
from .loggers import CSVLogger
from .module import ImageClassifier
from .reseed import ReseedEachBatch
from .summary import RunSummary, Summary, read_summary, run_name
from .wandb import WandbLogger

__all__ = [
    "AtomicCheckpointIO",
    "CSVLogger",
    "ImageClassifier",
    "LastCheckpoint",
    "ReseedEachBatch",
    "RunSummary",
    "Summary",
    "WandbLogger",
    "read_summary",
    "run_name",
]
