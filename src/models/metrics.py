"""The metrics of a task in each stage: lean training metrics, validation metrics with the best
value of each so far, and test metrics with what each class scored."""

from collections.abc import Sequence

from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, MinMetric

from src.core.metrics import BEST, metric_mode, per_class_metric
from src.models.tasks import (
    confusion_matrix,
    per_class_counts,
    per_class_metrics,
    task_metrics,
    training_predictions,
)
from src.tracking.per_class import TestReport, per_class_rows


class TaskMetrics(nn.Module):
    """The training, validation and test metrics of `task` (src/models/tasks.py).

    The LightningModule logs the collections (torchmetrics syncs DDP processes when they are
    computed); this module updates them, keeps the bests and assembles the test's per-class
    results. The bests are metric states kept in checkpoints, so a resumed run remembers them.
    """

    def __init__(
        self, task: str, num_classes: int, threshold: float, class_names: Sequence[str]
    ) -> None:
        super().__init__()
        self.task = task
        self.threshold = threshold
        self.class_names = list(class_names)
        metrics = task_metrics(task, num_classes, threshold)
        self.train_metrics = task_metrics(task, num_classes, threshold, training=True).clone(
            prefix="train/"
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_loss = MeanMetric()
        # The best value so far of every validation metric (val/<name>_best), the higher or the
        # lower by the metric's direction.
        self.val_best = nn.ModuleDict()
        for name in ["loss", *metrics.keys()]:
            best = MaxMetric() if metric_mode(name) == "max" else MinMetric()
            best.persistent(True)
            self.val_best[name] = best
        self.test_confusion = confusion_matrix(task, num_classes, threshold)
        self.test_per_class = (
            per_class_metrics(num_classes, threshold) if task == "multilabel" else None
        )
        self.test_counts = per_class_counts(task, num_classes, threshold)

    def update_train(self, logits: Tensor, targets: Tensor) -> None:
        """Under MixUp/CutMix the training metrics score each image against its dominant label:
        the class with the larger share of the mixed target (multi-class), the labels (binary: the
        class) with at least half their weight; unmixed targets stay as they are. (The loss is
        taken against the soft targets themselves, so it cannot reach 0 while mixing is on.)"""
        if self.task == "multiclass":
            labels = targets.argmax(dim=1) if targets.ndim == 2 else targets.long()
        else:
            labels = (targets >= 0.5).long()
        self.train_metrics.update(training_predictions(self.task, logits, self.threshold), labels)

    def compute_train(self) -> dict[str, Tensor]:
        """The epoch's training metrics, then reset for the next epoch."""
        values = self.train_metrics.compute()
        self.train_metrics.reset()
        return values

    def update_val(self, probs: Tensor, targets: Tensor, loss: Tensor) -> None:
        self.val_metrics.update(probs, targets.long())
        self.val_loss.update(loss, weight=len(targets))

    def update_bests(self) -> dict[str, Tensor]:
        """Move each best by this epoch's validation value; the bests by metric name (acc)."""
        for name, best in self.val_best.items():
            metric = self.val_loss if name == "loss" else self.val_metrics[name]
            best.update(metric.compute())
        return self.best_values()

    def best_values(self) -> dict[str, Tensor]:
        return {name: best.compute() for name, best in self.val_best.items()}

    def update_test(self, probs: Tensor, targets: Tensor) -> None:
        self.test_metrics.update(probs, targets.long())
        if self.test_confusion is not None:
            self.test_confusion.update(probs, targets)
        if self.test_per_class is not None:
            self.test_per_class.update(probs, targets.long())
        self.test_counts.update(probs, targets.long())

    def finish_test(self) -> TestReport:
        """What the test found per class (then reset): the confusion matrix (multi-class and
        binary), each label's F1 and AP (multi-label), and the per-class table."""
        matrix, scores = None, {}
        if self.test_confusion is not None:
            matrix = self.test_confusion.compute().cpu()
            self.test_confusion.reset()
        if self.test_per_class is not None:
            scores = {k: v.cpu() for k, v in self.test_per_class.compute().items()}
            self.test_per_class.reset()
        ap = {"ap": scores["ap"]} if "ap" in scores else {}
        table = per_class_rows(self.test_counts.compute(), self.class_names, ap)
        self.test_counts.reset()
        return TestReport(matrix, scores, table)

    def per_class_logged(self, report: TestReport) -> dict[str, Tensor]:
        """The per-class scores of a test report by the names they are logged under."""
        return {
            per_class_metric("test", metric, name): value
            for metric, values in report.per_class_scores.items()
            for name, value in zip(self.class_names, values, strict=True)
        }

    def logged_names(self, stages: Sequence[str] = ("train", "val", "test")) -> list[str]:
        """The names of the metrics logged in the given stages, e.g. val/acc_best."""
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
                for c in self.class_names
            ]
        return [name for stage in stages for name in names[stage]]
