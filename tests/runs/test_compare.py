"""``octzoo compare`` on a run the suite trains for two steps, from its folder and from its W&B record."""

import csv
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, write_cifar_pickles
from helpers import read_wandb_records

import octzoo.runs.timing as timing
from octzoo.bench.measure import train_step_fn
from octzoo.cli import main as octzoo_main
from octzoo.data import CIFAR10DataModule
from octzoo.runs import aggregate, read_local_run, read_wandb_runs
from octzoo.runs.plots import _lines
from octzoo.runs.timing import _latency_spec, _throughput_spec, train_setup
from octzoo.training.bf16 import BF16Emulation

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Oct-ResNet-20 (alpha .25) on the 60-epoch recipe cut to one epoch of two tiny batches, tested after fit."""
    root = tmp_path_factory.mktemp("trained")
    data = write_cifar_pickles(tmp_path_factory.mktemp("data"))
    configs = [REPO_ROOT / "configs/cifar10/oct_resnet20.yaml", REPO_ROOT / "configs/cifar10/recipe_60ep.yaml"]
    args = [arg for c in configs for arg in ("--config", str(c))] + ["--data.data_dir", str(data)]
    args += ["--data.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    args += [
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    ]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "octzoo", "fit", *args, "--test_after_fit", "true"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    run = root / "runs/cifar10_60ep/oct_resnet20_a0.25/version_0"
    return run, json.loads((run / "summary.json").read_text())


def compare(*args: str) -> int:
    return octzoo_main(["compare", *args])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_real_run_gives_its_row_files_and_plots(trained, tmp_path, capsys):
    run, summary = trained
    assert summary["status"] == "finished" and summary["metrics"]["test"]
    assert compare(str(run.parent.parent), "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    top1 = 100 * summary["metrics"]["test"]["test/acc1"]
    top5 = 100 * summary["metrics"]["test"]["test/acc5"]
    # training top-1 of the last epoch, as the CSV logger wrote it (its one row with train/acc1)
    [train] = [100 * float(r["train/acc1"]) for r in read_csv(run / "metrics.csv") if r["train/acc1"]]
    assert (
        f"| cifar10 | oct_resnet20 | 0.25 | 1 | 0.270 M | 28.39 M | - | {top1:.2f} | {top5:.2f} | {train:.2f} | 1 | 0 "
        "| test |" in out
    )
    [row] = read_csv(tmp_path / "out/compare.csv")
    assert float(row["train_top1_mean"]) == pytest.approx(train, abs=1e-4) and row["train_top1_std"] == ""
    assert (row["model"], row["family"], row["alpha"], row["epochs"]) == ("oct_resnet20", "resnet20", "0.25", "1")
    assert (int(row["params"]), int(row["macs"])) == (269_722, 28_385_920)
    assert float(row["top1_mean"]) == pytest.approx(top1, abs=1e-4) and row["top1_std"] == ""
    assert (row["n"], row["seeds"], row["source"], row["runs"]) == ("1", "0", "test", str(run))
    for name in ("top1_vs_macs.png", "curves.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == PNG

    # the curves are the CSV logger's: two training steps, one validation epoch
    curves = read_local_run(run).curves()
    assert sorted(curves.train_loss) == [0, 1] and list(curves.val_acc1) == list(curves.train_acc1) == [0]
    assert curves.val_acc1[0] == pytest.approx(summary["metrics"]["final"]["val/acc1"])


def copy_run(run: Path, to: Path, changes: dict[tuple[str, ...], object] | None = None) -> Path:
    """The trained run folder copied (summary and metrics, no checkpoints), summary fields changed by key path."""
    to.mkdir(parents=True)
    shutil.copy(run / "metrics.csv", to / "metrics.csv")
    summary = json.loads((run / "summary.json").read_text())
    for path, value in (changes or {}).items():
        node = summary
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    summary["run_dir"] = str(to)
    (to / "summary.json").write_text(json.dumps(summary))
    return to


def test_seeds_duplicates_unfinished_datasets_and_missing_metrics(trained, tmp_path, capsys):
    run, summary = trained
    runs = tmp_path / "runs"
    real = summary["metrics"]["test"]["test/acc1"]
    a = copy_run(run, runs / "a")  # seed 0: the real run
    dup = copy_run(
        run, runs / "dup", {("updated_at",): "2000-01-01T00:00:00+00:00", ("metrics", "test", "test/acc1"): 0.9}
    )
    b = copy_run(run, runs / "b", {("seed",): 1, ("metrics", "test"): {"test/acc1": 0.5, "test/acc5": 0.75}})
    unfinished = copy_run(run, runs / "c", {("seed",): 2, ("status",): "interrupted", ("epochs",): 0})
    other_data = copy_run(run, runs / "d", {("data", "name"): "cifar100", ("data", "num_classes"): 100})
    no_metric = copy_run(run, runs / "e", {("alpha",): 0.5, ("metrics",): {"final": {}, "best": {}, "test": {}}})
    # ResNet-20: one run with test metrics, one without; the row takes the last validation epoch for both
    plain = {("model",): "resnet20", ("alpha",): 0.0, ("macs",): 40_551_040}
    p0 = copy_run(run, runs / "p0", {**plain, ("metrics", "final", "val/acc1"): 0.25})
    p1 = copy_run(
        run, runs / "p1", {**plain, ("seed",): 1, ("metrics", "test"): {}, ("metrics", "final", "val/acc1"): 0.35}
    )

    assert compare(str(runs), "--out", str(tmp_path / "out"), "--no-plots") == 0
    out = capsys.readouterr().out
    rows = {(r["dataset"], r["model"], r["alpha"]): r for r in read_csv(tmp_path / "out/compare.csv")}
    assert set(rows) == {
        ("cifar10", "oct_resnet20", "0.25"),
        ("cifar100", "oct_resnet20", "0.25"),
        ("cifar10", "oct_resnet20", "0.5"),
        ("cifar10", "resnet20", "0.0"),
    }
    seeds = rows["cifar10", "oct_resnet20", "0.25"]
    assert (seeds["n"], seeds["seeds"], seeds["source"]) == ("2", "0 1", "test")
    assert float(seeds["top1_mean"]) == pytest.approx(100 * (real + 0.5) / 2, abs=1e-4)
    assert float(seeds["top1_std"]) == pytest.approx(100 * statistics.stdev([real, 0.5]), abs=1e-4)
    assert seeds["runs"] == f"{a} {b}"  # the older duplicate of seed 0 is not averaged
    assert rows["cifar100", "oct_resnet20", "0.25"]["runs"] == str(other_data)  # never averaged with CIFAR-10
    missing = rows["cifar10", "oct_resnet20", "0.5"]
    assert (missing["n"], missing["without_metric"], missing["top1_mean"]) == ("0", "1", "")
    fallback = rows["cifar10", "resnet20", "0.0"]
    assert (fallback["source"], fallback["n"], fallback["seeds"]) == ("final", "2", "0 1")
    assert float(fallback["top1_mean"]) == pytest.approx(30.0, abs=1e-4)

    roles = {r["run"]: r for r in read_csv(tmp_path / "out/runs.csv")}
    assert roles[str(dup)]["role"] == "duplicate" and roles[str(unfinished)]["role"] == "unfinished"
    assert roles[str(no_metric)]["role"] == "without metric"
    assert (roles[str(p0)]["top1"], roles[str(p1)]["source"]) == ("25.0", "final")
    assert f"- dropped {dup} (seed 0), kept {a}" in out
    assert "| interrupted | cifar10 | oct_resnet20 | 0.25 | 2 | 0 of 1 |" in out and str(unfinished) in out
    assert f"- {no_metric}: no val, last epoch top-1" in out
    assert "| cifar10 | resnet20 | 0 | 1 | 0.270 M | 40.55 M | - | 30.00 ± 7.07 |" in out


def test_runs_of_other_settings_get_their_own_rows_and_paths_do_not(trained, tmp_path, capsys):
    """Same model, alpha, budget and seed: another augmentation or starting weight is another experiment (its own
    row, named in the settings column); another data path, worker count or split seed is the same one."""
    run, summary = trained
    runs = tmp_path / "runs"
    data = ("config", "data", "init_args")
    assert summary["config"]["data"]["init_args"]["augment"] == "standard"
    base = copy_run(run, runs / "base")
    moved = copy_run(
        run,
        runs / "moved",
        {(*data, "data_dir"): "elsewhere", (*data, "num_workers"): 7, (*data, "seed"): 3, ("updated_at",): "2000"},
    )
    cutout = copy_run(run, runs / "cutout", {(*data, "augment"): "cutout", ("metrics", "test", "test/acc1"): 0.5})
    started = copy_run(run, runs / "started", {("config", "model", "pretrained"): "a250_c10"})

    assert compare(str(runs), "--out", str(tmp_path / "out"), "--no-plots") == 0
    out = capsys.readouterr().out
    rows = {r["runs"]: r for r in read_csv(tmp_path / "out/compare.csv")}
    assert set(rows) == {str(base), str(cutout), str(started)}
    # arguments at their defaults (augment="standard", pretrained=False) are left out of the settings
    assert rows[str(base)]["settings"] == ""
    assert rows[str(cutout)]["settings"] == "data.augment=cutout"
    assert rows[str(started)]["settings"] == "model.pretrained=a250_c10"
    assert float(rows[str(cutout)]["top1_mean"]) == 50.0
    assert f"- dropped {moved} (seed 0), kept {base}" in out
    assert "| top-1 from | settings |" in out and "| test | data.augment=cutout |" in out

    # a record written before an argument existed is the experiment of one that leaves it at its default
    older = copy_run(run, runs / "older", {("seed",): 1})
    summary_path = older / "summary.json"
    older_summary = json.loads(summary_path.read_text())
    assert older_summary["config"]["model"].pop("compile") is False
    summary_path.write_text(json.dumps(older_summary))
    assert read_local_run(older).settings == read_local_run(base).settings
    assert compare(str(base), str(older), "--out", str(tmp_path / "older"), "--no-plots") == 0
    [row] = read_csv(tmp_path / "older/compare.csv")
    assert (row["n"], row["seeds"]) == ("2", "0 1")
    capsys.readouterr()

    # a thinner network is another row, labelled and timed with its width, not another setting
    thin = copy_run(run, runs / "thin", {("config", "model", "model_kwargs", "width_mult"): 0.5})
    assert compare(str(base), str(thin), "--out", str(tmp_path / "widths"), "--no-plots") == 0
    out = capsys.readouterr().out
    widths = {r["runs"]: r for r in read_csv(tmp_path / "widths/compare.csv")}
    assert (widths[str(thin)]["width_mult"], widths[str(base)]["width_mult"]) == ("0.5", "1")
    assert widths[str(thin)]["settings"] == "" and "| oct_resnet20 x0.5 |" in out
    thin_run, base_run = read_local_run(thin), read_local_run(base)
    assert _latency_spec(thin_run) != _latency_spec(base_run)

    # one row alone has nothing to tell apart: no settings column
    assert compare(str(base), "--out", str(tmp_path / "one"), "--no-plots") == 0
    assert "| top-1 from |\n" in capsys.readouterr().out
    assert read_csv(tmp_path / "one/compare.csv")[0]["settings"] == ""


def test_best_metric_takes_top5_at_the_best_epoch(trained, tmp_path, capsys):
    run, summary = trained
    assert compare(str(run), "--metric", "best", "--out", str(tmp_path), "--no-plots", "--latency") == 0
    [row] = read_csv(tmp_path / "compare.csv")
    best = summary["metrics"]["best"]["val/acc1"]
    assert row["source"] == "best" and float(row["top1_mean"]) == pytest.approx(100 * best["value"], abs=1e-4)
    assert float(row["top5_mean"]) == pytest.approx(100 * summary["metrics"]["final"]["val/acc5"], abs=1e-4)
    assert float(row["latency_ms"]) > 0
    assert "val, best epoch" in capsys.readouterr().out


def test_training_top1_is_read_at_the_epoch_top1_comes_from(trained, tmp_path, capsys):
    """Three epochs: validation top-1 30 / 60 / 50 %, training top-1 40 / 70 / 90 %. The last epoch's training
    top-1 sits beside the final (and test) top-1, the best validation epoch's beside the best; seeds average."""
    run, _ = trained
    epochs = [(0, 0.3, 0.4), (1, 0.6, 0.7), (2, 0.5, 0.9)]
    best = {"val/acc1": {"value": 0.6, "epoch": 1}}
    runs = [
        copy_run(run, tmp_path / f"s{seed}", {("seed",): seed, ("metrics", "best"): best, ("epochs",): 3})
        for seed in (0, 1)
    ]
    for folder, shift in zip(runs, (0.0, 0.02), strict=True):
        with (folder / "metrics.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "step", "train/acc1", "train/loss", "val/acc1", "val/acc5"])
            for epoch, val, train in epochs:
                w.writerow([epoch, 10 * epoch + 9, "", 1.0, "", ""])  # a step row
                w.writerow([epoch, 10 * epoch + 9, train + shift, "", "", ""])  # the epoch's training top-1
                w.writerow([epoch, 10 * epoch + 9, "", "", val, 0.9])
    for metric, train in (("final", 90.0), ("test", 90.0), ("best", 70.0)):
        assert compare(*map(str, runs), "--metric", metric, "--out", str(tmp_path / metric), "--no-plots") == 0
        [row] = read_csv(tmp_path / metric / "compare.csv")
        assert float(row["train_top1_mean"]) == pytest.approx(train + 1.0, abs=1e-4), metric
        assert float(row["train_top1_std"]) == pytest.approx(100 * statistics.stdev([0, 0.02]), abs=1e-4)
    # without the summary's best (a W&B record) the best epoch comes from the curve
    no_best = read_local_run(runs[0])
    no_best.metrics = {"final": {}, "best": {}, "test": {}}
    assert no_best.train_top1("best") == pytest.approx(0.7) and no_best.train_top1("final") == pytest.approx(0.9)
    assert "| train top-1 (%) |" in capsys.readouterr().out


def test_the_plot_draws_alphas_widths_and_a_plain_family_apart(trained, tmp_path):
    """Oct-ResNet-20 at two alphas, ResNet-20 at full and half width, and ResNet-14: the alpha line runs through
    ResNet-20 and its alphas, the width line from half width to the full-width point (unlabelled there: it is
    alpha 0 on the alpha line), and ResNet-14, a family without alphas, is a plain point named by its network."""
    run, _ = trained

    def top1(value: float) -> dict:
        return {("metrics", "test", "test/acc1"): value}

    plain = {("model",): "resnet20", ("alpha",): 0.0}
    folders = [
        copy_run(run, tmp_path / "a25", {("macs",): 28_000_000, **top1(0.5)}),
        copy_run(run, tmp_path / "a50", {("alpha",): 0.5, ("macs",): 19_000_000, **top1(0.4)}),
        copy_run(run, tmp_path / "r20", {**plain, ("macs",): 40_000_000, **top1(0.6)}),
        copy_run(
            run,
            tmp_path / "thin",
            {**plain, ("config", "model", "model_kwargs", "width_mult"): 0.5, ("macs",): 10_000_000, **top1(0.3)},
        ),
        copy_run(run, tmp_path / "r14", {("model",): "resnet14", ("alpha",): 0.0, ("macs",): 26_000_000, **top1(0.45)}),
    ]
    comparison = aggregate([read_local_run(f) for f in folders])
    lines = {line.label.split(" (")[0]: line for line in _lines(comparison, lambda row: row.first.macs / 1e6)}
    assert set(lines) == {"resnet20 by alpha", "resnet20 plain, by width", "resnet14 plain"}
    by_alpha, by_width, r14 = lines["resnet20 by alpha"], lines["resnet20 plain, by width"], lines["resnet14 plain"]
    assert [(x, round(y, 4), text) for x, y, _, text in by_alpha.points] == [
        (40.0, 60.0, "α=0"),
        (28.0, 50.0, "α=0.25"),
        (19.0, 40.0, "α=0.5"),
    ]
    assert [(x, round(y, 4), text) for x, y, _, text in by_width.points] == [(10.0, 30.0, "x0.5"), (40.0, 60.0, None)]
    assert [(x, round(y, 4), text) for x, y, _, text in r14.points] == [(26.0, 45.0, "resnet14")]
    assert (by_alpha.marker, by_width.marker, r14.marker) == ("o", "s", "o")
    assert r14.label == "resnet14 plain (cifar10, 1 ep; test)"


def test_throughput_is_measured_as_each_run_trained(trained, tmp_path, monkeypatch, capsys):
    """--throughput times one SGD step per network with the batch, precision and memory format its runs trained
    with (the trained run: batch 8, bf16-mixed, channels_last); a run of another batch or precision is timed as
    such, and a thinner network as itself; the numbers reach the table, compare.csv and their own plot."""
    run, summary = trained
    runs = tmp_path / "runs"
    base = copy_run(run, runs / "base")
    data = ("config", "data", "init_args")
    fp32 = copy_run(
        run,
        runs / "fp32",
        {("config", "trainer", "precision"): "32-true", ("config", "model", "channels_last"): False}
        | {(*data, "batch_size"): 4, ("alpha",): 0.5, ("config", "model", "model_kwargs", "alpha"): 0.5},
    )
    thin = copy_run(run, runs / "thin", {("config", "model", "model_kwargs", "width_mult"): 0.5})
    assert summary["config"]["trainer"]["precision"] == "bf16-mixed"
    assert train_setup(read_local_run(base)) == (8, 32, True, True)
    unset = copy_run(run, runs.parent / "unset")  # a config without the batch: the DataModule's default
    record = json.loads((unset / "summary.json").read_text())
    del record["config"]["data"]["init_args"]["batch_size"]
    (unset / "summary.json").write_text(json.dumps(record))
    default = inspect.signature(CIFAR10DataModule).parameters["batch_size"].default
    assert read_local_run(unset).batch_size == default and train_setup(read_local_run(unset))[0] == default
    assert train_setup(read_local_run(fp32)) == (4, 32, False, False)
    assert _throughput_spec(read_local_run(thin)) != _throughput_spec(read_local_run(base))

    steps = []

    def recording(model, batch, side, dtype, channels_last):
        stem = next(p for p in model.parameters() if p.dim() == 4)  # the first convolution's weight
        in_memory = stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
        steps.append((stem.shape[0], batch, side, dtype, channels_last, in_memory))
        return train_step_fn(model, batch, side, dtype=dtype, channels_last=channels_last)

    monkeypatch.setattr(timing, "train_step_fn", recording)
    threads = torch.get_num_threads()
    assert compare(str(runs), "--throughput", "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads
    assert sorted(steps, key=str) == sorted(
        [(16, 8, 32, torch.bfloat16, True, True), (16, 4, 32, torch.float32, False, False)]
        + [(8, 8, 32, torch.bfloat16, True, True)],  # width 0.5: a stem of 8 channels
        key=str,
    )
    rows = {r["runs"]: r for r in read_csv(tmp_path / "out/compare.csv")}
    assert set(rows) == {str(base), str(fp32), str(thin)}
    assert all(float(r["train_img_s"]) > 0 for r in rows.values())
    assert "| CPU latency (ms) | train img/s | top-1 (%) |" in out
    assert (tmp_path / "out/top1_vs_throughput.png").read_bytes()[:8] == PNG

    # without --throughput: no column, an empty CSV cell, no plot
    assert compare(str(base), "--out", str(tmp_path / "plain"), "--no-plots") == 0
    assert "train img/s" not in capsys.readouterr().out
    assert read_csv(tmp_path / "plain/compare.csv")[0]["train_img_s"] == ""


def test_throughput_emulates_bf16_where_the_cpu_lacks_its_kernels(trained, tmp_path, monkeypatch):
    """On a CPU without bfloat16 kernels octzoo fit trains bf16-mixed through BF16Emulation; --throughput times
    the steps of a bf16 run the same way (every step, the untimed first one too), and a float32 run's without it."""
    run, _ = trained
    fp32 = copy_run(run, tmp_path / "fp32", {("config", "trainer", "precision"): "32-true", ("seed",): 1})
    rows = aggregate([read_local_run(run), read_local_run(fp32)]).rows
    assert len(rows) == 2

    class Counting(BF16Emulation):
        entered = 0

        def __enter__(self):
            Counting.entered += 1
            return super().__enter__()

    monkeypatch.setattr(timing, "BF16Emulation", Counting)
    monkeypatch.setattr(timing, "cpu_has_fast_bf16", lambda: False)
    assert timing.measure_throughput(rows, repeats=2, warmup=0) == []
    assert Counting.entered == 1 + 2  # the bf16 row: its first step and two timed ones
    assert all(row.train_img_s > 0 for row in rows)


class FakeWandbRun:
    """A run as wandb.Api returns it, filled from the run's offline W&B log (what `wandb sync` uploads)."""

    def __init__(self, wandb_file: Path):
        self.config, self.summary, self.rows = {}, {}, []
        for record in read_wandb_records(wandb_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.id, self.name, self.group = record.run.run_id, record.run.display_name, record.run.run_group
                self.tags, self.created_at = list(record.run.tags), record.run.start_time.ToJsonString()
            elif kind == "config":
                self.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
            elif kind == "history":
                self.rows.append({_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "summary":
                self.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
            elif kind == "exit":
                self.state = "finished" if record.exit.exit_code == 0 else "failed"

    def history(self, samples=500, keys=None, x_axis="_step", pandas=True, stream="default"):
        assert not pandas, "pandas is not installed with octzoo: the real call would warn and hand back rows anyway"
        rows = [r for r in self.rows if all(k in r for k in keys or [])]
        rows = [{k: r[k] for k in [*keys, "_step"]} for r in rows] if keys else rows
        step = max(1, -(-len(rows) // samples))
        return rows[::step]


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


class FakeApi:
    """``wandb.Api()`` for one project: ``runs(path, filters)`` with the filter forms W&B documents."""

    calls: list = []

    def __init__(self, runs, project="team/octzoo"):
        self._runs, self._project = runs, project

    def runs(self, path=None, filters=None, order="+created_at", per_page=50, include_sweeps=False, lazy=True):
        if path != self._project:
            raise ValueError(f"Could not find project {path}")
        FakeApi.calls.append(filters)
        return [r for r in self._runs if _matches(r, filters or {})]


def _matches(run, filters) -> bool:
    for key, cond in filters.items():
        if key == "$and":
            ok = all(_matches(run, c) for c in cond)
        elif key == "group":
            ok = run.group == cond
        elif key == "tags" and set(cond) == {"$in"}:
            ok = bool(set(run.tags) & set(cond["$in"]))
        else:
            raise NotImplementedError(f"filter {key}: {cond} is not one the fake understands")
        if not ok:
            return False
    return True


def test_wandb_project_gives_the_same_row_as_the_run_folder(trained, tmp_path, monkeypatch, capsys):
    import wandb

    run, summary = trained
    [log] = run.parent.parent.glob("wandb/offline-run-*/run-*.wandb")
    fake = FakeWandbRun(log)
    assert fake.id == summary["wandb"]["id"] and fake.state == "finished"
    monkeypatch.setattr(wandb, "Api", lambda *a, **k: FakeApi([fake]))

    FakeApi.calls.clear()
    args = ["--wandb", "team/octzoo", "--group", "cifar10_60ep", "--tag", "oct_resnet20", "--tag", "alpha=0.25"]
    assert compare(*args, "--out", str(tmp_path / "wandb")) == 0
    assert FakeApi.calls == [
        {"group": "cifar10_60ep", "$and": [{"tags": {"$in": ["oct_resnet20"]}}, {"tags": {"$in": ["alpha=0.25"]}}]}
    ]
    assert compare(str(run), "--out", str(tmp_path / "local"), "--no-plots") == 0
    [remote] = read_csv(tmp_path / "wandb/compare.csv")
    [local] = read_csv(tmp_path / "local/compare.csv")
    assert remote.pop("runs") == f"team/octzoo/{fake.id}" and local.pop("runs") == str(run)
    assert remote == local
    [[remote_run], _] = read_wandb_runs("team/octzoo")
    assert remote_run.batch_size == read_local_run(run).batch_size == 8
    precision = dict(remote_run.settings)["trainer.precision"]
    assert precision == dict(read_local_run(run).settings)["trainer.precision"] == '"bf16-mixed"'
    assert (tmp_path / "wandb/curves.png").read_bytes()[:8] == PNG
    capsys.readouterr()

    # a filter that matches nothing, and a project that does not exist
    assert compare("--wandb", "team/octzoo", "--group", "other", "--no-plots", "--out", str(tmp_path)) == 2
    assert "no runs found in W&B project team/octzoo with group 'other'" in capsys.readouterr().err
    assert compare("--wandb", "team/nothing", "--no-plots", "--out", str(tmp_path)) == 2
    assert "Could not find project team/nothing" in capsys.readouterr().err


def test_refusals_name_the_fix(tmp_path, monkeypatch, capsys):
    assert compare(str(tmp_path / "missing")) == 2
    assert "no such file or folder; pass run folders" in capsys.readouterr().err
    assert compare(str(tmp_path), "--no-plots", "--out", str(tmp_path / "out")) == 2
    assert "no runs found in" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert compare(str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "the plots need matplotlib: pip install 'octzoo[bench]'" in err and "or pass --no-plots" in err
    with pytest.raises(SystemExit):
        compare("--wandb", "octzoo")
    assert "--wandb takes ENTITY/PROJECT" in capsys.readouterr().err
