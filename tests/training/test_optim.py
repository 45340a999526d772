"""ImageClassifier's optimiser and schedule: the recipes' string shortcuts keep their recorded behaviour, and any
torch optimiser or scheduler can be injected (LightningCLI's class_path/init_args, or a callable in Python)."""

import functools
import typing
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import REPO_ROOT, quiet_trainer
from helpers import LrTrace, TinyData

from octzoo.cli_lightning import OctzooCLI, expand_bases
from octzoo.training import ImageClassifier
from octzoo.training.optim import OPTIMIZERS, SCHEDULES

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

# Recorded with the if/elif dispatch that preceded the tables (4 epochs of 4 steps): constructor arguments,
# optimiser and scheduler classes, per group (the hyperparameters octzoo sets, and the number of parameters)
# after the 16 steps, and the lr of every step.
RECORDED = {
    "sgd_cosine": (
        dict(lr=0.4, min_lr=0.004, warmup_epochs=1, nesterov=True, no_decay_norm_bias=True, weight_decay=1e-4),
        "SGD",
        "LambdaLR",
        [
            dict(lr=0.004, initial_lr=0.4, momentum=0.9, nesterov=True, weight_decay=0.0001, n=20),
            dict(lr=0.004, initial_lr=0.4, momentum=0.9, nesterov=True, weight_decay=0.0, n=39),
        ],
        [0.1, 0.2, 0.3, 0.4, 0.4, 0.393253313605236, 0.373473029949319, 0.342007142674936, 0.301,
         0.253246170930299, 0.202, 0.150753829069701, 0.103, 0.0619928573250636, 0.0305269700506811,
         0.0107466863947645],
    ),
    "sgd_cosine_default": (
        dict(),
        "SGD",
        "LambdaLR",
        [dict(lr=0.0, initial_lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0005, n=59)],
        [0.1, 0.0990392640201615, 0.0961939766255643, 0.0915734806151273, 0.0853553390593274,
         0.0777785116509801, 0.0691341716182545, 0.0597545161008064, 0.05, 0.0402454838991936,
         0.0308658283817455, 0.0222214883490199, 0.0146446609406726, 0.00842651938487273, 0.00380602337443566,
         0.000960735979838478],
    ),
    "sgd_step": (
        dict(lr=0.1, scheduler="step", milestones=[1, 3], gamma=0.1, warmup_epochs=0.5),
        "SGD",
        "LambdaLR",
        [dict(lr=0.001, initial_lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0005, n=59)],
        [0.05, 0.1, 0.1, 0.1] + [0.01] * 8 + [0.001] * 4,
    ),
    "sgd_none": (
        dict(lr=0.05, scheduler="none", momentum=0.8),
        "SGD",
        None,
        [dict(lr=0.05, momentum=0.8, nesterov=False, weight_decay=0.0005, n=59)],
        [0.05] * 16,
    ),
    "adamw_onecycle": (
        dict(optimizer="adamw", lr=0.01, scheduler="onecycle", no_decay_norm_bias=True),
        "AdamW",
        "OneCycleLR",
        [
            dict(lr=0.000195452608620941, initial_lr=0.0004, max_lr=0.01, weight_decay=0.0005, eps=1e-08, n=20),
            dict(lr=0.000195452608620941, initial_lr=0.0004, max_lr=0.01, weight_decay=0.0, eps=1e-08, n=39),
        ],
        [0.000399999999999999, 0.00194904845619644, 0.00559638085826719, 0.00898787444510269,
         0.00999213410655278, 0.00971941777387523, 0.00907780803357892, 0.00811745653949763, 0.0069134295081568,
         0.00555984014122702, 0.00416249223360078, 0.00283060998208699, 0.00166830043717154,
         0.000766415938342564, 0.000195452608620941, 4e-08],
    ),
    "adamw_cosine": (
        dict(optimizer="adamw", lr=0.003, scheduler="cosine", weight_decay=0.05, min_lr=1e-5),
        "AdamW",
        "LambdaLR",
        [dict(lr=1e-05, initial_lr=0.003, betas=(0.9, 0.999), weight_decay=0.05, eps=1e-08, n=59)],
        [0.003, 0.00297127399420283, 0.00288619990110437, 0.00274804707039231, 0.00256212463787389,
         0.00233557749836431, 0.00207711173138581, 0.00179666003141411, 0.001505, 0.00121333996858589,
         0.000932888268614191, 0.000674422501635695, 0.000447875362126112, 0.000261952929607695,
         0.000123800098895626, 3.87260057971705e-05],
    ),
}  # fmt: skip
STATE_KEYS = {"SGD": {"momentum_buffer"}, "AdamW": {"exp_avg", "exp_avg_sq", "step"}}


def run_schedule(model: ImageClassifier, steps: int = 16, epochs: int = 4) -> tuple[dict, list[list[float]]]:
    """configure_optimizers under a stand-in trainer, then ``steps`` optimiser and per-iteration schedule steps
    on the gradients of one batch; returns Lightning's config and the lrs of every group before each step."""
    model.trainer = SimpleNamespace(estimated_stepping_batches=steps, max_epochs=epochs)
    config = model.configure_optimizers()
    opt, sched = config["optimizer"], config.get("lr_scheduler")
    torch.manual_seed(0)
    model(torch.randn(2, 3, 8, 8)).logsumexp(-1).sum().backward()
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if sched is not None:
            sched["scheduler"].step()
    return config, lrs


@pytest.mark.parametrize("name", RECORDED)
def test_the_string_shortcuts_keep_their_recorded_optimiser_groups_and_lrs(name):
    kwargs, opt_cls, sched_cls, groups, lrs = RECORDED[name]
    config, got = run_schedule(ImageClassifier("resnet20", **kwargs))
    opt = config["optimizer"]
    assert type(opt).__name__ == opt_cls
    assert len(opt.param_groups) == len(groups)
    for group, recorded in zip(opt.param_groups, groups, strict=True):
        assert len(group["params"]) == recorded["n"]
        for key in recorded.keys() - {"n"}:
            assert group[key] == pytest.approx(recorded[key]), key
    assert all(STATE_KEYS[opt_cls] == set(state) for state in opt.state.values()) and len(opt.state) == 59
    if sched_cls is None:
        assert "lr_scheduler" not in config
    else:
        assert type(config["lr_scheduler"]["scheduler"]).__name__ == sched_cls
        assert config["lr_scheduler"]["interval"] == "step"  # every iteration
    for step_lrs in got:
        assert len(set(step_lrs)) == 1  # every group follows the same schedule
    assert [step_lrs[0] for step_lrs in got] == pytest.approx(lrs, rel=1e-12, abs=1e-15)


def test_the_shortcut_tables_are_the_names_the_cli_accepts():
    hints = typing.get_type_hints(ImageClassifier.__init__)
    literal_names = [typing.get_args(hints[arg])[0] for arg in ("optimizer", "scheduler")]
    assert [typing.get_args(lit) for lit in literal_names] == [tuple(OPTIMIZERS), tuple(SCHEDULES)]


def _cli(tmp_path, monkeypatch, model: dict, *extra: str) -> OctzooCLI:
    """``octzoo fit`` in-process on a resnet20 config with ``model`` laid over it, one training step."""
    monkeypatch.chdir(tmp_path)  # whatever the run writes stays in tmp_path
    config = REPO_ROOT / "configs/cifar10/resnet20.yaml"
    overlay = yaml.safe_dump({"model": model})
    args = ["fit", "--config", str(config), "--config", overlay, "--data.batch_size", "8", "--trainer.logger", "false"]
    return OctzooCLI(
        ImageClassifier,
        args=expand_bases([*args, "--trainer.fast_dev_run", "1", *extra]),
        subclass_mode_data=True,
        auto_configure_optimizers=False,
    )


def test_a_config_names_any_torch_optimiser_and_scheduler(cifar10_pickles, tmp_path, monkeypatch):
    rmsprop = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": 0.01, "momentum": 0.5}}
    step_lr = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3, "gamma": 0.5}}
    cli = _cli(
        tmp_path, monkeypatch, {"optimizer": rmsprop, "scheduler": step_lr}, "--data.data_dir", str(cifar10_pickles)
    )
    assert cli.trainer.global_step == 1  # it trained a step
    opt = cli.trainer.optimizers[0]
    assert type(opt) is torch.optim.RMSprop
    assert [(g["lr"], g["momentum"]) for g in opt.param_groups] == [(0.01, 0.5)]
    assert len(opt.state) == len(list(cli.model.parameters()))  # every parameter stepped
    (config,) = cli.trainer.lr_scheduler_configs
    assert type(config.scheduler) is torch.optim.lr_scheduler.StepLR and config.interval == "epoch"
    assert (config.scheduler.step_size, config.scheduler.gamma) == (3, 0.5)
    # the hyperparameters keep plain data: a checkpoint reloads with its optimiser and scheduler
    hp = cli.model.hparams
    assert hp.optimizer["class_path"] == "torch.optim.RMSprop" and hp.optimizer["init_args"]["lr"] == 0.01
    assert hp.scheduler["class_path"] == "torch.optim.lr_scheduler.StepLR"
    cli.trainer.save_checkpoint(tmp_path / "rmsprop.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "rmsprop.ckpt", weights_only=True)
    config, _ = run_schedule(loaded, steps=1)
    assert type(config["optimizer"]) is torch.optim.RMSprop and config["optimizer"].param_groups[0]["lr"] == 0.01
    assert type(config["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.StepLR
    assert loaded.hparams.optimizer["init_args"]["momentum"] == 0.5  # plain data again, not a callable


def test_the_command_line_names_an_optimiser_by_its_class(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = REPO_ROOT / "configs/cifar10/resnet20.yaml"
    args = ["--config", str(config), "--data.data_dir", str(tmp_path), "--trainer.logger", "false"]
    args += ["--model.optimizer", "torch.optim.Adam", "--model.optimizer.lr", "0.003", "--model.scheduler", "none"]
    cli = OctzooCLI(
        ImageClassifier, run=False, args=expand_bases(args), subclass_mode_data=True, auto_configure_optimizers=False
    )
    config, _ = run_schedule(cli.model, steps=1)
    assert type(config["optimizer"]) is torch.optim.Adam and config["optimizer"].param_groups[0]["lr"] == 0.003
    assert "lr_scheduler" not in config


def test_an_injected_scheduler_steps_once_per_epoch(tmp_path):
    step_lr = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}}
    model = ImageClassifier("resnet20", lr=0.1, scheduler=step_lr)
    trace = LrTrace()
    quiet_trainer(tmp_path, epochs=3, callbacks=[trace], limit_val_batches=0).fit(model, TinyData())
    assert trace.lrs == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 4)
    assert model.hparams.scheduler == step_lr


def test_a_plateau_scheduler_watches_the_validation_loss(tmp_path):
    model = ImageClassifier("resnet20", scheduler=functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau))
    quiet_trainer(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=1).fit(model, TinyData())
    (config,) = model.trainer.lr_scheduler_configs
    assert config.monitor == "val/loss" and config.interval == "epoch"


def test_python_callables_are_kept_as_class_path_mappings(tmp_path):
    model = ImageClassifier("resnet20", optimizer=functools.partial(torch.optim.RMSprop, lr=0.02), scheduler="onecycle")
    assert model.hparams.optimizer == {"class_path": "torch.optim.rmsprop.RMSprop", "init_args": {"lr": 0.02}}
    config, lrs = run_schedule(model)
    assert type(config["optimizer"]) is torch.optim.RMSprop
    assert max(lr for (lr,) in lrs) == pytest.approx(0.02, rel=1e-2)  # the shortcut schedules scale its own lr
    trainer = quiet_trainer(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(ImageClassifier("resnet20", optimizer=torch.optim.RMSprop, scheduler="none"), TinyData())
    trainer.save_checkpoint(tmp_path / "class.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "class.ckpt", weights_only=True)
    assert type(run_schedule(loaded, steps=1)[0]["optimizer"]) is torch.optim.RMSprop
    lam = ImageClassifier("resnet20", optimizer=lambda params: torch.optim.Adam(params, lr=0.005))
    assert callable(lam.hparams.optimizer)  # not a class: kept as given (such a model does not pickle)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(optimizer="rmsprop"), "optimizer='rmsprop': use one of 'sgd', 'adamw' or a class"),
        (dict(scheduler="linear"), "scheduler='linear': use one of 'cosine', 'step', 'onecycle', 'none' or a class"),
        (dict(optimizer={"class_path": "torch.nn.Linear"}), "optimizer class_path 'torch.nn.Linear' is no subclass"),
    ],
)
def test_an_unknown_optimiser_or_schedule_is_refused_at_construction(kwargs, error):
    with pytest.raises(ValueError, match=error):
        ImageClassifier("resnet20", **kwargs)
