"""``octzoo sweep``: the alpha-study grid, its commands as the W&B agent builds them, skip/resume decisions."""

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT, write_cifar_pickles

import octzoo
from octzoo.cli import main as octzoo_main
from octzoo.runs import read_local_run, read_local_runs
from octzoo.runs.sweep import SweepError, decide, expand, load_sweep

SWEEP = "configs/sweeps/cifar10_alpha.yml"
ALPHAS = [0.125, 0.25, 0.5, 0.75]
# One epoch of two tiny batches on the generated data: a real run through the runner in seconds.
TINY = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.log_every_n_steps",
    "1",
    "--data.batch_size",
    "8",
]


def repo_like(folder: Path) -> Path:
    """A working folder beside configs/ (as the repository root is), so runs land here and not in the checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configs").symlink_to(REPO_ROOT / "configs", target_is_directory=True)
    return folder


def octzoo_run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "octzoo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One point of the real sweep file (ResNet-20, seed 1) run through ``octzoo sweep`` for two tiny steps."""
    root = repo_like(tmp_path_factory.mktemp("sweep"))
    data = write_cifar_pickles(tmp_path_factory.mktemp("data"))
    proc = octzoo_run(
        "sweep", SWEEP, "--data-dir", str(data), "--only", "resnet20_a0_s1", "--fit-args", *TINY, cwd=root
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return root, data, proc.stdout


def test_grid_is_the_alpha_study_with_the_agents_command(monkeypatch):
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("OCTZOO_DATA", "some/data")
    sweep = load_sweep(SWEEP)
    points = expand(sweep)
    assert len(points) == 10
    assert sorted((p.model, p.alpha, p.seed) for p in points) == sorted(
        [("resnet20", 0.0, s) for s in (0, 1)] + [("oct_resnet20", a, s) for a in ALPHAS for s in (0, 1)]
    )
    assert [p.name for p in points[:2]] == ["resnet20_a0_s0", "oct_resnet20_a0.125_s0"]  # all alphas of seed 0 first
    assert {p.epochs for p in points} == {60} and {p.runs_dir for p in points} == {Path("runs/cifar10_60ep")}

    # each command is exactly what `wandb agent` runs: its own macro expansion of the same file
    for point in points:
        sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in point.params.items()}})
        agent = []
        for token in create_sweep_command(yaml.safe_load((REPO_ROOT / SWEEP).read_text())["command"]):
            agent += sweep_vars[token[2:-1]] if token.startswith("${") and token.endswith("}") else [token]
        assert point.argv == agent
    assert "--data.data_dir=some/data" in points[0].argv


def test_the_report_grid_has_every_row_of_its_tables_and_each_builds_for_cifar(monkeypatch):
    """configs/sweeps/cifar10_report.yml: the reproduction report's Tables 2 and 3 (docs/seed_reproduction.md)."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("OCTZOO_DATA", "some/data")
    points = expand(load_sweep("configs/sweeps/cifar10_report.yml"))
    rows = {(p.model, p.alpha) for p in points}
    plain = {(f"resnet{d}", 0.0) for d in (18, 34, 50, 101, 152, 20, 44, 56)}
    octave = {(f"oct_resnet{d}", a) for d in (50, 101, 152) for a in (0.125, 0.25, 0.5)}
    assert rows == plain | octave
    assert {p.seed for p in points} == {0, 1} and len(points) == 2 * len(rows)
    assert {p.epochs for p in points} == {60} and {p.runs_dir for p in points} == {Path("runs/cifar10_60ep")}
    net = octzoo.create_model("oct_resnet50", alpha=0.5, num_classes=10)  # ImageNet layout at CIFAR's 32 px
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_frontier_grid_matches_the_octave_multiply_adds_and_keeps_widths_apart(tmp_path, monkeypatch):
    """configs/sweeps/cifar10_frontier.yml: thinner plain ResNet-20s at the octave networks' multiply-adds, each
    width its own run folder and sweep point (a full-width run never stands for a thinner one)."""
    monkeypatch.chdir(REPO_ROOT)
    points = expand(load_sweep("configs/sweeps/cifar10_frontier.yml"), {"OCTZOO_DATA": "d"}, runs_dir=str(tmp_path))
    assert sorted({p.name for p in points}) == sorted(
        f"{n}_s{s}"
        for n in ("resnet20_w0.84_a0", "resnet20_w0.68_a0", "resnet20_w0.58_a0", "resnet14_a0")
        for s in (0, 1)
    )
    full = octzoo.profile(octzoo.create_model("resnet20"), (3, 32, 32)).macs
    for width, alpha in ((0.84, 0.25), (0.68, 0.5), (0.58, 0.75)):
        thin = octzoo.profile(octzoo.create_model("resnet20", width_mult=width), (3, 32, 32)).macs
        octave = octzoo.profile(octzoo.create_model("oct_resnet20", alpha=alpha), (3, 32, 32)).macs
        assert abs(thin - octave) < 0.01 * full, (width, thin / full, octave / full)
    fake_run(tmp_path, "resnet20_a0/version_0", model="resnet20", alpha=0.0, seed=0, status="finished")
    fake_run(
        tmp_path, "resnet20_w0.68_a0/version_0", model="resnet20", alpha=0.0, seed=0, status="finished", width=0.68
    )
    found = read_local_runs([tmp_path])[0]
    decisions = {p.name: decide(p, found).action for p in points if p.seed == 0}
    assert decisions == {"resnet20_w0.84_a0_s0": "start", "resnet20_w0.68_a0_s0": "skip"} | {
        "resnet20_w0.58_a0_s0": "start",
        "resnet14_a0_s0": "start",
    }


def test_the_reading_of_a_point_matches_lightningcli(tmp_path, monkeypatch):
    """The light config reading behind the decisions agrees with LightningCLI's own (--print_config)."""
    root = repo_like(tmp_path)
    monkeypatch.chdir(root)
    point = next(p for p in expand(load_sweep(SWEEP), {"OCTZOO_DATA": "data"}) if p.name == "oct_resnet20_a0.5_s1")
    proc = octzoo_run(*point.argv[1:], "--print_config", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = yaml.safe_load(proc.stdout)
    save_dir = next(lg["init_args"]["save_dir"] for lg in cfg["trainer"]["logger"] if "CSVLogger" in lg["class_path"])
    assert (cfg["model"]["model_name"], cfg["model"]["model_kwargs"]["alpha"]) == (point.model, point.alpha)
    runs = Path(save_dir) / cfg["run_group"]
    assert (cfg["seed_everything"], cfg["trainer"]["max_epochs"], runs) == (1, point.epochs, point.runs_dir)
    assert cfg["model"]["label_smoothing"] == 0.1 and cfg["trainer"]["precision"] == "bf16-mixed"  # the recipe holds


def fake_run(
    runs: Path, name: str, *, model, alpha, seed, status, max_epochs=60, updated=None, ckpt_mtime=None, width=None,
    process=None,
):  # fmt: skip
    """A run folder as octzoo fit leaves it: summary.json (only the fields the decisions read), maybe last.ckpt."""
    run = runs / name
    run.mkdir(parents=True)
    summary = {
        "schema": 1,
        "status": status,
        "run_dir": str(run),
        "model": model,
        "alpha": alpha,
        "seed": seed,
        "epochs": 3,
        "data": {"class": "CIFAR10DataModule", "name": "cifar10", "num_classes": 10},
        "config": {
            "seed_everything": seed,
            "trainer": {"max_epochs": max_epochs},
            "model": {"model_name": model, "model_kwargs": {} if width is None else {"width_mult": width}},
        },
        "metrics": {"final": {}, "best": {}, "test": {}},
        "updated_at": (updated or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
    }
    if process is not None:
        summary["process"] = {"host": process[0], "pid": process[1]}
    (run / "summary.json").write_text(json.dumps(summary))
    if ckpt_mtime is not None:
        (run / "checkpoints").mkdir()
        (run / "checkpoints/last.ckpt").write_bytes(b"not read by the decisions")
        os.utime(run / "checkpoints/last.ckpt", (ckpt_mtime, ckpt_mtime))
    return run


def test_skip_resume_and_start_decisions(tmp_path, monkeypatch, capsys):
    now = datetime.now(timezone.utc)
    hours_ago = now - timedelta(hours=2)
    runs = tmp_path / "runs"
    fake_run(runs, "resnet20_a0/version_0", model="resnet20", alpha=0.0, seed=0, status="finished")
    fake_run(runs, "oct_resnet20_a0.125/version_0", model="oct_resnet20", alpha=0.125, seed=0, status="running")
    old = fake_run(
        runs, "oct_resnet20_a0.25/version_0", model="oct_resnet20", alpha=0.25, seed=0, status="interrupted",
        updated=hours_ago, ckpt_mtime=1_000_000,
    )  # fmt: skip
    newest = fake_run(
        runs, "oct_resnet20_a0.25/version_1", model="oct_resnet20", alpha=0.25, seed=0, status="running",
        updated=hours_ago, ckpt_mtime=2_000_000,
    )  # fmt: skip
    no_ckpt = fake_run(runs, "oct_resnet20_a0.5/version_0", model="oct_resnet20", alpha=0.5, seed=0, status="failed")
    fake_run(  # finished, but for another epoch budget: not this point's run
        runs, "oct_resnet20_a0.75/version_0", model="oct_resnet20", alpha=0.75, seed=0, status="finished", max_epochs=1
    )

    monkeypatch.chdir(REPO_ROOT)
    points = {p.name: p for p in expand(load_sweep(SWEEP), {"OCTZOO_DATA": "d"}, runs_dir=str(runs))}
    found = read_local_runs([runs])[0]
    decisions = {name: decide(p, found, now=now, stale_after_s=3600) for name, p in points.items()}
    assert decisions["resnet20_a0_s0"].action == "skip" and "finished" in decisions["resnet20_a0_s0"].reason
    assert (
        decisions["oct_resnet20_a0.125_s0"].action == "skip" and "running" in decisions["oct_resnet20_a0.125_s0"].reason
    )
    assert decisions["oct_resnet20_a0.25_s0"].action == "resume"
    assert decisions["oct_resnet20_a0.25_s0"].ckpt == newest / "checkpoints/last.ckpt" != old / "checkpoints/last.ckpt"
    assert (
        decisions["oct_resnet20_a0.5_s0"].action == "start" and str(no_ckpt) in decisions["oct_resnet20_a0.5_s0"].reason
    )
    assert decisions["oct_resnet20_a0.75_s0"].action == "start"
    assert all(decisions[p].action == "start" for p in points if p.endswith("_s1"))
    # a running run left alone long enough is taken for killed, and resumed
    later = decide(points["oct_resnet20_a0.125_s0"], found, now=now + timedelta(hours=3), stale_after_s=3600)
    assert later.action == "start"  # it has no checkpoint to resume from

    # the command prints the same decisions and the resume command, and runs nothing
    args = ["sweep", SWEEP, "--data-dir", "d", "--runs-dir", str(runs), "--dry-run", "--only", "oct_resnet20_a0.25_*"]
    assert octzoo_main(args) == 0
    out = capsys.readouterr().out
    assert "[1/2] oct_resnet20_a0.25_s0: resume" in out and "[2/2] oct_resnet20_a0.25_s1: start (no run yet)" in out
    assert f"--ckpt_path {newest / 'checkpoints/last.ckpt'}" in out
    assert "--seed_everything=0 \"--model={'model_name': 'oct_resnet20', 'model_kwargs': {'alpha': 0.25}}\"" in out
    assert "2 points: 1 to start, 1 to resume, 0 to skip (dry run: nothing ran)" in out
    assert sorted(p.name for p in runs.glob("*/*")) == ["version_0"] * 5 + ["version_1"]  # nothing new


def test_a_running_run_whose_process_has_ended_on_this_host_is_resumed_at_once(tmp_path, monkeypatch):
    """A session that ends kills its trainings without a word: their summaries still say running, fresh. The
    process they name is gone from this host, so the point resumes without waiting for --stale-after; a live
    process, or one on another host, keeps the point skipped."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host = socket.gethostname()
    runs = tmp_path / "runs"
    cases = {"oct_resnet20_a0.125": (host, ended.pid), "oct_resnet20_a0.25": (host, os.getpid())}
    cases |= {"oct_resnet20_a0.5": ("another-host", ended.pid), "oct_resnet20_a0.75": None}
    for folder, process in cases.items():
        alpha = float(folder.rsplit("_a", 1)[1])
        kw = dict(model="oct_resnet20", alpha=alpha, seed=0, status="running", ckpt_mtime=1_000_000)
        fake_run(runs, f"{folder}/version_0", process=process, **kw)
    monkeypatch.chdir(REPO_ROOT)
    points = {p.name: p for p in expand(load_sweep(SWEEP), {"OCTZOO_DATA": "d"}, runs_dir=str(runs))}
    found = read_local_runs([runs])[0]
    decisions = {f: decide(points[f"{f}_s0"], found, stale_after_s=3600) for f in cases}
    resumed = decisions.pop("oct_resnet20_a0.125")
    assert resumed.action == "resume" and f"its process ({ended.pid}) has ended" in resumed.reason
    assert {f: d.action for f, d in decisions.items()} == dict.fromkeys(decisions, "skip")


def test_a_point_runs_through_the_runner_and_is_then_skipped(swept, monkeypatch, capsys):
    root, data, stdout = swept
    assert "[1/1] resnet20_a0_s1: start (no run yet)" in stdout
    run = root / "runs/cifar10_60ep/resnet20_a0/version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["model"], summary["alpha"], summary["seed"]) == ("finished", "resnet20", 0, 1)
    assert summary["epochs"] == 1 and summary["config"]["trainer"]["max_epochs"] == 1
    assert summary["data"]["data_dir"] == str(data) and summary["config"]["trainer"]["precision"] == "bf16-mixed"
    assert (run / "checkpoints/last.ckpt").is_file()
    # the summary names the training process, which has ended with the point
    assert summary["process"]["host"] == socket.gethostname() and summary["process"]["pid"] != os.getpid()
    assert read_local_run(run).process == (socket.gethostname(), summary["process"]["pid"])

    monkeypatch.chdir(root)
    assert (
        octzoo_main(["sweep", SWEEP, "--data-dir", str(data), "--only", "resnet20_*", "--dry-run", "--fit-args", *TINY])
        == 0
    )
    out = capsys.readouterr().out
    assert "resnet20_a0_s1: skip (finished in runs/cifar10_60ep/resnet20_a0/version_0)" in out
    assert "resnet20_a0_s0: start (no run yet)" in out
    # the same point at another epoch budget is another experiment
    assert octzoo_main(["sweep", SWEEP, "--data-dir", str(data), "--only", "resnet20_a0_s1", "--dry-run"]) == 0
    assert "resnet20_a0_s1: start (no run yet)" in capsys.readouterr().out


@pytest.mark.slow
def test_an_interrupted_point_resumes_in_its_own_folder(swept, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(swept[0], root, symlinks=True)
    run = root / "runs/cifar10_60ep/resnet20_a0/version_0"
    summary = json.loads((run / "summary.json").read_text())
    summary["status"] = "interrupted"
    (run / "summary.json").write_text(json.dumps(summary))
    proc = octzoo_run(
        "sweep", SWEEP, "--data-dir", str(swept[1]), "--only", "resnet20_a0_s1", "--fit-args", *TINY, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "resnet20_a0_s1: resume (interrupted at epoch 1 of 1" in proc.stdout
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert [v.name for v in run.parent.iterdir()] == ["version_0"]


def test_refusals_name_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("OCTZOO_DATA", raising=False)
    assert octzoo_main(["sweep", SWEEP, "--dry-run"]) == 2
    assert "OCTZOO_DATA is not set; pass --data-dir" in capsys.readouterr().err
    assert octzoo_main(["sweep", SWEEP, "--data-dir", "d", "--dry-run", "--only", "vgg*"]) == 2
    assert "matches no point; the points: resnet20_a0_s0 oct_resnet20_a0.125_s0" in capsys.readouterr().err

    random = tmp_path / "random.yaml"
    random.write_text("method: random\nparameters:\n  lr:\n    min: 0.01\n    max: 0.1\n")
    with pytest.raises(SweepError, match="grids only"):
        load_sweep(random)
    nested = tmp_path / "nested.yaml"
    nested.write_text("method: grid\nparameters:\n  model:\n    parameters:\n      lr: {values: [1, 2]}\n")
    with pytest.raises(SweepError, match="write the combinations as values"):
        load_sweep(nested)
