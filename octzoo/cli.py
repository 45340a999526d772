"""The ``octzoo`` command: one dispatcher for Lightning's commands and octzoo's own tools.

``fit``, ``validate``, ``test`` and ``predict`` belong to LightningCLI and are handed over untouched to
``octzoo.cli_lightning.main(argv)``. octzoo's own commands are argparse subparsers,
each built by the ``add_parser`` of the module that holds the command (``COMMANDS``), which sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    for module in COMMANDS:
        importlib.import_module(module).add_parser(commands)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("octzoo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _run_lightning(argv: list[str]) -> int:
    from octzoo.cli_lightning import main as lightning_main  # imported lazily: Lightning is slow to import

    return lightning_main(argv) or 0


# Each command's parser and run live in the module of its subject, which has ``add_parser(commands)``; a new
# command is one line here.
COMMANDS = ("octzoo.bench.models", "octzoo.bench.command", "octzoo.export", "octzoo.runs.compare", "octzoo.runs.sweep")
