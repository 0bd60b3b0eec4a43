"""Evaluate a checkpoint on the test split of the data it was trained on.

    python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt [data.batch_size=256]

The model and the data settings come from the checkpoint; `data.KEY=VALUE` changes one of them.
"""

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

import src.cli.resolvers  # noqa: F401  (registers the resolvers the configs use)
from src.cli.extras import apply_extras, keep_file_logs_on_rank_zero, leave_process_group
from src.cli.instantiate import instantiate_loggers
from src.cli.one_line_errors import hydra_errors_on_one_line, report_user_errors
from src.core.errors import ConfigError
from src.core.runs import RUN_CONFIG_KEY
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.tracking.per_class import write_test_report
from src.tracking.provenance import record_provenance
from src.tracking.run_status import tensorboard_dir

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint at `ckpt_path` and return its test metrics."""
    checkpoint = read_checkpoint(cfg.get("ckpt_path"), map_location="cpu")  # checked: safe to build
    trained = OmegaConf.create(checkpoint[RUN_CONFIG_KEY]["data"])
    data_cfg = OmegaConf.merge(trained, cfg.get("data") or {})
    if "auto" in (data_cfg.get("mean"), data_cfg.get("std")):
        raise ConfigError(
            "eval normalises with the statistics the run trained with (the checkpoint's "
            "data.mean and data.std): drop data.mean=auto and data.std=auto"
        )
    log.info(f"Evaluating {cfg.ckpt_path}")

    datamodule: L.LightningDataModule = hydra.utils.instantiate(data_cfg)
    model = classifier_from_checkpoint(checkpoint, f"ckpt_path={cfg.ckpt_path}")
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_loggers(cfg.get("logger"))
    )
    trainer.test(model, datamodule=datamodule)
    out, class_names = Path(cfg.paths.output_dir), model.hparams.class_names
    write_test_report(
        model.test_report, class_names, out, tensorboard_dir(trainer.loggers), trainer.global_step
    )
    rank_zero_only(record_provenance)(Path(cfg.paths.output_dir))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def allow_data_overrides(argv: list[str]) -> list[str]:
    """Let `data.KEY=VALUE` arguments add to the data settings restored from the checkpoint.

    eval.yaml starts with an empty `data` node that the checkpoint fills in, and Hydra only adds
    keys to it when they are written `+data.KEY=VALUE`; this writes that for the user.
    """
    return [f"+{a}" if a.startswith("data.") and "=" in a else a for a in argv]


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval.yaml")
@report_user_errors
def main(cfg: DictConfig) -> None:
    """Entry point."""
    keep_file_logs_on_rank_zero()
    apply_extras(cfg)
    evaluate(cfg)
    leave_process_group()


if __name__ == "__main__":
    sys.argv = allow_data_overrides(sys.argv)
    with hydra_errors_on_one_line():
        main()
