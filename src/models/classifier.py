"""The LightningModule: a network plus the loss, metrics and optimisation its task calls for."""

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, MinMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from src.cli.errors import ConfigError
from src.cli.partial_settings import build_partial
from src.models.param_groups import (
    backbone_modules,
    head_prefixes,
    in_head,
    modules_up_to,
    norm_layers,
    parameter_groups,
    parameters_up_to,
)
from src.models.tasks import (
    TASKS,
    inverse_frequency_weights,
    per_class_counts,
    per_class_metrics,
    probabilities,
    soft_target_cross_entropy,
    task_metrics,
    training_predictions,
)
from src.tracking.metrics import (
    BEST,
    check_per_class_names,
    default_monitor,
    metric_mode,
    per_class_metric,
)
from src.tracking.per_class import per_class_rows

MULTI_HOT = (
    "multi-hot targets cannot train a multi-class (CrossEntropy) model: "
    "the data is multi-label, set data.task=multilabel"
)

# Keys of a scheduler config that are Lightning's settings, not the scheduler's arguments.
SCHEDULER_LIGHTNING_KEYS = ("interval", "frequency", "monitor")


def to_plain(value: Any) -> Any:
    """OmegaConf containers to plain dicts and lists (resolved), anything else unchanged."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class ImageClassifier(L.LightningModule):
    """Classify images with `net`; the task (from the data) picks the loss, metrics and predictions.

    Args:
        net: Hydra config of the network; `num_classes` is passed to it.
        num_classes: number of classes (labels), from the data.
        optimizer: Hydra config of a `_partial_` optimizer, called with the trainable parameters.
        scheduler: Hydra config of a `_partial_` LR scheduler, called with the optimizer; its keys
            `interval`, `frequency` and `monitor` go to Lightning. Empty or None for no scheduler.
        task: "multiclass" (CrossEntropy, argmax) or "multilabel" (BCEWithLogits, sigmoid >
            threshold), from the data.
        class_names: names of the classes, from the data; stored in checkpoints.
        class_weights: multi-class: per-class CrossEntropy weights, "auto" (inverse to each
            class's count in the training data, averaging 1, found when fitting) or None.
        label_smoothing: multi-class: CrossEntropy label smoothing in [0, 1).
        pos_weight: multi-label: per-label weight of positives in BCEWithLogits, a list, "auto"
            (negatives / positives of each label in the training data, found when fitting) or None.
        threshold: multi-label: probability above which a label is predicted.
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
        self._check_settings()

        if matmul_precision not in ("highest", "high", "medium"):
            raise ConfigError(
                f"model.matmul_precision={matmul_precision!r}: use highest, high or medium"
            )
        if torch.cuda.is_available():  # before the trainer, which warns when it is left unset
            torch.set_float32_matmul_precision(matmul_precision)
        self.net = instantiate({"num_classes": num_classes, **net})
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # names of the batch-norm layers whose statistics stay as they are (frozen by
        # freeze_until or a backbone_lr_scale of 0): names, since trainer=ddp replaces the layers
        # by SyncBatchNorm ones
        self._frozen_norms: list[str] = self._freeze()
        self._multi_hot_rows: Tensor | None = None  # see _count_multi_hot
        self.train()  # frozen layers in eval mode from the start (Lightning restores modes)
        width = getattr(self.net, "num_classes", num_classes)
        if width != num_classes:
            raise ConfigError(
                f"the network's head has {width} outputs but the data has {num_classes} classes: "
                "remove model.net.num_classes so it follows the data"
            )
        # "auto": found from the training data when fitting; until then (and for the checkpoint
        # to load into) ones of the right shape
        if class_weights == "auto":
            class_weights = [1.0] * num_classes
        weight = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        # Kept in checkpoints, so a weight found from the data ("auto") is reloaded with the model.
        positives = pos_weight if isinstance(pos_weight, list) else [1.0] * num_classes
        self.register_buffer("pos_weight", torch.tensor(positives, dtype=torch.float))

        metrics = task_metrics(task, num_classes, threshold)
        self.train_metrics = task_metrics(task, num_classes, threshold, training=True).clone(
            prefix="train/"
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_loss = MeanMetric()
        # The best value so far of every validation metric (val/<name>_best), the higher or the
        # lower by the metric's direction; kept in checkpoints, so a resumed run remembers them.
        self.val_best = nn.ModuleDict()
        for name in ["loss", *metrics.keys()]:
            best = MaxMetric() if metric_mode(name) == "max" else MinMetric()
            best.persistent(True)
            self.val_best[name] = best
        self.test_confusion = (
            MulticlassConfusionMatrix(num_classes) if task == "multiclass" else None
        )
        self.test_per_class = (
            per_class_metrics(num_classes, threshold) if task == "multilabel" else None
        )
        self.test_counts = per_class_counts(task, num_classes, threshold)
        self.confusion_matrix: Tensor | None = None  # multi-class test results, for reports
        self.per_class_scores: dict[str, Tensor] = {}  # multi-label test results: f1, ap
        # test precision, recall, F1 and support (and ap) of each class, for the per-class table
        self.per_class_table: list[dict[str, Any]] = []

        self.configure_optimizers()  # refuse bad optimizer or scheduler settings now, not mid-run

    def _check_settings(self) -> None:
        hp = self.hparams
        if hp.task not in TASKS:
            raise ConfigError(f"model.task={hp.task!r} is not supported: use one of {TASKS}")
        if hp.num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {hp.num_classes}")
        if len(hp.class_names) != hp.num_classes:
            raise ConfigError(f"{len(hp.class_names)} class names for {hp.num_classes} classes")
        for name, value in (("class_weights", hp.class_weights), ("pos_weight", hp.pos_weight)):
            if isinstance(value, str) and value != "auto":
                raise ConfigError(f"model.{name}={value!r}: use a list, auto or null")
        if hp.task == "multilabel" and hp.class_weights == "auto":
            raise ConfigError(
                "model.class_weights=auto applies to multi-class data: for multi-label data set "
                "model.pos_weight=auto (and class_weights to null)"
            )
        for name, values in (("class_weights", hp.class_weights), ("pos_weight", hp.pos_weight)):
            if isinstance(values, list) and (len(values) != hp.num_classes or min(values) < 0):
                raise ConfigError(
                    f"model.{name} needs {hp.num_classes} non-negative numbers, got {values}"
                )
        if not 0 <= hp.label_smoothing < 1:
            raise ConfigError(f"model.label_smoothing must lie in [0, 1), got {hp.label_smoothing}")
        if not hp.backbone_lr_scale >= 0:
            raise ConfigError(
                f"model.backbone_lr_scale must be 0 (frozen) or more, got {hp.backbone_lr_scale}"
            )
        if hp.task == "multilabel":  # each class's test metrics are logged by its name
            check_per_class_names(hp.class_names)
        if not 0 < hp.threshold < 1:
            raise ConfigError(f"model.threshold must lie in (0, 1), got {hp.threshold}")
        # a setting of the other task would be silently ignored: refuse it instead
        if hp.task == "multiclass" and hp.pos_weight is not None:
            raise ConfigError("model.pos_weight applies to multi-label data: set it to null")
        if hp.task == "multilabel" and (hp.class_weights is not None or hp.label_smoothing):
            raise ConfigError(
                "model.class_weights and model.label_smoothing apply to multi-class data: "
                "set them to null and 0"
            )

    def _freeze(self) -> list[str]:
        """Stop the gradients of what `freeze_until` or a backbone_lr_scale of 0 freezes; return
        the batch-norm layers among the frozen modules."""
        hp = self.hparams
        frozen: list[tuple[str, nn.Module]] = []
        if hp.freeze_until:
            names = set(parameters_up_to(self.net, hp.freeze_until))
            for name, param in self.net.named_parameters():
                param.requires_grad_(param.requires_grad and name not in names)
            frozen += modules_up_to(self.net, hp.freeze_until)
        if hp.backbone_lr_scale == 0:
            head = head_prefixes(self.net)
            for name, param in self.net.named_parameters():
                param.requires_grad_(param.requires_grad and in_head(name, head))
            frozen += [(n, m) for n, m in self.net.named_modules() if n and not in_head(n, head)]
        return norm_layers(frozen)

    @property
    def backbone(self) -> nn.Module:
        """The network without its head, for Lightning's BackboneFinetuning callback."""
        return backbone_modules(self.net)

    def train(self, mode: bool = True) -> "ImageClassifier":
        super().train(mode)
        for name in self._frozen_norms:  # frozen statistics stay as they are
            self.net.get_submodule(name).eval()
        return self

    def setup(self, stage: str) -> None:
        train_set = getattr(self.trainer.datamodule, "train_set", None)
        if stage == "fit" and self.example_input_array is None and train_set is not None:
            # an input of the data's shape, for the model summary's sizes and the graph in
            # TensorBoard (logger.tensorboard.log_graph=true)
            with torch.random.fork_rng(devices=[]):  # augmenting it must not shift the run's RNG
                self.example_input_array = torch.zeros(train_set[0][0].shape).unsqueeze(0)
        if stage == "fit" and self.hparams.pos_weight == "auto":
            self.pos_weight.copy_(self._pos_weight_from_data())
        if stage == "fit" and self.hparams.class_weights == "auto":  # a buffer: kept in checkpoints
            weights = inverse_frequency_weights(
                self.trainer.datamodule.train_targets(), self.hparams.num_classes
            )
            self.criterion.weight.copy_(weights)
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def _pos_weight_from_data(self) -> Tensor:
        """Negatives over positives of each label in the training targets."""
        targets = self.trainer.datamodule.train_targets().float()
        positives = targets.sum(dim=0)
        return (len(targets) - positives) / positives.clamp(min=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _loss(
        self, batch: tuple[Tensor, Tensor], mixed: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The loss, the logits and the targets of a batch.

        mixed: training batches, which MixUp/CutMix may have mixed (src/data/batch_mixing.py):
        multi-class targets may then be (B, C) class probabilities, which CrossEntropy takes as
        they are (class weights and label smoothing apply to them too); multi-label targets are
        mixed multi-hot floats, which BCEWithLogits takes like any multi-hot targets.
        """
        x, y = batch
        logits = self(x)
        if self.hparams.task == "multiclass":
            if y.ndim != 1 and not (mixed and y.is_floating_point()):
                raise ConfigError(MULTI_HOT)
            if y.ndim == 2:
                weight, smoothing = self.criterion.weight, self.criterion.label_smoothing
                loss = soft_target_cross_entropy(logits, y, weight, smoothing)
            else:
                loss = self.criterion(logits, y)
        else:
            loss = F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=self.pos_weight)
        return loss, logits, y

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The loss, the class probabilities and the targets of a batch."""
        loss, logits, y = self._loss(batch)
        return loss, probabilities(self.hparams.task, logits), y

    def on_train_epoch_start(self) -> None:
        self.train()  # keep frozen batch-norm layers in eval mode, whatever set the modes
        # one name whatever the optimizer or scheduler, so runs of a sweep share the curve
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        hp = self.hparams
        if hp.task == "multiclass" and batch[1].ndim == 2:
            self._count_multi_hot(batch[1], at_once=self.global_step == 0)
        loss, logits, y = self._loss(batch, mixed=True)
        # Under MixUp/CutMix the training metrics score each image against its dominant label:
        # the class with the larger share of the mixed target (multi-class), the labels with at
        # least half their weight (multi-label); unmixed targets stay as they are. The loss is
        # taken against the soft targets themselves, so it cannot reach 0 while mixing is on.
        if hp.task == "multiclass":
            labels = y.argmax(dim=1) if y.ndim == 2 else y.long()
        else:
            labels = (y >= 0.5).long()
        self.train_metrics.update(training_predictions(hp.task, logits, hp.threshold), labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _count_multi_hot(self, y: Tensor, at_once: bool) -> None:
        """Mixed multi-class targets are class probabilities (rows that sum to 1); multi-hot ones
        (multi-label data) are not. Such rows are counted on the device and refused on the run's
        first batch, before validation, at the epoch's end and before any checkpoint is saved:
        checking every batch at once would make each training step wait for the device."""
        rows = (~torch.isclose(y.sum(dim=1), y.new_ones(()))).sum()
        if self._multi_hot_rows is not None:
            rows = rows + self._multi_hot_rows
        self._multi_hot_rows = rows
        if at_once:
            self._refuse_multi_hot()

    def _refuse_multi_hot(self) -> None:
        rows, self._multi_hot_rows = self._multi_hot_rows, None
        if rows is not None and rows.item():
            raise ConfigError(MULTI_HOT)

    def on_validation_epoch_start(self) -> None:
        self._refuse_multi_hot()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._refuse_multi_hot()  # weights trained on multi-hot targets are not saved

    def on_train_epoch_end(self) -> None:
        self._refuse_multi_hot()
        # logged once an epoch rather than registered with every step (computing syncs DDP ranks)
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.val_metrics.update(probs, y.long())
        self.val_loss.update(loss, weight=len(y))
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the sanity check's few batches are no real result
            return
        shown = default_monitor(self.hparams.task).removeprefix("val/")
        for name, best in self.val_best.items():
            metric = self.val_loss if name == "loss" else self.val_metrics[name]
            best.update(metric.compute())
            self.log(f"val/{name}{BEST}", best.compute(), prog_bar=name == shown)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints from before every validation metric kept its best (one `val_best` of the
        task's metric) load too: its value moves to its new name, the other bests start anew."""
        state = checkpoint["state_dict"]
        if "val_best.max_value" in state:
            name = default_monitor(self.hparams.task).removeprefix("val/")
            state[f"val_best.{name}.max_value"] = state.pop("val_best.max_value")
        for key, value in self.state_dict().items():
            if key.startswith("val_best."):
                state.setdefault(key, value)

    def logged_metric_names(self, stages: Sequence[str] = ("train", "val", "test")) -> list[str]:
        """The names of the metrics this model logs in the given stages, e.g. val/acc_best."""
        metrics = list(self.val_metrics.keys(keep_base=True))
        names = {
            "train": [
                "train/loss",
                "train/lr",
                *(f"train/{m}" for m in self.train_metrics.keys(keep_base=True)),
            ],
            "val": [f"val/{m}" for m in ["loss", *metrics]]
            + [f"val/{m}{BEST}" for m in self.val_best],
            "test": ["test/loss", *(f"test/{m}" for m in metrics)],
        }
        if self.test_per_class is not None:
            names["test"] += [
                per_class_metric("test", m, c)
                for m in self.test_per_class.keys(keep_base=True)
                for c in self.hparams.class_names
            ]
        return [name for stage in stages for name in names[stage]]

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, probs, y = self._step(batch)
        self.test_metrics.update(probs, y.long())
        if self.test_confusion is not None:
            self.test_confusion.update(probs, y)
        if self.test_per_class is not None:
            self.test_per_class.update(probs, y.long())
        self.test_counts.update(probs, y.long())
        self.log("test/loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict(self.test_metrics, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        if self.test_confusion is not None:
            self.confusion_matrix = self.test_confusion.compute().cpu()
            self.test_confusion.reset()
        if self.test_per_class is not None:
            self.per_class_scores = {k: v.cpu() for k, v in self.test_per_class.compute().items()}
            for metric, values in self.per_class_scores.items():
                for name, value in zip(self.hparams.class_names, values, strict=True):
                    self.log(per_class_metric("test", metric, name), value)
            self.test_per_class.reset()
        ap = {"ap": self.per_class_scores["ap"]} if "ap" in self.per_class_scores else {}
        counts = self.test_counts.compute()
        self.per_class_table = per_class_rows(counts, self.hparams.class_names, ap)
        self.test_counts.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities of a batch of images (or of (images, anything) pairs)."""
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return probabilities(self.hparams.task, self(images))

    def _optimizer_steps(self) -> int:
        """The optimizer steps of the whole run; 1 before a trainer is attached (when __init__
        only checks the settings)."""
        if self._trainer is None:
            return 1
        return max(1, int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self) -> Any:
        """Build the optimizer (and scheduler) from their partial configs."""
        settings = dict(self.hparams.optimizer)
        # checkpoints from before the option kept one group: so do they again
        decay_norm_and_bias = settings.pop("decay_norm_and_bias", True)
        if self.hparams.backbone_lr_scale != 1 and "lr" not in settings:
            raise ConfigError("model.backbone_lr_scale needs optimizer.lr: set it")
        groups = list(
            parameter_groups(
                self.net,
                lr=settings.get("lr", 0.0),
                weight_decay=settings.get("weight_decay"),
                backbone_lr_scale=self.hparams.backbone_lr_scale,
                decay_norm_and_bias=decay_norm_and_bias,
            )
        )
        params: Any = groups[0]["params"] if len(groups) == 1 else groups
        if not groups:
            raise ConfigError(
                "every parameter is frozen (model.freeze_until / model.backbone_lr_scale=0): "
                "leave some of the network to train"
            )
        fresh = (lambda: params) if len(groups) == 1 else (lambda: [dict(g) for g in groups])
        optimizer = build_partial("optimizer", settings, fresh(), fresh)
        if not self.hparams.scheduler:
            return optimizer
        settings = dict(self.hparams.scheduler)
        lightning_keys = {k: settings.pop(k) for k in SCHEDULER_LIGHTNING_KEYS if k in settings}
        if settings.get("total_steps") == "auto":  # e.g. one-cycle: the run's optimizer steps
            settings["total_steps"] = self._optimizer_steps()
        scheduler = build_partial(
            "scheduler", settings, optimizer, lambda: copy.deepcopy(optimizer)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
