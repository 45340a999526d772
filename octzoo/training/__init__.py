"""Tier 3: training glue (Lightning, W&B); imports the tiers below, never the reverse."""

from .loggers import CSVLogger
from .module import ImageClassifier
from .summary import RunSummary, read_summary
from .wandb import WandbLogger

__all__ = ["CSVLogger", "ImageClassifier", "RunSummary", "WandbLogger", "read_summary"]
