"""Every config composes, and every model x optimizer x scheduler runs one fast_dev_run step."""

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from src import PROJECT_ROOT
from src.train import train

CONFIGS = PROJECT_ROOT / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_groups_hold_the_options_the_readme_names():
    assert options("model") == ["cnn", "resnet50"]
    assert options("optimizer") == ["adam", "adamw", "rmsprop", "sgd"]
    assert {"none", "step", "multistep", "cosine", "plateau", "warmup_cosine"} <= set(
        options("scheduler")
    )
    assert {"default", "cpu", "gpu", "mps", "ddp", "ddp_cpu"} <= set(options("trainer"))
    assert {"digits_cnn", "cifar10_cnn", "cifar10_resnet50"} <= set(options("experiment"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose_and_build_model(train_cfg, experiment):
    cfg = train_cfg(f"experiment={experiment}")
    assert cfg.trainer.max_epochs > 1
    model = instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )
    assert model.hparams.num_classes == cfg.data.num_classes


@pytest.mark.parametrize("preset", ["fdr", "overfit", "limit", "profiler"])
def test_debug_presets_compose(train_cfg, preset):
    cfg = train_cfg(f"debug={preset}")
    assert cfg.task_name == "debug"
    assert cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "mps", "ddp", "ddp_cpu"])
def test_trainer_presets_compose(train_cfg, trainer):
    cfg = train_cfg(f"trainer={trainer}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"


@pytest.mark.parametrize(
    ("model", "optimizer", "scheduler"),
    list(itertools.product(options("model"), options("optimizer"), options("scheduler"))),
)
def test_every_combination_runs_a_step(train_cfg, model, optimizer, scheduler):
    cfg = train_cfg(
        f"model={model}",
        f"optimizer={optimizer}",
        f"scheduler={scheduler}",
        "debug=fdr",
        "data.batch_size=4",
        "trainer.detect_anomaly=false",
    )
    metrics = train(cfg)
    assert metrics["train/loss"] > 0
    assert "test/acc" in metrics


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.precision=bf16-mixed"],
        ["trainer.gradient_clip_val=0.5", "trainer.accumulate_grad_batches=2"],
        ["trainer.deterministic=true", "seed=0"],
    ],
)
def test_trainer_settings_are_plain_overrides(train_cfg, overrides):
    metrics = train(train_cfg(*overrides, "debug=fdr", "trainer.detect_anomaly=false"))
    assert metrics["train/loss"] > 0


def compose_with_hydra(*overrides: str) -> DictConfig:
    """train.yaml with its hydra node, as the sweepers and launchers receive it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        return compose("train.yaml", overrides=list(overrides), return_hydra_config=True)


def test_a_plain_multirun_uses_the_grid_sweeper_and_names_jobs_by_overrides():
    cfg = compose_with_hydra()
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.template_sweepers.GridSweeper"
    assert "optimizer.lr" not in cfg.hydra.job.config.override_dirname.exclude_keys
    assert "paths.log_dir" in cfg.hydra.job.config.override_dirname.exclude_keys


@pytest.mark.parametrize(("data", "direction"), [("digits", "maximize"), ("cifar10", "maximize")])
def test_the_optuna_search_follows_the_data_and_the_optimized_metric(data, direction):
    cfg = compose_with_hydra("hparams_search=optuna", f"data={data}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.template_sweepers.OptunaSweeper"
    assert sweeper.study_name == f"{data}-cnn" and sweeper.direction == direction
    assert sweeper.sampler.seed == 42 and "MedianPruner" in sweeper.pruner._target_
    assert set(sweeper.params) == {
        "optimizer",
        "optimizer.lr",
        "optimizer.weight_decay",
        "data.batch_size",
        "scheduler",
    }
    assert cfg.hydra.sweep.dir.endswith(f"/train/searches/{data}-cnn")
    assert cfg.optimized_metric == "val/acc_best"
    assert cfg.callbacks.optuna_pruning.monitor == "val/acc"
    losing = compose_with_hydra("hparams_search=optuna", "optimized_metric=val/loss")
    assert losing.hydra.sweeper.direction == "minimize"


def test_the_slurm_launcher_is_submitit_with_our_defaults():
    cfg = compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
    assert launcher.submitit_folder.endswith(".submitit/%j")


def test_the_joblib_launcher_runs_jobs_in_parallel():
    cfg = compose_with_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 2
