"""Images, figures and histograms for TensorBoard, each a callback behind its own config."""

import time

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from src.tracking.figures import average_precision_bars, confusion_matrix_figure


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The SummaryWriter of the trainer's TensorBoardLogger on rank zero, else None."""
    if rank_zero_only.rank != 0:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class AugmentedImageGrid(L.Callback):
    """Log the first training batch as the network sees it, once per run: after augmentation,
    policy and MixUp/CutMix (on_train_batch_start gets the batch after on_after_batch_transfer),
    with the data's normalisation undone so that colours and mixing weights show as they are."""

    def __init__(self, max_images: int = 32, columns: int = 8) -> None:
        self.max_images = max_images
        self.columns = columns
        self.logged = False

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        if self.logged or (writer := tensorboard_writer(trainer)) is None:
            return
        images = batch[0][: self.max_images].detach().float().cpu()
        writer.add_image("train/augmented_images", self.grid(images, trainer), trainer.global_step)
        self.logged = True

    def grid(self, images: torch.Tensor, trainer: L.Trainer) -> torch.Tensor:
        """The images in rows of `columns`: normalisation by data.mean/std undone and clipped to
        [0, 1] (so erased patches show the mean colour); without those, each image stretched."""
        data = getattr(trainer, "datamodule", None)
        mean, std = getattr(data, "mean", None), getattr(data, "std", None)
        if mean is None or std is None or images.shape[1] != len(mean):
            return make_grid(images, nrow=self.columns, normalize=True, scale_each=True)
        mean, std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
        return make_grid((images * std + mean).clamp(0, 1), nrow=self.columns)


class TestFigures(L.Callback):
    """At test time: the confusion matrix (multi-class) or per-class AP bars (multi-label)."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        report = getattr(pl_module, "test_report", None)  # src/tracking/per_class.py's
        if report is None:
            return
        class_names = list(pl_module.hparams.class_names)
        if report.confusion_matrix is not None:
            figure = confusion_matrix_figure(report.confusion_matrix, class_names)
            writer.add_figure("test/confusion_matrix", figure, trainer.global_step)
        scores = report.per_class_scores
        if "ap" in scores:
            figure = average_precision_bars(scores["ap"], class_names)
            writer.add_figure("test/per_class_ap", figure, trainer.global_step)
        writer.flush()


class ParameterHistograms(L.Callback):
    """Histograms of every weight and its gradient, every `every_n_epochs` epochs."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be 1 or more, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self._gradients_logged_epoch = -1

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch % self.every_n_epochs == 0

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        epoch = trainer.current_epoch
        if self._gradients_logged_epoch == epoch or not self._due(trainer):
            return
        if (writer := tensorboard_writer(trainer)) is None:
            return
        for name, param in pl_module.named_parameters():
            if param.grad is not None:
                writer.add_histogram(f"gradients/{name}", param.grad, trainer.global_step)
        self._gradients_logged_epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or not self._due(trainer):
            return
        for name, param in pl_module.named_parameters():
            writer.add_histogram(f"weights/{name}", param, trainer.global_step)


class EpochTime(L.Callback):
    """Log `train/epoch_time`: seconds per training epoch, its validation included."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()  # a run resumed mid-epoch starts no epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("train/epoch_time", time.perf_counter() - self._start)
