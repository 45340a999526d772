"""Training config files as the Lightning CLI reads them: ``_base_`` chains, loggers, and a run's identity.

One home for what ``octzoo fit`` (``octzoo/cli_lightning.py``) and the run tooling (``octzoo.runs``: sweeps,
comparisons) both read from a config:

- a config file may name the files it builds on in ``_base_`` (a path or a list, relative to the file);
  :func:`config_chain` walks them, bases first, and the file's own values come last, so that they override
  the bases' exactly as repeated ``--config`` files do;
- :func:`expand_bases` turns those chains into the CLI's repeated ``--config`` arguments, and
  :func:`resolve_args` reads a command's values without Lightning's parser (what ``octzoo sweep`` needs);
- :func:`logger_args` finds a logger's ``init_args`` by its class (the CSV logger's ``save_dir``, the W&B
  logger's group and tags), in a plain dictionary or in the CLI's namespace; a recipe's ``run_group`` is the
  runs' subfolder and W&B group (:func:`runs_dir`, :func:`apply_run_group`);
- :func:`model_alpha` and :func:`model_width` give a config's model section's alpha (the family's default
  where the config names none) and width (None for the paper's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

__all__ = [
    "ConfigFile",
    "config_chain",
    "expand_bases",
    "logger_args",
    "loggers",
    "merge",
    "model_alpha",
    "model_width",
    "resolve_args",
    "runs_dir",
    "apply_run_group",
]


class ConfigFile(NamedTuple):
    """One file of a chain: its values without ``_base_`` (None: no such file) and whether it named bases."""

    path: Path
    data: Any
    has_bases: bool = False


def config_chain(path: str | os.PathLike, seen: tuple[Path, ...] = ()) -> list[ConfigFile]:
    """A config file and, before it, every file its ``_base_`` names, recursively (bases first). A missing file
    is in the chain with ``data=None``, for the caller to report; a file that includes itself is a ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        return [ConfigFile(path, None)]
    if path.resolve() in seen:
        chain = " -> ".join(map(str, seen))
        raise ValueError(f"config {path} includes itself through _base_: {chain}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "_base_" not in data:
        return [ConfigFile(path, data)]
    bases = data.pop("_base_")
    chain: list[ConfigFile] = []
    for base in [bases] if isinstance(bases, str) else bases:
        chain += config_chain(path.parent / base, (*seen, path.resolve()))
    return [*chain, ConfigFile(path, data, has_bases=True)]


def expand_bases(argv: Sequence[str]) -> list[str]:
    """Replace every ``--config FILE`` whose YAML has ``_base_`` by its chain of ``--config`` arguments.

    Files without ``_base_`` pass as they are (a name that is no file too: LightningCLI reports it, or reads it
    as a YAML string); a file with ``_base_`` is passed on as a YAML string without that key, after its bases,
    so that its values override theirs exactly as repeated ``--config`` files do.
    """
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config" and i + 1 < len(args):
            out += _config_args(args[i + 1])
            i += 2
            continue
        out += _config_args(arg.split("=", 1)[1]) if arg.startswith("--config=") else [arg]
        i += 1
    return out


def _config_args(spec: str) -> list[str]:
    if not Path(spec).is_file():
        return ["--config", spec]
    out: list[str] = []
    for file in config_chain(spec):
        out += ["--config", yaml.safe_dump(file.data, sort_keys=False) if file.has_bases else str(file.path)]
    return out


def resolve_args(argv: Sequence[str]) -> dict[str, Any]:
    """What LightningCLI would read from ``argv`` (``fit --config ... --a.b=V``), without building anything.

    ``--config`` files (with their ``_base_`` chains) merge in order, dictionaries key by key, anything else
    replaced; ``--a.b=V`` and ``--a.b V`` set a key to V read as YAML (a dictionary merges into a group).
    Nothing is checked against the CLI's arguments: what a run's identity needs (``model``, ``seed_everything``,
    ``trainer.max_epochs``, the loggers) is read without Lightning's parser. ``FileNotFoundError`` for a
    ``--config`` that is neither a file nor a YAML mapping."""
    cfg: dict[str, Any] = {}
    args = list(argv)
    i = 1 if args and args[0] in ("fit", "validate", "test", "predict") else 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            i += 1
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
            value = args[i + 1] if has_value else "true"
            i += 1 + has_value
        else:
            i += 1
        if key == "config":
            merge(cfg, _config_file(value))
        else:
            _set(cfg, key.split("."), yaml.safe_load(value))
    return cfg


def _config_file(spec: str) -> dict[str, Any]:
    """A ``--config`` argument's values: a file with its ``_base_`` chain merged, or a YAML string."""
    merged: dict[str, Any] = {}
    for file in config_chain(spec):
        if file.data is None:
            data = yaml.safe_load(spec) if file.path == Path(spec) else None
            if isinstance(data, dict):
                return data  # a YAML string, as LightningCLI also takes
            raise FileNotFoundError(f"config {file.path} not found")
        merge(merged, file.data)
    return merged


def _set(cfg: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        if not isinstance(cfg.get(key), dict):
            cfg[key] = {}
        cfg = cfg[key]
    if isinstance(value, Mapping) and isinstance(cfg.get(keys[-1]), dict):
        merge(cfg[keys[-1]], value)
    else:
        cfg[keys[-1]] = value


def merge(into: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``new`` into ``into`` as composed config files do: dictionaries key by key, anything else replaced."""
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
    return into


def loggers(config: Any) -> list[Any]:
    """The ``trainer.logger`` entries of a config (a dictionary or the CLI's namespace): a list, empty for
    none or ``True`` (Lightning's default logger)."""
    trainer = config.get("trainer") or {}
    found = trainer.get("logger")
    if not found or found is True:
        return []
    return list(found) if isinstance(found, list) else [found]


def logger_args(config: Any, kind: str) -> Any:
    """The ``init_args`` of the first logger whose class is ``kind`` (``"CSVLogger"``, ``"WandbLogger"``), None
    when the config has no such logger; in the CLI's namespace, the namespace's own object, so it can be set."""
    for logger in loggers(config):
        if hasattr(logger, "get") and str(logger.get("class_path") or "").rsplit(".", 1)[-1] == kind:
            args = logger.get("init_args")
            return {} if args is None else args
    return None


def runs_dir(config: Any) -> Path | None:
    """Where a config's runs land: the CSV logger's ``save_dir``, under the config's ``run_group`` when it names
    one (``runs`` and ``cifar10_60ep``: ``runs/cifar10_60ep``); None without a CSV logger or its ``save_dir``."""
    save_dir = (logger_args(config, "CSVLogger") or {}).get("save_dir")
    if not save_dir:
        return None
    group = config.get("run_group")
    return Path(save_dir) / group if group else Path(save_dir)


def apply_run_group(config: Any, default_group: str) -> None:
    """Lay a config's ``run_group`` over its loggers, in place (the CLI's namespace): the CSV and W&B loggers'
    ``save_dir`` get it as a subfolder (:func:`runs_dir`), the W&B logger it as its group unless the config names
    one (else ``default_group``); ``run_group`` is then cleared, so the config saved with a run reproduces it."""
    group = config.get("run_group")
    csv, wandb = logger_args(config, "CSVLogger"), logger_args(config, "WandbLogger")
    if group:
        for args in (a for a in (csv, wandb) if a is not None):
            args.save_dir = str(Path(args.get("save_dir") or ".") / group)
        config.run_group = None
    if wandb is not None:
        wandb.group = wandb.get("group") or group or default_group


def model_alpha(model: Mapping[str, Any] | Any) -> float:
    """A config's model section's alpha: ``model_kwargs.alpha``, else the family's default (0 for plain)."""
    from ..models import model_entry

    kwargs = model.get("model_kwargs") or {}
    return float(kwargs.get("alpha", model_entry(model.get("model_name")).default_alpha) or 0.0)


def model_width(model: Any) -> float | None:
    """A config's model section's ``model_kwargs.width_mult``, None for the paper's width (1 or unset): what
    tells a thinner network's runs from the full-width one's."""
    width = ((model or {}).get("model_kwargs") or {}).get("width_mult") if hasattr(model, "get") else None
    return None if width is None or width == 1 else float(width)
