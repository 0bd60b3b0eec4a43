"""Train a classifier from the composed config, then test its best checkpoint.

python src/train.py model=resnet50 optimizer=sgd scheduler=cosine trainer.max_epochs=5
"""

import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

import src.cli.resolvers  # noqa: F401  (registers the resolvers the configs use)
from src.callbacks.last_checkpoint import LastCheckpoint
from src.callbacks.preemption import exit_when_stopped
from src.callbacks.run_config import RunConfigCheckpoint
from src.cli.extras import apply_extras, keep_file_logs_on_rank_zero, leave_process_group
from src.cli.instantiate import instantiate_callbacks, instantiate_loggers
from src.cli.one_line_errors import hydra_errors_on_one_line, in_multirun, report_user_errors
from src.cli.resume import continue_in_place, refuse_changed_schedule
from src.core.errors import ConfigError
from src.core.metrics import BEST, check_metrics_are_logged, metric_value
from src.core.runs import RUN_CONFIG_KEY
from src.models.checkpoint import resumable_checkpoint
from src.models.classifier import ImageClassifier
from src.models.init_from import load_initial_weights
from src.tracking.checkpoint_io import trainer_plugins
from src.tracking.hparams import flat_hyperparameters
from src.tracking.per_class import write_test_report
from src.tracking.provenance import record_provenance
from src.tracking.run_status import TensorBoardSession, how_fit_ended, tensorboard_dir
from src.tracking.saved_config import record_in_saved_config

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model on the data, test the checkpoint test_ckpt names, return the logged metrics."""
    if cfg.get("test_ckpt", "best") not in ("best", "last"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt} is not a choice: use best or last")
    continue_in_place(cfg)  # resume=auto: ckpt_path is this run folder's newest checkpoint
    if cfg.get("ckpt_path"):
        # refuse a wrong path now, not after set-up
        path, checkpoint = resumable_checkpoint(cfg.ckpt_path)
        refuse_changed_schedule(cfg, checkpoint, path, passed=f"ckpt_path={cfg.ckpt_path}")
        keep_trained_statistics(cfg, checkpoint)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    loggers = instantiate_loggers(cfg.get("logger"))
    out = Path(cfg.paths.output_dir)
    with (
        TensorBoardSession(tensorboard_dir(loggers), in_multirun(), out) as session,
        exit_when_stopped(session),  # SIGTERM, Ctrl-C: record, print the resume command, exit
    ):
        return _fit_and_test(cfg, loggers, session)


def _monitors(cfg: DictConfig) -> dict[str, str]:
    """Every metric the run watches during training, by its config key: `monitor`, and the
    `monitor` of any callback or of the scheduler (a plateau schedule)."""
    monitors = {"monitor": cfg.monitor} if cfg.get("monitor") else {}
    for name, callback in (cfg.get("callbacks") or {}).items():
        if isinstance(callback, DictConfig) and callback.get("monitor"):
            monitors[f"callbacks.{name}.monitor"] = callback.monitor
    if (cfg.get("scheduler") or {}).get("monitor"):
        monitors["scheduler.monitor"] = cfg.scheduler.monitor
    return monitors


def check_metrics(cfg: DictConfig, model: ImageClassifier) -> None:
    """Refuse, before any work, a monitored or optimized metric the model does not log."""
    stages = ["train", "val"] if cfg.get("train") else []
    if cfg.get("test"):
        stages.append("test")
    check_metrics_are_logged(
        _monitors(cfg),
        validation=[m for m in model.logged_metric_names(["val"]) if not m.endswith(BEST)],
        optimized=cfg.get("optimized_metric"),
        logged=model.logged_metric_names(stages),
    )


def checkpoint_to_test(trainer: L.Trainer, which: str) -> str:
    """test_ckpt: the path of best.ckpt (the monitor's best epoch) or last.ckpt (the final
    weights); "" when none was saved."""
    if which == "last":  # LastCheckpoint keeps one file, the newest: its "best"
        saved = [c.best_model_path for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
        saved += [c.last_model_path for c in trainer.checkpoint_callbacks]
        if saved := [path for path in saved if path]:
            return saved[0]
    return trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""


def start_from_weights(model: ImageClassifier, path: str, out: Path, resuming: bool) -> None:
    """model.init_from: load the file's matching weights, print and save what was loaded."""
    if resuming:
        log.warning("model.init_from is ignored: ckpt_path resumes the run with its own weights")
        return
    report = load_initial_weights(model, path)
    report.print()
    report.write_csv(out / "init_from.csv")


def keep_trained_statistics(cfg: DictConfig, checkpoint: dict) -> None:
    """Resuming with data.mean/std=auto: normalise with the numbers the run trained with, not
    the statistics of the folder as it is now."""
    trained, kept = checkpoint[RUN_CONFIG_KEY]["data"], {}
    with open_dict(cfg):
        for key in ("mean", "std"):
            if cfg.data.get(key) == "auto" and key in trained:
                cfg.data[key] = kept[f"data.{key}"] = trained[key]
    record_in_saved_config(kept)


def fill_in_found_data(cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """Put what the data found into the config (the model reads the task by interpolation) and
    what was `auto` into the saved config too: eval and predict use the size and the
    statistics that trained."""
    found = {}
    with open_dict(cfg):
        cfg.data.task = datamodule.task
        cfg.data.num_classes = datamodule.num_classes
        cfg.data.class_names = list(datamodule.class_names)
        for key in ("image_size", "channels", "mean", "std"):
            if cfg.data.get(key) == "auto":
                cfg.data[key] = found[f"data.{key}"] = getattr(datamodule, key)
    record_in_saved_config(found)


def _fit_and_test(
    cfg: DictConfig, loggers: list[Logger], session: TensorBoardSession
) -> dict[str, float]:
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    fill_in_found_data(cfg, datamodule)
    model: ImageClassifier = hydra.utils.instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.get("scheduler"), _recursive_=False
    )
    model_task = (model.hparams.task, model.hparams.num_classes)
    if model_task != (datamodule.task, datamodule.num_classes):
        raise ConfigError(
            f"the model is set up for {model_task[0]} with {model_task[1]} classes but the data "
            f"is {datamodule.task} with {datamodule.num_classes}: drop the model.task and "
            "model.num_classes overrides, so the model follows the data"
        )
    if cfg.model.get("init_from"):
        out = Path(cfg.paths.output_dir)
        start_from_weights(model, cfg.model.init_from, out, resuming=bool(cfg.get("ckpt_path")))
    check_metrics(cfg, model)
    apply_extras(cfg)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]

    def record(config: dict) -> None:  # the HPARAMS record, with what a finder (tune=) applied
        session.record_hyperparameters(flat_hyperparameters(config))

    run_config = RunConfigCheckpoint(OmegaConf.to_container(cfg, resolve=True), record)
    callbacks.append(run_config)
    if cfg.get("tune"):  # a finder run before training (configs/tune/)
        callbacks.append(hydra.utils.instantiate(cfg.tune))
    plugins = trainer_plugins(cfg.trainer)  # with atomic checkpoint saving
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins
    )
    # the settings are good: from here on the run writes its records
    run_config.provenance = rank_zero_only(record_provenance)(Path(cfg.paths.output_dir)) or {}
    session.start(flat_hyperparameters(cfg))

    metrics: dict[str, float] = {}
    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(trainer.callback_metrics)
        if cfg.get("ckpt_path"):  # resumed where training had ended: nothing validated now
            with warnings.catch_warnings():  # the bests came back from the checkpoint
                warnings.filterwarnings("ignore", message=".*compute.* before the .*update")
                for name, value in model.metrics.best_values().items():
                    metrics.setdefault(f"val/{name}{BEST}", value)

    if cfg.get("test"):
        best = checkpoint_to_test(trainer, cfg.get("test_ckpt", "best"))
        if not best:
            log.warning("No checkpoint was saved: testing the current weights.")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(trainer.callback_metrics)
        out = Path(cfg.paths.output_dir)
        class_names = model.hparams.class_names
        write_test_report(
            model.test_report, class_names, out, tensorboard_dir(loggers), trainer.global_step
        )
        if best:
            log.info(f"Tested checkpoint: {best}")
    session.end(*how_fit_ended(trainer))
    return {k: float(v) for k, v in metrics.items()}


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Entry point: returns `optimized_metric` for Hydra's sweepers."""
    keep_file_logs_on_rank_zero()
    metrics = train(cfg)
    leave_process_group()
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    with hydra_errors_on_one_line():
        main()
