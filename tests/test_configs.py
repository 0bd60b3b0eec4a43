"""Every config composes as the README says, presets set what they promise, and every model,
optimizer and scheduler meets every other one pairwise in a fast_dev_run step."""

import math
import re

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src import PROJECT_ROOT
from src.cli.resolvers import gpu_mixed_precision, sweep_job_dir
from src.train import train
from tests.conftest import compose_with_hydra

CONFIGS = PROJECT_ROOT / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def readme_groups() -> dict[str, list[str]]:
    """The README's table of config groups: group -> the options its row names."""
    rows = re.findall(r"^\| `([\w/]+)` \| (.+?) \|", (PROJECT_ROOT / "README.md").read_text(), re.M)
    return {group: re.findall(r"`(\w+)`", names) for group, names in rows}


def test_the_readme_names_every_option_of_every_group():
    groups = readme_groups()
    assert {"data", "model", "optimizer", "scheduler", "trainer", "callbacks"} <= set(groups)
    for group, named in groups.items():
        folder = "hydra/launcher" if group == "hydra/launcher" else group
        files = set(options(folder))
        if group == "hydra/launcher":
            files |= {"basic", "joblib", "submitit_local"}  # Hydra's own and the plugins'
        if group == "debug":
            files.discard("default")  # what every debug preset shares, not a preset
        if group == "callbacks":  # the README names the lists and the optional ones
            files -= {"model_checkpoint", "early_stopping", "epoch_time", "augmented_images"}
            files -= {"test_figures", "rich_progress_bar", "rich_model_summary", "rng_state"}
            files -= {"loss_chart"}
        assert set(named) == files, group


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose_and_build_model(train_cfg, experiment):
    # an image folder's classes come from the folder, which train.py reads first; no downloads
    folder = ["data.task=multiclass", "data.num_classes=3", "data.class_names=[a,b,c]"]
    folder.append("data.channels=3")  # what train.py finds in the folder
    extra = folder if experiment.startswith("image_folder") else []
    extra += ["model.net.weights=null"] if experiment == "image_folder_finetune" else []
    cfg = train_cfg(f"experiment={experiment}", *extra)
    model = instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )
    assert model.hparams.num_classes == cfg.data.num_classes


# What each debug preset promises, besides a CPU run in logs/debug/.
DEBUG_PRESETS = {
    "fdr": ("fast_dev_run", True),
    "overfit": ("overfit_batches", 3),
    "limit": ("limit_train_batches", 0.1),
    "profiler": ("profiler", "simple"),
}


@pytest.mark.parametrize("preset", sorted(DEBUG_PRESETS))
def test_debug_presets_run_short_on_the_cpu(train_cfg, preset):
    cfg = train_cfg(f"debug={preset}", fast=False)  # nothing else sets the accelerator
    key, value = DEBUG_PRESETS[preset]
    assert (cfg.task_name, cfg.trainer.accelerator, cfg.trainer[key]) == ("debug", "cpu", value)


# GPU: mixed precision as this machine's GPU computes it (bf16-mixed from Ampere on, else
# 16-mixed; the rule itself: tests/test_lean_training.py)
TRAINER_PRESETS = {
    "cpu": ("cpu", 1, "32-true", "auto"),
    "gpu": ("gpu", 1, "gpu mixed", "auto"),
    "mps": ("mps", 1, "32-true", "auto"),
    "ddp": ("gpu", 2, "gpu mixed", "ddp"),
    "ddp_cpu": ("cpu", 2, "32-true", "ddp"),
}


@pytest.mark.parametrize("preset", sorted(TRAINER_PRESETS))
def test_trainer_presets_set_their_device_precision_and_strategy(train_cfg, preset):
    trainer = train_cfg(f"trainer={preset}", fast=False).trainer
    found = (trainer.accelerator, trainer.devices, trainer.precision, trainer.get("strategy"))
    accelerator, devices, precision, strategy = TRAINER_PRESETS[preset]
    precision = gpu_mixed_precision() if precision == "gpu mixed" else precision
    assert found == (accelerator, devices, precision, strategy)


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_the_gpu_presets_follow_the_gpus_bfloat16_support(train_cfg, monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    for preset in ("gpu", "ddp"):
        assert train_cfg(f"trainer={preset}", fast=False).trainer.precision == expected


def pairwise() -> list[tuple[str, str, str]]:
    """Every optimizer with every scheduler, the models taking turns along the schedulers, so
    every model meets every optimizer (their parameter groups) and several schedulers."""
    models, optimizers, schedulers = options("model"), options("optimizer"), options("scheduler")
    return [(models[j % len(models)], o, s) for o in optimizers for j, s in enumerate(schedulers)]


def test_the_pairs_cover_every_model_optimizer_and_scheduler_pair():
    rows = pairwise()
    models, optimizers, schedulers = options("model"), options("optimizer"), options("scheduler")
    assert {(o, s) for _, o, s in rows} == {(o, s) for o in optimizers for s in schedulers}
    assert {(m, o) for m, o, _ in rows} == {(m, o) for m in models for o in optimizers}


@pytest.mark.parametrize(("model", "optimizer", "scheduler"), pairwise())
def test_model_optimizer_and_scheduler_run_a_step(train_cfg, model, optimizer, scheduler):
    cfg = train_cfg(
        f"model={model}",
        f"optimizer={optimizer}",
        f"scheduler={scheduler}",
        "debug=fdr",
        "trainer.max_epochs=3",  # schedules are built for 3 epochs; fast_dev_run runs 1 batch
        "data.batch_size=4",
        "trainer.detect_anomaly=false",
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"])
    if scheduler == "onecycle":  # stepped every batch: one step of fast_dev_run ends its cycle
        assert 0 < metrics["train/lr"] < cfg.optimizer.lr / cfg.scheduler.div_factor
        return
    # the first epoch's learning rate: the optimizer's, or a warm-up's first fraction of it
    start = cfg.optimizer.lr * (cfg.scheduler.warmup_start_factor if "warmup" in scheduler else 1)
    assert metrics["train/lr"] == pytest.approx(start)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.precision=bf16-mixed"], {"precision": "bf16-mixed"}),
        (
            ["trainer.gradient_clip_val=0.5", "trainer.accumulate_grad_batches=2"],
            {"gradient_clip_val": 0.5, "accumulate_grad_batches": 2},
        ),
        (["trainer.deterministic=true"], {"deterministic": True}),
    ],
)
def test_trainer_settings_are_plain_overrides(train_cfg, overrides, expected):
    cfg = train_cfg(*overrides, "debug=fdr", "trainer.detect_anomaly=false")
    try:
        trainer = instantiate(cfg.trainer)
        found = {
            "precision": trainer.precision,
            "gradient_clip_val": trainer.gradient_clip_val,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
        }
        assert {key: found[key] for key in expected} == expected
        assert math.isfinite(train(cfg)["train/loss"])
    finally:
        torch.use_deterministic_algorithms(False)  # Lightning sets it for the whole process


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [([], "max"), (["monitor=val/loss"], "min"), (["data=digits_multilabel"], "max")],
)
def test_checkpoint_and_early_stopping_follow_the_monitors_direction(train_cfg, overrides, mode):
    callbacks = train_cfg(*overrides).callbacks
    assert callbacks.model_checkpoint.mode == callbacks.early_stopping.mode == mode


def test_a_callbacks_own_monitor_sets_its_mode(train_cfg):
    cfg = train_cfg("callbacks.early_stopping.monitor=val/loss", "scheduler=plateau")
    assert (cfg.callbacks.early_stopping.mode, cfg.callbacks.model_checkpoint.mode) == (
        "min",
        "max",
    )
    assert cfg.scheduler.mode == "min"
    assert train_cfg("scheduler=plateau", "scheduler.monitor=val/f1").scheduler.mode == "max"


def test_a_plain_multirun_uses_the_grid_sweeper_and_names_jobs_by_overrides():
    cfg = compose_with_hydra()
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.template_sweepers.GridSweeper"
    subdir = OmegaConf.to_container(cfg.hydra.sweep)["subdir"]
    assert subdir.startswith("${sweep_job_dir:${hydra.job.num},${hydra.overrides.task}}")
    overrides = [
        "paths.log_dir=/tmp/x",  # where, not what: left out, like callbacks and extras
        "optimizer=sgd",
        "~callbacks.rng_state",
        "+data.root=a/b",
        "optimizer.weight_decay=0.000123456",
        "extras.print_config=false",
        "optimizer.lr=0.01",
    ]
    name = "3_data.root=a-b,optimizer.lr=0.01,optimizer.weight_decay=0.0001235,optimizer=sgd"
    assert sweep_job_dir(3, overrides) == name
    many = sorted(f"x{i}=1" for i in range(100))
    long = sweep_job_dir(0, many)
    kept = long.removeprefix("0_").split(",")
    assert kept == many[: len(kept)]  # whole overrides only
    assert len(long) <= 120 < len(long) + len("," + many[len(kept)])


@pytest.mark.parametrize(
    ("overrides", "study", "direction"),
    [
        ([], "digits-cnn", "max"),
        (["data=cifar10"], "cifar10-cnn", "max"),
        (["data=digits_multilabel"], "digits_multilabel-cnn", "max"),
        (["optimized_metric=val/loss_best"], "digits-cnn", "min"),
        (["monitor=val/loss"], "digits-cnn", "min"),
    ],
)
def test_the_optuna_search_follows_the_data_and_the_optimized_metric(overrides, study, direction):
    cfg = compose_with_hydra("hparams_search=optuna", *overrides)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.template_sweepers.OptunaSweeper"
    assert (sweeper.study_name, sweeper.direction) == (study, direction)
    assert cfg.hydra.sweep.dir.endswith(f"/train/searches/{study}")
    assert cfg.callbacks.optuna_pruning.metric == cfg.optimized_metric  # what the study ranks


def test_the_slurm_launcher_submits_with_submitit_and_keeps_slurms_logs_in_the_sweep():
    """(What each job's sbatch script asks for: tests/test_preemption.py.)"""
    cfg = compose_with_hydra("hydra/launcher=slurm")
    launcher = cfg.hydra.launcher
    assert (
        launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # as documented
