"""The LightningModule: a network with the loss and metrics of its task, wired into the steps."""

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from src.core.metrics import BEST, default_monitor
from src.models.loss import ClassificationLoss
from src.models.metrics import TaskMetrics
from src.models.optimizer import build_optimizer, check_optimizer
from src.models.param_groups import backbone_modules, freeze, keep_norms_frozen
from src.models.settings import check_head_width, check_settings, set_matmul_precision, to_plain
from src.models.tasks import output_width, probabilities
from src.tracking.per_class import TestReport

# Where checkpoints written before the loss and the metrics had modules of their own (up to
# commit 4ac0345) keep these states: they load under the new names.
MOVED_STATES = {"pos_weight": "criterion.pos_weight", "val_best.": "metrics.val_best."}


def moved_states(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state_dict with the keys MOVED_STATES names under their new names."""
    renamed = {}
    for key, value in state.items():
        for old, new in MOVED_STATES.items():
            if key == old or (old.endswith(".") and key.startswith(old)):
                key = new + key[len(old) :]
                break
        renamed[key] = value
    return renamed


class ImageClassifier(L.LightningModule):
    """Classify images with `net`; the task (from the data) picks the loss, metrics and predictions.

    Args:
        net: Hydra config of the network; its output width is passed to it as `num_classes`
            (src/models/tasks.py `output_width`: the classes, or 1 for binary data).
        num_classes: number of classes (labels), from the data; 2 for binary data.
        optimizer: Hydra config of a `_partial_` optimizer, called with the trainable parameters.
        scheduler: Hydra config of a `_partial_` LR scheduler, called with the optimizer; its keys
            `interval`, `frequency` and `monitor` go to Lightning. Empty or None for no scheduler.
        task: "multiclass" (CrossEntropy, argmax), "binary" (one logit of class 1: BCEWithLogits,
            sigmoid > threshold) or "multilabel" (BCEWithLogits, sigmoid > threshold per label),
            from the data.
        class_names: names of the classes, from the data; stored in checkpoints.
        class_weights: multi-class: per-class CrossEntropy weights, "auto" (inverse to each
            class's count in the training data, averaging 1, found when fitting) or None.
        label_smoothing: multi-class and binary: label smoothing in [0, 1).
        pos_weight: multi-label: per-label weight of positives in BCEWithLogits, a list, "auto"
            (negatives / positives of each label in the training data, found when fitting) or
            None; binary: class 1's weight, one number, "auto" or None.
        threshold: multi-label and binary: the probability above which a label (binary: class
            1) is predicted.
        init_from: a checkpoint or state_dict file the training entry point starts the weights
            from (src/models/init_from.py); recorded here, never read by the module itself.
        backbone_lr_scale: the backbone's lr is the optimizer's lr times this; 0 freezes it.
        freeze_until: freeze the network's modules up to and including this one (a name in
            `net.named_modules()`), their batch-norm statistics included.
        compile: compile the network with torch.compile for training. It is compiled in place,
            so checkpoints hold the same keys and load into an uncompiled model.
        channels_last: keep the network's weights and inputs in channels-last memory order, which
            tensor-core convolutions on GPUs (and mixed precision) run fastest in.
        matmul_precision: torch.set_float32_matmul_precision on machines with CUDA: "high" lets
            float32 matrix products use TF32 tensor cores, "highest" keeps them exact.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        task: str = "multiclass",
        class_names: Sequence[str] | None = None,
        class_weights: Sequence[float] | str | None = None,
        label_smoothing: float = 0.0,
        pos_weight: Sequence[float] | str | None = None,
        threshold: float = 0.5,
        init_from: str | None = None,
        backbone_lr_scale: float = 1.0,
        freeze_until: str | None = None,
        compile: bool = False,
        channels_last: bool = False,
        matmul_precision: str = "high",
    ) -> None:
        super().__init__()
        # save_hyperparameters reads these locals: plain values keep checkpoints loadable with
        # torch.load(weights_only=True), which refuses pickled OmegaConf objects.
        net, optimizer, scheduler, class_names, class_weights, pos_weight = (
            to_plain(v) for v in (net, optimizer, scheduler, class_names, class_weights, pos_weight)
        )
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        self.save_hyperparameters()
        check_settings(self.hparams)
        set_matmul_precision(matmul_precision)

        self.net = instantiate({"num_classes": output_width(task, num_classes), **net})
        check_head_width(self.net, task, num_classes)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._frozen_norms = freeze(self.net, freeze_until, backbone_lr_scale)
        self.train()  # frozen layers in eval mode from the start (Lightning restores modes)
        self.criterion = ClassificationLoss(
            task, num_classes, class_weights, label_smoothing, pos_weight
        )
        self.metrics = TaskMetrics(task, num_classes, threshold, class_names)
        self.test_report: TestReport | None = None  # what the last test found per class
        check_optimizer(self.net, optimizer, scheduler, backbone_lr_scale)

    @property
    def backbone(self) -> nn.Module:
        """The network without its head, for Lightning's BackboneFinetuning callback."""
        return backbone_modules(self.net)

    def train(self, mode: bool = True) -> "ImageClassifier":
        super().train(mode)
        keep_norms_frozen(self.net, self._frozen_norms)
        return self

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        train_set = getattr(data, "train_set", None)
        if stage == "fit" and self.example_input_array is None and train_set is not None:
            # an input of the data's shape, for the model summary's sizes and the graph in
            # TensorBoard (logger.tensorboard.log_graph=true)
            with torch.random.fork_rng(devices=[]):  # augmenting it must not shift the run's RNG
                self.example_input_array = torch.zeros(train_set[0][0].shape).unsqueeze(0)
        if stage == "fit" and any(self.criterion.auto.values()):  # "auto" weights
            self.criterion.fit_to(data.train_targets())
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The loss, the class probabilities and the targets of an evaluation batch."""
        x, y = batch
        logits = self(x)
        return self.criterion(logits, y), probabilities(self.hparams.task, logits), y

    def on_train_epoch_start(self) -> None:
        self.train()  # keep frozen batch-norm layers in eval mode, whatever set the modes
        # one name whatever the optimizer or scheduler, so runs of a sweep share the curve
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y, mixed=True)
        if self.global_step == 0:  # the run's first batch: multi-hot targets refused at once
            self.criterion.refuse_multi_hot()
        self.metrics.update_train(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.criterion.refuse_multi_hot()
        # logged once an epoch rather than registered with every step (computing syncs DDP ranks)
        self.log_dict(self.metrics.compute_train())

    def on_validation_epoch_start(self) -> None:
        self.criterion.refuse_multi_hot()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.criterion.refuse_multi_hot()  # weights trained on multi-hot targets are not saved

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.metrics.update_val(probs, y, loss)
        self.log("val/loss", self.metrics.val_loss, on_epoch=True, prog_bar=True)
        self.log_dict(self.metrics.val_metrics, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's few batches are no real result
            return
        shown = default_monitor(self.hparams.task).removeprefix("val/")
        for name, value in self.metrics.update_bests().items():
            self.log(f"val/{name}{BEST}", value, prog_bar=name == shown)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for key in ("state_dict", "current_model_state"):  # the latter: callbacks.ema's
            if key in checkpoint:
                checkpoint[key] = moved_states(checkpoint[key])

    def logged_metric_names(self, stages: Sequence[str] = ("train", "val", "test")) -> list[str]:
        """The names of the metrics this model logs in the given stages, e.g. val/acc_best."""
        return self.metrics.logged_names(stages)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.metrics.update_test(probs, y)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict(self.metrics.test_metrics, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.test_report = self.metrics.finish_test()
        for name, value in self.metrics.per_class_logged(self.test_report).items():
            self.log(name, value)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities of a batch of images (or of (images, anything) pairs)."""
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return probabilities(self.hparams.task, self(images))

    def configure_optimizers(self) -> Any:
        """The optimizer (and scheduler) from their partial configs (src/models/optimizer.py)."""
        hp = self.hparams

        def steps() -> int:  # the run's optimizer steps, for one-cycle
            return max(1, int(self.trainer.estimated_stepping_batches))

        return build_optimizer(self.net, hp.optimizer, hp.scheduler, hp.backbone_lr_scale, steps)
