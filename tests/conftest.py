"""Fixtures that compose the real configs with Hydra's compose API, writing into tmp_path."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src import PROJECT_ROOT

CONFIG_DIR = PROJECT_ROOT / "configs"

# Keep tests quiet and fast: no config printing, small batches, CPU only.
FAST = ["extras.print_config=false", "trainer.accelerator=cpu"]


def compose_config(
    config_name: str, output_dir: Path, overrides: list[str] | None = None
) -> DictConfig:
    """Compose configs/<config_name> as `python src/<entry>.py` would, writing to output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name, overrides=overrides or [], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.paths.work_dir = os.getcwd()
        del cfg.hydra
    return cfg


@pytest.fixture
def train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose train.yaml with overrides (plus FAST) into a fresh folder under tmp_path."""
    count = 0

    def make(*overrides: str, fast: bool = True) -> DictConfig:
        nonlocal count
        count += 1
        out = tmp_path / f"run{count}"
        return compose_config("train.yaml", out, (FAST if fast else []) + list(overrides))

    return make


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def offline(monkeypatch):
    """Downloads fail as they do without internet, whether or not this machine has it."""
    import urllib.request
    from urllib.error import URLError

    import torch.hub

    def refuse(*args, **kwargs):
        raise URLError("network is unreachable (simulated by the test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)
