"""Every config composes, and every model x optimizer x scheduler runs one fast_dev_run step."""

import itertools

import pytest
from hydra.utils import instantiate

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
