"""Evaluate a checkpoint on the test split of the data it was trained on.

    python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt [data.batch_size=256]

The model and the data settings come from the checkpoint; `data.KEY=VALUE` changes one of them.
"""

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from src.callbacks.run_config import RUN_CONFIG_KEY
from src.utils.checkpoint import allow_data_overrides, classifier_from_checkpoint, read_checkpoint
from src.utils.instantiators import instantiate_loggers
from src.utils.rich_utils import print_confusion_matrix
from src.utils.run import (
    apply_extras,
    hydra_errors_on_one_line,
    keep_file_logs_on_rank_zero,
    report_user_errors,
)

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint at `ckpt_path` and return its test metrics."""
    checkpoint = read_checkpoint(cfg.get("ckpt_path"), map_location="cpu")
    trained = OmegaConf.create(checkpoint[RUN_CONFIG_KEY])
    data_cfg = OmegaConf.merge(trained.data, cfg.get("data") or {})
    log.info(f"Evaluating {cfg.ckpt_path}")

    datamodule: L.LightningDataModule = hydra.utils.instantiate(data_cfg)
    model = classifier_from_checkpoint(checkpoint)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_loggers(cfg.get("logger"))
    )
    trainer.test(model, datamodule=datamodule)
    if model.confusion_matrix is not None:
        print_confusion_matrix(
            model.confusion_matrix,
            model.hparams.class_names,
            Path(cfg.paths.output_dir) / "confusion_matrix.csv",
        )
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval.yaml")
@report_user_errors
def main(cfg: DictConfig) -> None:
    """Entry point."""
    keep_file_logs_on_rank_zero()
    apply_extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    sys.argv = allow_data_overrides(sys.argv)
    with hydra_errors_on_one_line():
        main()
