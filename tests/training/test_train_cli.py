"""``octzoo fit|test`` end to end: configs, run folders, summaries, W&B offline, DDP on CPU, resume."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT
from helpers import read_wandb_records

import octzoo
from octzoo.cli_lightning import OctzooCLI
from octzoo.training import ImageClassifier
from octzoo.training.configs import expand_bases

# the in-process CLI tests pass args= while pytest's own argv is in sys.argv
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

CONFIGS = sorted(
    p for p in (REPO_ROOT / "configs").rglob("*.yaml") if not p.name.startswith("_") and p.parent.name != "base"
)
# recipe_*.yaml are overlays laid over a model config (--config model.yaml --config recipe.yaml)
OVERLAY_BASE = {"cifar10": REPO_ROOT / "configs/cifar10/oct_resnet20.yaml"}
SHORT = [
    "--trainer.log_every_n_steps",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "1",
]


def cifar_args(config: str, data_dir: Path) -> list[str]:
    """A CIFAR-10 config run on the generated data with a handful of tiny batches."""
    path = REPO_ROOT / "configs/cifar10" / f"{config}.yaml"
    return ["--config", str(path), "--data.data_dir", str(data_dir), "--data.batch_size", "8", *SHORT]


def octzoo_cmd(*args: str, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "octzoo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"octzoo {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(REPO_ROOT / "configs")) for p in CONFIGS])
def test_every_config_parses_and_builds_its_model(config, tmp_path):
    configs = ["--config", str(config)]
    if config.name.startswith("recipe_"):
        configs = ["--config", str(OVERLAY_BASE[config.parent.name]), *configs]
    args = expand_bases([*configs, "--data.data_dir", str(tmp_path), "--trainer.logger", "false"])
    cli = OctzooCLI(ImageClassifier, run=False, args=args, subclass_mode_data=True, auto_configure_optimizers=False)
    hp = cli.model.hparams
    reference = octzoo.create_model(hp.model_name, num_classes=hp.num_classes, **(hp.model_kwargs or {}))
    assert sum(p.numel() for p in cli.model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes


def test_base_chain_lets_the_leaf_override(tmp_path):
    leaf = REPO_ROOT / "configs/imagenet/oct_mobilenet_v2_100_a0.375.yaml"
    args = expand_bases(["--config", str(leaf)])
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    # bases first, each file after the files it builds on; files with a _base_ pass on as YAML without it
    assert configs[0].endswith("trainer.yaml") and "ImageNetDataModule" in configs[1]
    assert "label_smoothing" in configs[2] and "oct_mobilenet_v2" in configs[3]
    assert not any("_base_" in c for c in configs)
    cli = OctzooCLI(
        ImageClassifier,
        run=False,
        args=[*args, "--trainer.logger", "false"],
        subclass_mode_data=True,
        auto_configure_optimizers=False,
    )
    assert cli.model.hparams.label_smoothing == 0.1 and cli.model.hparams.weight_decay == 4e-5
    assert cli.trainer.max_epochs == 150 and cli.model.alpha == 0.375


def test_fit_and_test_through_the_console_script(cifar10_pickles, tmp_path):
    common = cifar_args("oct_resnet20", cifar10_pickles)
    proc = octzoo_cmd("fit", *common, "--trainer.max_epochs", "1", "--test_after_fit", "true", cwd=tmp_path)
    assert "oct_resnet20 (alpha 0.25): 0.270 M params, 28.39 M MACs, test top-1" in proc.stdout
    run = tmp_path / "runs/oct_resnet20_a0.25/version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 1
    assert (summary["model"], summary["alpha"], summary["params"], summary["macs"]) == (
        "oct_resnet20",
        0.25,
        269_722,
        28_385_920,
    )
    assert summary["data"]["class"] == "CIFAR10DataModule" and summary["data"]["num_classes"] == 10
    assert summary["commit"] is None  # the run folder's working directory is no git checkout
    assert set(summary["metrics"]["test"]) == {"test/loss", "test/acc1", "test/acc5"}
    assert "val/acc1" in summary["metrics"]["best"]
    assert summary["config"]["model"]["model_name"] == "oct_resnet20"
    assert summary["wandb"]["mode"] == "offline"
    assert (run / "checkpoints/last.ckpt").is_file() and (run / "config.yaml").is_file()

    # a second run in the same folder gets its own version folder and leaves the first one alone
    first = (run / "summary.json").read_bytes(), (run / "checkpoints/last.ckpt").stat().st_mtime_ns
    octzoo_cmd("fit", *common, "--trainer.max_epochs", "1", cwd=tmp_path)
    assert (tmp_path / "runs/oct_resnet20_a0.25/version_1/summary.json").is_file()
    assert first == ((run / "summary.json").read_bytes(), (run / "checkpoints/last.ckpt").stat().st_mtime_ns)

    # test a training checkpoint
    proc = octzoo_cmd("test", *common, "--ckpt_path", str(run / "checkpoints/last.ckpt"), cwd=tmp_path)
    assert "test/acc1" in proc.stdout


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resumed_run_keeps_the_metrics_of_its_earlier_epochs(cifar10_pickles, tmp_path):
    """Lightning's CSV writer deletes metrics.csv when its folder is not empty, so a resumed run used to keep
    only the epochs after the interruption; rows logged past the checkpoint (here: a whole epoch) go."""
    common = [*cifar_args("resnet20", cifar10_pickles), "--trainer.max_epochs"]
    octzoo_cmd("fit", *common, "2", cwd=tmp_path)
    run = tmp_path / "runs/resnet20_a0/version_0"
    ckpt = next((run / "checkpoints").glob("epoch000*.ckpt"))  # after epoch 0: epoch 1 was logged past it
    assert {r["epoch"] for r in _csv_rows(run / "metrics.csv") if r["val/acc1"]} == {"0", "1"}
    (run / "checkpoints/last.ckpt").unlink()
    ckpt.rename(run / "checkpoints/last.ckpt")
    octzoo_cmd("fit", *common, "3", "--ckpt_path", str(run / "checkpoints/last.ckpt"), cwd=tmp_path)
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    rows = _csv_rows(run / "metrics.csv")
    val = [(r["epoch"], r["step"]) for r in rows if r["val/acc1"]]
    assert val == [("0", "1"), ("1", "3"), ("2", "5")]  # 2 steps an epoch; epoch 1 logged once, not twice
    assert [int(r["step"]) for r in rows] == sorted(int(r["step"]) for r in rows)


def test_two_runs_started_together_get_their_own_folders(cifar10_pickles, tmp_path):
    env = dict(os.environ, WANDB_MODE="offline")
    argv = [
        sys.executable,
        "-m",
        "octzoo",
        "fit",
        *cifar_args("resnet20", cifar10_pickles),
        "--trainer.max_epochs",
        "1",
    ]
    procs = [
        subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in "ab"
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    runs = sorted((tmp_path / "runs/resnet20_a0").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1"]
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    assert [s["run_dir"] for s in summaries] == ["runs/resnet20_a0/version_0", "runs/resnet20_a0/version_1"]
    assert summaries[0]["wandb"]["id"] != summaries[1]["wandb"]["id"]
    assert all(s["status"] == "finished" and (tmp_path / s["checkpoints"]["last"]).is_file() for s in summaries)


def test_wandb_offline_run_is_written_and_readable(cifar10_pickles, tmp_path):
    octzoo_cmd(
        "fit",
        *cifar_args("resnet20", cifar10_pickles),
        "--trainer.max_epochs",
        "1",
        cwd=tmp_path,
    )
    runs = list((tmp_path / "runs/wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    keys, config_keys, group = set(), set(), None
    for record in read_wandb_records(runs[0]):
        if record.HasField("history"):
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        if record.HasField("config"):
            config_keys |= {item.key or "/".join(item.nested_key) for item in record.config.update}
        if record.HasField("run"):
            group = record.run.run_group
    assert {"val/acc1", "val/acc5", "train/loss"} <= keys
    assert {"model_name", "model_info/macs", "model_info/params", "resolved_config"} <= config_keys
    assert group == "resnet20"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_makes_one_run(cifar10_pickles, tmp_path):
    octzoo_cmd(
        "fit",
        *cifar_args("resnet20", cifar10_pickles),
        "--trainer.max_epochs",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        cwd=tmp_path,
    )
    assert len(list((tmp_path / "runs/wandb").glob("offline-run-*"))) == 1  # one W&B run per DDP job
    versions = list((tmp_path / "runs/resnet20_a0").iterdir())
    assert [v.name for v in versions] == ["version_0"]
    summary = json.loads((versions[0] / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 2
    assert 0 <= summary["metrics"]["final"]["val/acc1"] <= 1


def _killable_fit(folder: Path, name: str, args: list[str], kill: dict | None, resume: Path | None = None):
    """The argv and environment of ``octzoo fit ARGS`` run in ``folder`` with the shipped base callbacks, a
    checkpoint after every step and a :class:`faults.KillAt` when ``kill`` is given, resumed from ``resume``.
    ``args`` starts with the model's ``--config``; these callbacks follow it, before any recipe's ``callbacks+``."""
    base = yaml.safe_load((REPO_ROOT / "configs/base/trainer.yaml").read_text())
    callbacks = base["trainer"]["callbacks"]
    (last,) = [c for c in callbacks if c["class_path"] == "octzoo.training.LastCheckpoint"]
    last["init_args"]["every_n_train_steps"] = 1
    if kill:
        callbacks.append({"class_path": "faults.KillAt", "init_args": kill})
    folder.mkdir(exist_ok=True)
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    ckpt = ["--ckpt_path", str(resume)] if resume else []
    argv = [sys.executable, "-m", "octzoo", "fit", *args[:2], "--config", str(config), *args[2:], *ckpt]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO_ROOT / "tests"))
    env.pop("PYTEST_XDIST_WORKER", None)
    return argv, env


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_a_run_killed_six_ways_resumes_to_the_weights_of_an_uninterrupted_run(cifar10_pickles, tmp_path):
    """Kill/resume, exactly: ResNet-20 on the generated CIFAR-10 (100 images, batches of 8: 13 steps an epoch,
    2 epochs) with ``deterministic: true``, mixup and cutmix (which draw from the global generators every step)
    and ``last.ckpt`` after every step, is SIGKILLed six times and resumed each time with ``--ckpt_path``:

    1. mid-epoch right after an optimiser step, before its checkpoint (the step is lost and redone);
    2. halfway through writing a checkpoint (half a temporary file on disk; last.ckpt stays the previous one);
    3. during validation at the end of an epoch;
    4. at the start of the next epoch, right after the end-of-epoch checkpoint;
    5. after a step's checkpoint is written, before that step's metrics row is logged;
    6. from outside, at whatever moment the run has reached once epoch 2 has checkpointed a few steps.

    It ends with the weights, BN statistics, metrics and run files of a run that was never interrupted.
    Restored by Lightning: model, optimiser, LR schedule, loops, callbacks; by ``CIFAR10DataModule.state_dict``:
    the loader's position; by ``ReseedEachBatch``: the random draws of each step; ``LastCheckpoint`` avoids the
    checkpoint Lightning resumes wrongly (after an epoch's last batch, before its validation). Not restored
    (docs/resume.md): the epoch-level training metrics of an interrupted epoch count only the batches after
    the resume, and the steps after the last checkpoint are computed again.
    """
    args = [
        "--config",
        str(REPO_ROOT / "configs/cifar10/resnet20.yaml"),
        "--data.data_dir",
        str(cifar10_pickles),
        "--data.batch_size",
        "8",
        "--model.mixup_alpha",
        "0.2",
        "--model.cutmix_alpha",
        "0.2",
        "--trainer.deterministic",
        "true",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    ]

    def start(folder: Path, kill: dict | None, resume: bool) -> subprocess.Popen:
        name = f"part{len(list(folder.glob('*.yaml')))}"
        last = folder / "runs/resnet20_a0/version_0/checkpoints/last.ckpt"
        argv, env = _killable_fit(folder, name, args, kill, last if resume else None)
        with open(folder / f"{name}.log", "w") as log:
            proc = subprocess.Popen(
                argv,
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, with the W&B service it starts
            )
        proc.log = folder / f"{name}.log"
        return proc

    def finish(proc: subprocess.Popen, killed: bool) -> None:
        try:
            proc.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the W&B service it started, if still there
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == (-signal.SIGKILL if killed else 0), proc.log.read_text()[-3000:]

    whole = tmp_path / "whole"
    finish(start(whole, None, resume=False), killed=False)

    killed = tmp_path / "killed"
    run = killed / "runs/resnet20_a0/version_0"
    steps = []
    kills = [
        dict(phase="step", step=5),
        dict(phase="write", step=9),
        dict(phase="validation", step=13),
        dict(phase="epoch_start", step=13),
        dict(phase="log", step=17),
    ]
    for i, kill in enumerate(kills):
        finish(start(killed, kill, resume=i > 0), killed=True)
        steps.append(torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["global_step"])
        if kill["phase"] == "write":  # half a checkpoint beside last.ckpt, which is the previous step's
            assert len(list((run / "checkpoints").glob(".last.ckpt.*.tmp"))) == 1
    # the last batch of an epoch is checkpointed after its validation; a step's checkpoint becomes last.ckpt
    # once its metrics row is logged
    assert steps == [4, 8, 12, 13, 16]
    wandb_id = json.loads((run / "summary.json").read_text())["wandb"]["id"]

    proc = start(killed, None, resume=True)  # 6: from outside, once epoch 2 has checkpointed a few steps
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        with contextlib.suppress(Exception):  # (the file is replaced, never torn, but may be missing a moment)
            if torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["global_step"] >= 19:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    finish(proc, killed=True)
    outside = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    assert 19 <= outside < 26

    finish(start(killed, None, resume=True), killed=False)
    reference, resumed = _state(whole / "runs/resnet20_a0/version_0"), _state(run)
    assert reference.keys() == resumed.keys()
    for name, value in resumed.items():
        torch.testing.assert_close(value, reference[name], msg=name)
    summary = json.loads((run / "summary.json").read_text())
    first = json.loads((whole / "runs/resnet20_a0/version_0/summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["global_step"] == 26
    assert summary["metrics"]["final"]["val/acc1"] == first["metrics"]["final"]["val/acc1"]
    assert [v.name for v in run.parent.iterdir()] == ["version_0"]  # every resume continued in the same folder
    assert summary["wandb"]["id"] == wandb_id  # and in the same W&B run

    def logged(folder: Path) -> list[tuple[str, ...]]:  # every step's and every validation's row, in order
        rows = _csv_rows(folder / "runs/resnet20_a0/version_0/metrics.csv")
        return [tuple(v for k, v in r.items() if k != "train/acc1") for r in rows if r["train/loss"] or r["val/acc1"]]

    assert logged(killed) == logged(whole)  # metrics.csv too: nothing lost, nothing logged twice
    assert {p.name.rsplit("-", 1)[-1] for p in (killed / "runs/wandb").glob("offline-run-*")} == {wandb_id}
    left = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert left[-1] == "last.ckpt" and len(left) == 2 and left[0].startswith("epoch")  # last + best, no temp file


def test_summary_commit_is_the_checkouts_head(tmp_path, monkeypatch):
    from octzoo.training.summary import _git_commit

    def git(*args):
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("commit", "-qm", "one")
    monkeypatch.chdir(tmp_path)
    head = git("rev-parse", "HEAD")
    assert _git_commit() == head
    (tmp_path / "f.txt").write_text("b")
    assert _git_commit() == head + "+dirty"


@pytest.mark.slow
def test_the_prepared_gpu_script_trains_the_three_published_models_and_packs_their_runs(cifar10_pickles, tmp_path):
    """scripts/gpu_cifar10.sh moved onto the CPU and cut to two tiny batches, with a time budget: a timed probe of
    the three runs set aside, then three finished runs on the GPU recipe for as many epochs as fit (here the two
    asked for), their records and last checkpoints in the archive, configs named relative to where it ran."""
    out = tmp_path / "out"
    cut = ["--trainer.accelerator", "cpu", "--trainer.max_epochs", "2", "--trainer.precision", "32-true"]
    cut += ["--data.batch_size", "8", "--data.num_workers", "0", "--data.persistent_workers", "false", *SHORT]
    env = dict(os.environ, PYTHON=sys.executable, PYTHONWARNINGS="ignore", OCTZOO_FIT_IN="900", OCTZOO_PROBE_S="10")
    env.pop("PYTEST_XDIST_WORKER", None)
    script = REPO_ROOT / "scripts" / "gpu_cifar10.sh"
    proc = subprocess.run(
        ["bash", str(script), str(cifar10_pickles), str(out), "--", *cut],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = "".join(p.read_text()[-2000:] for p in out.glob("*.log"))
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{logs}"
    with tarfile.open(out / "cifar10_gpu_runs.tar.gz") as tar:
        packed = set(tar.getnames())
    for run, alpha in [("resnet20_a0", 0.0), ("oct_resnet20_a0.25", 0.25), ("oct_resnet20_a0.5", 0.5)]:
        folder = f"runs/cifar10_gpu/{run}/version_0"
        for name in ("summary.json", "metrics.csv", "config.yaml", "checkpoints/last.ckpt"):
            assert f"{folder}/{name}" in packed
        summary = json.loads((tmp_path / folder / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["alpha"] == alpha
        assert summary["config"]["model"]["lr"] == 0.4 and summary["config"]["model"]["warmup_epochs"] == 5
        configs = [summary["command"][i + 1] for i, a in enumerate(summary["command"]) if a == "--config"]
        assert [Path(c).name for c in configs][-1] == "recipe_gpu.yaml"
        assert not any(Path(c).is_absolute() for c in configs)
        assert f"a{alpha}: finished, 2 epochs" in proc.stdout
        assert summary["config"]["trainer"]["max_epochs"] == 2
        probe = json.loads((tmp_path / f"runs/cifar10_gpu_probe/{run}/version_0/summary.json").read_text())
        assert probe["status"] == "finished" and probe["epochs"] >= 1 and probe["alpha"] == alpha
    assert "2 epochs fit in the rest" in proc.stdout
    assert not any("cifar10_gpu_probe" in name for name in packed)


def test_the_swa_recipe_keeps_the_average_of_its_epoch_start_weights_across_kills(cifar10_pickles, tmp_path):
    """configs/cifar10/recipe_swa.yaml from a published weight for 3 epochs of 2 steps: Lightning's
    StochasticWeightAveraging averages the weights at the start of each epoch (the published weight, then the
    weights after epochs 1 and 2), then a 4th, forward-only pass recomputes the batch-norm statistics of the
    average. Killed at the start of epochs 2 and 3 and resumed each time, the run ends with last.ckpt holding
    the mean of those three weights, the weights of a run never killed."""
    args = [
        "--config",
        str(REPO_ROOT / "configs/cifar10/resnet20.yaml"),
        "--config",
        str(REPO_ROOT / "configs/cifar10/recipe_swa.yaml"),
        "--model.pretrained",
        "cutout_e180_c10",
        "--data.data_dir",
        str(cifar10_pickles),
        "--data.batch_size",
        "8",
        "--trainer.deterministic",
        "true",
        "--trainer.max_epochs",
        "3",
        *SHORT,
    ]

    def fit(folder: Path, kill_after_step: int | None, resume: bool) -> subprocess.CompletedProcess:
        kill = dict(phase="epoch_start", step=kill_after_step) if kill_after_step else None
        last = folder / "runs/cifar10_swa/resnet20_a0/version_0/checkpoints/last.ckpt"
        argv, env = _killable_fit(folder, f"kill{kill_after_step}", args, kill, last if resume else None)
        return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert fit(whole, None, resume=False).returncode == 0
    start = {
        f"model.{k}": v
        for k, v in octzoo.create_model("resnet20.cutout_e180_c10", pretrained=True).state_dict().items()
    }
    after_epoch = []
    for i, step in enumerate((2, 4)):  # the start of the 2nd and 3rd epochs, before their averaging
        proc = fit(killed, step, resume=i > 0)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        after_epoch.append(_state(killed / "runs/cifar10_swa/resnet20_a0/version_0"))
    proc = fit(killed, None, resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = killed / "runs/cifar10_swa/resnet20_a0/version_0"
    final, reference = _state(run), _state(whole / "runs/cifar10_swa/resnet20_a0/version_0")
    weights = [f"model.{name}" for name, _ in octzoo.create_model("resnet20").named_parameters()]
    for name in weights:  # the batch-norm statistics are the 4th pass's, of the average
        assert not torch.equal(start[name], after_epoch[0][name]), f"{name}: the first epoch did not train it"
        mean = (start[name] + after_epoch[0][name] + after_epoch[1][name]) / 3
        torch.testing.assert_close(final[name], mean, msg=name)
    for name, value in final.items():
        torch.testing.assert_close(value, reference[name], msg=name)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 4  # 3 epochs and the batch-norm pass
