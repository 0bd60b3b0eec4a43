"""The LightningModule: a network plus the loss, metrics and optimisation its task calls for."""

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from src.utils.errors import ConfigError

TASKS = ("multiclass",)
# Keys of a scheduler config that are Lightning's settings, not the scheduler's arguments.
SCHEDULER_LIGHTNING_KEYS = ("interval", "frequency", "monitor")


def to_plain(value: Any) -> Any:
    """OmegaConf containers to plain dicts and lists (resolved), anything else unchanged."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def multiclass_metrics(num_classes: int) -> MetricCollection:
    """Top-1 accuracy, macro F1 and, with more than five classes, top-5 accuracy."""
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
    }
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


class ImageClassifier(L.LightningModule):
    """Classify images with `net`; the task (from the data) picks the loss and the metrics.

    Args:
        net: Hydra config of the network; `num_classes` is passed to it.
        num_classes: number of classes, from the data.
        task: "multiclass", from the data.
        class_names: names of the classes, from the data; stored in checkpoints.
        optimizer: Hydra config of a `_partial_` optimizer, called with the trainable parameters.
        scheduler: Hydra config of a `_partial_` LR scheduler, called with the optimizer; its keys
            `interval`, `frequency` and `monitor` go to Lightning. Empty or None for no scheduler.
        class_weights: per-class loss weights, or None.
        label_smoothing: CrossEntropy label smoothing in [0, 1).
        compile: compile the network with torch.compile for training. It is compiled in place,
            so checkpoints hold the same keys and load into an uncompiled model.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        task: str = "multiclass",
        class_names: Sequence[str] | None = None,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # save_hyperparameters reads these locals: plain values keep checkpoints loadable with
        # torch.load(weights_only=True), which refuses pickled OmegaConf objects.
        net, optimizer, scheduler, class_names, class_weights = (
            to_plain(v) for v in (net, optimizer, scheduler, class_names, class_weights)
        )
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        self.save_hyperparameters()
        self._check_task(task, num_classes, class_names, class_weights, label_smoothing)

        self.net = instantiate({"num_classes": num_classes, **net})
        width = getattr(self.net, "num_classes", num_classes)
        if width != num_classes:
            raise ConfigError(
                f"the network's head has {width} outputs but the data has {num_classes} classes: "
                "remove model.net.num_classes so it follows the data"
            )
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

        metrics = multiclass_metrics(num_classes)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run remembers it
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.confusion_matrix: Tensor | None = None

        self.configure_optimizers()  # refuse bad optimizer or scheduler settings now, not mid-run

    @staticmethod
    def _check_task(
        task: str,
        num_classes: int,
        class_names: Sequence[str],
        class_weights: Sequence[float] | None,
        label_smoothing: float,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"model.task={task!r} is not supported: use one of {TASKS}")
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        if len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names given for {num_classes} classes")
        if class_weights is not None and (
            len(class_weights) != num_classes or min(class_weights) < 0
        ):
            raise ConfigError(
                f"model.class_weights needs {num_classes} non-negative numbers, got {class_weights}"
            )
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing must lie in [0, 1), got {label_smoothing}")

    def setup(self, stage: str) -> None:
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        return self.criterion(logits, y), logits, y

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, logits, y = self._step(batch)
        self.train_metrics.update(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.val_metrics.update(logits, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's few batches are no real result
            return
        self.val_acc_best.update(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_metrics.update(logits, y)
        self.test_confusion.update(logits, y)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict(self.test_metrics, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def configure_optimizers(self) -> Any:
        """Build the optimizer (and scheduler) from their partial configs."""
        params = [p for p in self.parameters() if p.requires_grad]
        try:
            optimizer = instantiate(self.hparams.optimizer)(params)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad optimizer settings: {exc}: fix the optimizer.* values") from exc
        if not self.hparams.scheduler:
            return optimizer
        settings = dict(self.hparams.scheduler)
        lightning_keys = {k: settings.pop(k) for k in SCHEDULER_LIGHTNING_KEYS if k in settings}
        try:
            scheduler = instantiate(settings)(optimizer)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad scheduler settings: {exc}: fix the scheduler.* values") from exc
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
