"""Values a run finds once it starts (what data.image_size, mean and std=auto found), written
into the config Hydra saved in .hydra/config.yaml before they were known."""

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from src.core.files import write_atomically


def record_in_saved_config(values: dict[str, Any]) -> None:
    """Set each dotted key of values in this run's .hydra/config.yaml, if Hydra wrote one (not on
    other ranks, nor in a folder resume=auto continues, whose config stays as it started)."""
    if not values or not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    folder = OmegaConf.select(hydra, "runtime.output_dir")  # missing under the compose API
    if not folder or not hydra.output_subdir:
        return
    path = Path(folder) / hydra.output_subdir / "config.yaml"
    if not path.is_file():
        return
    saved = OmegaConf.load(path)
    for key, value in values.items():
        OmegaConf.update(saved, key, value, force_add=True)
    write_atomically(path, lambda partial: OmegaConf.save(saved, partial))
