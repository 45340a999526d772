"""``octzoo sweep``: the points of a W&B grid sweep file, run one after the other without a W&B server.

The sweep file (``configs/sweeps/*.yaml``) is the one ``wandb sweep`` takes. Each point of its grid (the
product of the parameters' ``values``, in file order) becomes the sweep's ``command`` with the macros the W&B
agent fills in: ``${args}`` (``--name=value`` per parameter, the value written as Python's ``str`` does, as
the agent writes it), ``${args_no_equals}``, ``${program}``, ``${interpreter}``, ``${env}`` and
``${envvar:NAME}`` (an environment variable; ``--data-dir`` sets ``OCTZOO_DATA``). Arguments after
``--fit-args`` are added to every command.

Before a point runs, the runs already in its run folder (the CSV logger's ``save_dir`` under the ``run_group``
of the configs the command names, e.g. ``runs/cifar10_60ep``) decide what to do, matched on model, alpha, seed
and epoch budget (``trainer.max_epochs``) from their ``summary.json``:

- a finished run: skip the point;
- a run marked running and updated within ``--stale-after`` minutes: skip it (it is training elsewhere), unless
  its summary names a process on this host that is no longer alive (killed with its session: resume it);
- otherwise an unfinished run with ``checkpoints/last.ckpt``: resume the newest such checkpoint
  (``--ckpt_path``; the run continues in its own folder and W&B run);
- otherwise: start a new run.

A point that fails stops the sweep; running the same command again skips what finished and resumes the rest.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..training.configs import model_alpha, model_width, resolve_args
from ..training.configs import runs_dir as config_runs_dir
from ..training.summary import run_name
from .records import read_local_runs

__all__ = ["Decision", "Point", "Sweep", "SweepError", "add_parser", "decide", "expand", "load_sweep", "main"]

W_AND_B_DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
_ENVVAR = re.compile(r"\$\{envvar:([A-Za-z0-9_]*)\}")


class SweepError(ValueError):
    """A sweep file or command line that cannot be run; the message names the problem and the fix."""


@dataclass
class Sweep:
    path: Path
    parameters: dict[str, list[Any]]  # name -> the values of the grid (a constant is one value)
    command: list[str]
    program: str | None = None


@dataclass
class Point:
    params: dict[str, Any]
    argv: list[str]  # the command of this point, without --ckpt_path
    model: str
    alpha: float
    seed: int | None
    epochs: int | None
    runs_dir: Path | None
    width_mult: float | None = None

    @property
    def name(self) -> str:
        return f"{run_name(self.model, self.alpha, self.width_mult)}_s{'-' if self.seed is None else self.seed}"


@dataclass
class Decision:
    action: str  # start | resume | skip
    reason: str
    ckpt: Path | None = None


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a W&B sweep file for what ``octzoo sweep`` runs: grids of values and constants."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file (the alpha study is configs/sweeps/cifar10_alpha.yml)")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("method") != "grid":
        raise SweepError(
            f"{path}: method is {data.get('method')!r}; octzoo sweep runs grids only (method: grid). "
            "Random and Bayesian searches need a W&B server: wandb sweep + wandb agent"
        )
    parameters: dict[str, list[Any]] = {}
    for name, spec in (data.get("parameters") or {}).items():
        if isinstance(spec, dict) and "values" in spec and isinstance(spec["values"], list) and spec["values"]:
            parameters[name] = list(spec["values"])
        elif isinstance(spec, dict) and "value" in spec:
            parameters[name] = [spec["value"]]
        else:
            raise SweepError(
                f"{path}: parameter {name!r} is {spec!r}; a grid takes `values: [...]` or `value: ...` "
                "(nested `parameters:` and distributions are not expanded: write the combinations as values)"
            )
    if not parameters:
        raise SweepError(f"{path}: no parameters; a grid sweep lists them under `parameters:`")
    command = data.get("command") or W_AND_B_DEFAULT_COMMAND
    if not isinstance(command, list):
        raise SweepError(f"{path}: command must be a list of arguments, got {command!r}")
    if "${program}" in command and not data.get("program"):
        raise SweepError(f"{path}: the command uses ${{program}} but the file has no `program:`")
    return Sweep(path, parameters, [str(c) for c in command], data.get("program"))


def grid(sweep: Sweep) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, the first parameter varying slowest."""
    names = list(sweep.parameters)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*sweep.parameters.values())]


def command_for(sweep: Sweep, params: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The sweep's command for one point, its macros filled in as the W&B agent fills them."""
    out: list[str] = []
    for token in sweep.command:
        if token == "${args}":
            out += [f"--{name}={value}" for name, value in params.items()]
        elif token == "${args_no_equals}":
            out += [arg for name, value in params.items() for arg in (f"--{name}", str(value))]
        elif token == "${env}":
            continue
        elif token == "${interpreter}":
            out.append("python")
        elif token == "${program}":
            out.append(str(sweep.program))
        elif token.startswith("${") and token.endswith("}") and not _ENVVAR.fullmatch(token):
            raise SweepError(
                f"{sweep.path}: octzoo sweep does not fill in {token}; use ${{args}} or ${{args_no_equals}}"
            )
        else:
            out.append(_ENVVAR.sub(lambda m: _env(m.group(1), env, sweep.path), token))
    return out


def _env(name: str, env: Mapping[str, str], path: Path) -> str:
    if name not in env:
        hint = "pass --data-dir or set it" if name == "OCTZOO_DATA" else "set it"
        raise SweepError(f"{path}: the command uses ${{envvar:{name}}} but {name} is not set; {hint}")
    return env[name]


def expand(
    sweep: Sweep, env: Mapping[str, str] | None = None, extra: Sequence[str] = (), runs_dir: str | None = None
) -> list[Point]:
    """The sweep's points: parameters, command (``extra`` appended), model, alpha, seed, budget, run folder."""
    env = os.environ if env is None else env
    points = []
    for params in grid(sweep):
        argv = command_for(sweep, params, env) + list(extra)
        start = next((i for i, a in enumerate(argv) if a in ("fit", "validate", "test", "predict")), 0)
        try:
            cfg = resolve_args(argv[start:])
        except FileNotFoundError as err:
            raise SweepError(f"{err}; run octzoo sweep from the repository root (beside configs/)") from None
        except ValueError as err:  # a config that includes itself
            raise SweepError(str(err)) from None
        model = cfg.get("model") or {}
        name = model.get("model_name")
        if not name:
            raise SweepError(f"{sweep.path}: a point names no model (model.model_name) in {params}")
        seed = cfg.get("seed_everything")
        epochs = (cfg.get("trainer") or {}).get("max_epochs")
        points.append(
            Point(
                params=params,
                argv=argv,
                model=name,
                alpha=model_alpha(model),
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                epochs=epochs if isinstance(epochs, int) else None,
                runs_dir=Path(runs_dir) if runs_dir else config_runs_dir(cfg),
                width_mult=model_width(model),
            )
        )
    return points


def decide(point: Point, runs: Sequence[Any], now: datetime | None = None, stale_after_s: float = 3600) -> Decision:
    """Skip, resume or start ``point`` given the runs (:class:`octzoo.runs.Run`) found in its run folder."""
    now = now or datetime.now(timezone.utc)
    if point.seed is None:
        return Decision("start", "no fixed seed, so no earlier run can stand for this point")
    key = (point.model, round(point.alpha, 6), point.width_mult, point.seed, point.epochs)
    mine = [r for r in runs if (r.model, round(r.alpha, 6), r.width_mult, r.seed, r.epochs) == key]
    finished = sorted((r for r in mine if r.finished), key=lambda r: r.updated)
    if finished:
        return Decision("skip", f"finished in {finished[-1].id}")
    for r in mine:
        age = _age_s(r.updated, now)
        if r.status == "running" and age is not None and age < stale_after_s and not _process_gone(r.process):
            return Decision(
                "skip",
                f"running in {r.id} (updated {age / 60:.0f} min ago); it is resumed once its summary is older "
                "than --stale-after",
            )
    checkpoints = [(Path(r.id) / "checkpoints" / "last.ckpt", r) for r in mine]
    checkpoints = [(c, r) for c, r in checkpoints if c.is_file()]
    if checkpoints:
        ckpt, run = max(checkpoints, key=lambda cr: cr[0].stat().st_mtime)
        why = f"{run.status} at epoch {run.epochs_done} of {point.epochs} in {run.id}"
        if run.status == "running":
            why += f"; its process ({run.process[1]}) has ended" if _process_gone(run.process) else "; stale"
        return Decision("resume", why, ckpt)
    if mine:
        return Decision("start", f"{len(mine)} unfinished run(s) without a checkpoint: {', '.join(r.id for r in mine)}")
    return Decision("start", "no run yet")


def _process_gone(process: tuple[str, int] | None) -> bool:
    """True when ``(host, pid)`` is a process of this host that no longer exists. A process elsewhere, or a pid
    that is alive (perhaps reused by another program), counts as still training: the run then waits for
    ``--stale-after``, never trained twice at once."""
    if process is None or process[0] != socket.gethostname():
        return False
    try:
        os.kill(process[1], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _age_s(iso: str, now: datetime) -> float | None:
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (now - then).total_seconds()


def _quote(arg: str) -> str:
    """Shell quoting that keeps the agent's Python-style dictionaries readable (double quotes where safe)."""
    quoted = shlex.quote(arg)
    if quoted == arg or any(c in arg for c in '"$`\\!'):
        return quoted
    return f'"{arg}"'


def _executable(argv: list[str]) -> list[str]:
    """The same environment's interpreter for ``octzoo ...`` and ``python ...`` commands."""
    if argv and argv[0] == "octzoo":
        return [sys.executable, "-m", "octzoo", *argv[1:]]
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


# ---------------------------------------------------------------------------------------------------------------------
# command

DESCRIPTION = __doc__.split("\n", 2)[2].replace("``", "")

EPILOG = """\
examples:
  octzoo sweep configs/sweeps/cifar10_alpha.yml --data-dir path/to/cifar10 --dry-run
  octzoo sweep configs/sweeps/cifar10_alpha.yml --data-dir path/to/cifar10 --only 'oct_resnet20_*_s0'
  octzoo sweep configs/sweeps/cifar10_alpha.yml --data-dir path/to/cifar10 --fit-args --trainer.max_epochs 1"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "sweep",
        help="run the points of a W&B grid sweep file one by one, locally (skip finished, resume interrupted)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", metavar="SWEEP_FILE", help="a W&B sweep file with method: grid")
    p.add_argument("--data-dir", metavar="DIR", help="the data set folder or archive (sets OCTZOO_DATA)")
    p.add_argument("--dry-run", action="store_true", help="print each point's decision and command, run nothing")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only points whose name (<model>_a<alpha>_s<seed>) matches this fnmatch pattern (repeatable)",
    )
    p.add_argument(
        "--runs-dir", metavar="DIR", help="where the runs land (default: the CSV logger's save_dir/run_group)"
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=60.0,
        metavar="MIN",
        help="a run marked running but not updated for this many minutes was killed; resume it (default: 60)",
    )
    p.add_argument(
        "--fit-args",
        nargs=argparse.REMAINDER,
        default=[],
        metavar="ARG",
        help="everything after it is added to every command (e.g. --trainer.max_epochs 1); give it last",
    )
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.stale_after <= 0:
        parser.error(f"--stale-after must be positive (minutes), got {args.stale_after}")
    env = dict(os.environ)
    try:
        points = _points(args, env)
    except SweepError as err:
        print(f"octzoo sweep: {err}", file=sys.stderr)
        return 2
    counts = {"start": 0, "resume": 0, "skip": 0}
    for k, point in enumerate(points, 1):
        if point.runs_dir is None:
            print(
                f"octzoo sweep: {point.name}: the configs name no CSV logger save_dir, so finished runs cannot be "
                "found; pass --runs-dir",
                file=sys.stderr,
            )
            return 2
        runs = read_local_runs([point.runs_dir])[0] if point.runs_dir.is_dir() else []
        decision = decide(point, runs, stale_after_s=60 * args.stale_after)
        counts[decision.action] += 1
        print(f"[{k}/{len(points)}] {point.name}: {decision.action} ({decision.reason})", flush=True)
        returncode = 0 if decision.action == "skip" else _run(point, decision, env, args.dry_run)
        if returncode != 0:
            return returncode
    start, resume, skip = counts["start"], counts["resume"], counts["skip"]
    if args.dry_run:
        print(f"{len(points)} points: {start} to start, {resume} to resume, {skip} to skip (dry run: nothing ran)")
    else:
        print(f"{len(points)} points: started {start}, resumed {resume}, skipped {skip}")
    return 0


def _points(args: argparse.Namespace, env: dict[str, str]) -> list[Point]:
    """The sweep file's points that ``--only`` selects, with ``--data-dir`` and ``--fit-args`` applied."""
    extra = list(args.fit_args)
    sweep = load_sweep(args.sweep)
    if args.data_dir:
        env["OCTZOO_DATA"] = args.data_dir
        if not any("${envvar:OCTZOO_DATA}" in token for token in sweep.command):
            extra = ["--data.data_dir", args.data_dir, *extra]
    points = expand(sweep, env, extra, args.runs_dir)
    if not args.only:
        return points
    chosen = [p for p in points if any(fnmatch.fnmatchcase(p.name, pat) for pat in args.only)]
    if not chosen:
        names = " ".join(p.name for p in points)
        raise SweepError(f"--only {' '.join(args.only)} matches no point; the points: {names}")
    return chosen


def _run(point: Point, decision: Decision, env: dict[str, str], dry_run: bool) -> int:
    """Print a point's command and, unless ``dry_run``, run it; its exit status (0 for a dry run)."""
    argv = point.argv + (["--ckpt_path", str(decision.ckpt)] if decision.ckpt else [])
    print("  " + " ".join(map(_quote, argv)), flush=True)
    if dry_run:
        return 0
    returncode = subprocess.run(_executable(argv), env=env).returncode
    if returncode != 0:
        print(
            f"octzoo sweep: {point.name} failed (exit status {returncode}); fix the cause and run the same "
            "command again: finished points are skipped and this one resumes from its last checkpoint",
            file=sys.stderr,
        )
    return returncode
