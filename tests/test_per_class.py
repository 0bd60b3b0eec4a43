"""What a run reports beside its scalars: the per-class test table (printed, per_class.csv,
TensorBoard text) for both tasks, and the chart of training and validation loss."""

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.metrics import precision_recall_fscore_support
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassStatScores, MultilabelStatScores
from torchmetrics.functional.classification import multilabel_average_precision, multilabel_f1_score

from src.core.errors import user_error_in
from src.tracking.per_class import per_class_rows
from src.train import train
from tests.conftest import FAST, QUIET, SMALL_MULTILABEL, compose_config
from tests.helpers import tensorboard_events, tensorboard_scalars

# one short epoch: a model that is still poor, so the classes differ and some are never predicted
POOR_RUN = [
    *FAST,
    *QUIET,
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
]
COLUMNS = ["precision", "recall", "f1", "support"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def sklearn_table(y_true, y_pred) -> list[float]:
    """scikit-learn's precision, recall, F1 and support of each class, row after row."""
    scores = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    return [float(value) for row in zip(*scores, strict=True) for value in row]


def table_values(rows) -> list[float]:
    """The precision, recall, F1 and support of the table's rows, row after row."""
    return [float(row[key]) for row in rows for key in COLUMNS]


def test_the_rows_agree_with_sklearn_for_multiclass_predictions():
    generator = torch.Generator().manual_seed(0)
    y_true = torch.randint(0, 5, (300,), generator=generator)
    y_pred = torch.where(torch.rand(300, generator=generator) < 0.5, y_true, 1)  # 1: often wrong
    y_pred[y_pred == 4] = 0  # class 4 is never predicted: precision 0 by convention
    counts = MulticlassStatScores(5, average=None)(y_pred, y_true)
    rows = per_class_rows(counts, ["a", "b", "c", "d", "e"])
    assert [row["class"] for row in rows] == ["a", "b", "c", "d", "e"]
    assert table_values(rows) == pytest.approx(sklearn_table(y_true, y_pred))


def test_the_rows_agree_with_sklearn_for_multilabel_predictions():
    generator = torch.Generator().manual_seed(1)
    y_true = (torch.rand(200, 4, generator=generator) < 0.3).long()
    noise = torch.rand(200, 4, generator=generator) < 0.2
    y_pred = y_true ^ noise.long()
    y_pred[:, 3] = 0  # label 3 is never predicted
    counts = MultilabelStatScores(4, average=None)(y_pred, y_true)
    rows = per_class_rows(counts, list("wxyz"), {"ap": torch.tensor([0.1, 0.2, 0.3, 0.4])})
    assert table_values(rows) == pytest.approx(sklearn_table(y_true, y_pred))
    assert [row["ap"] for row in rows] == pytest.approx([0.1, 0.2, 0.3, 0.4])


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A short multi-class digits run, TensorBoard logging, tested: its folder and metrics."""
    out = tmp_path_factory.mktemp("per_class_multiclass")
    figures = ["~callbacks.test_figures", "~callbacks.augmented_images"]  # matplotlib: seconds
    return out, train(compose_config("train.yaml", out, [*POOR_RUN, *figures]))


def test_per_class_csv_agrees_with_sklearn_on_the_runs_test_predictions(multiclass_run):
    out, metrics = multiclass_run
    rows = read_csv(out / "per_class.csv")
    assert list(rows[0]) == ["class", *COLUMNS]
    assert [row["class"] for row in rows] == [str(i) for i in range(10)]
    # the test predictions, as the confusion matrix counts them: (true, predicted) pairs
    y_true, y_pred = [], []
    for true, row in enumerate(read_csv(out / "confusion_matrix.csv")):
        for predicted, count in enumerate(int(row[str(c)]) for c in range(10)):
            y_true += [true] * count
            y_pred += [predicted] * count
    assert len(y_true) == 360  # the whole test split
    assert table_values(rows) == pytest.approx(sklearn_table(y_true, y_pred))
    assert len({row["precision"] for row in rows}) > 2  # a table with something in it
    # the logged macro averages are the means of the table's columns
    for name in ("precision", "recall", "f1"):
        mean = sum(float(row[name]) for row in rows) / len(rows)
        assert metrics[f"test/{name}"] == pytest.approx(mean, abs=1e-6), name


def test_tensorboard_shows_the_per_class_table_as_text(multiclass_run):
    out, _ = multiclass_run
    (event,) = tensorboard_events(out).Tensors("test/per_class/text_summary")
    lines = event.tensor_proto.string_val[0].decode().splitlines()
    assert lines[0] == "| class | precision | recall | f1 | support |"
    assert lines[1] == "|---|---|---|---|---|"
    shown = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    expected = [
        [row["class"], *(f"{float(row[k]):.4f}" for k in COLUMNS[:3]), row["support"]]
        for row in read_csv(out / "per_class.csv")
    ]
    assert shown == expected


def test_macro_precision_and_recall_are_logged_for_every_stage(multiclass_run):
    out, metrics = multiclass_run
    scalars = tensorboard_scalars(out)
    for stage in ("train", "val", "test"):
        for name in ("precision", "recall"):
            assert f"{stage}/{name}" in scalars and f"{stage}/{name}" in metrics
    assert "val/precision_best" in scalars and "val/recall_best" in scalars


def test_train_and_validation_loss_share_one_tensorboard_chart(multiclass_run):
    out, _ = multiclass_run
    events = tensorboard_events(out)
    (record,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(record.tensor_proto.string_val[0])
    (category,) = layout.category
    (chart,) = category.chart
    assert chart.title == "loss"
    # the tags are regular expressions TensorBoard matches from the start of a name
    assert list(chart.multiline.tag) == ["train/loss$", "val/loss$"]
    assert {"train/loss", "val/loss", "val/loss_best"} <= set(events.Tags()["scalars"])


def test_the_multilabel_table_has_each_labels_scores_and_support(tmp_path):
    small = ["data.train_size=200", "data.val_size=50", "data.test_size=200"]
    overrides = [*POOR_RUN, *SMALL_MULTILABEL, *small, "model.pos_weight=auto", "logger=none"]
    cfg = compose_config("train.yaml", tmp_path, overrides)
    metrics = train(cfg)
    rows = read_csv(tmp_path / "per_class.csv")
    assert list(rows[0]) == ["class", *COLUMNS, "ap"]
    test_targets = instantiate(cfg.data).canvases()[2][1]
    assert [int(row["support"]) for row in rows] == test_targets.sum(dim=0).long().tolist()
    for row in rows:  # the same values as the per-class scalars users already have
        for name in ("f1", "ap"):
            logged = metrics[f"test/per_class/{name}/{row['class']}"]
            assert float(row[name]) == pytest.approx(logged, abs=1e-6)
    # each row's precision and recall give back its F1 (logged by torchmetrics on its own)
    # with the counts its recall and support imply: true positives, then false positives
    for row in rows:
        precision, recall, f1 = (float(row[key]) for key in ("precision", "recall", "f1"))
        tp = recall * int(row["support"])
        assert tp == pytest.approx(round(tp), abs=1e-6), row  # a whole count
        fp = round(tp / precision) - round(tp) if precision > 0 else 0
        fn = int(row["support"]) - round(tp)
        assert f1 == pytest.approx(2 * round(tp) / max(1, 2 * round(tp) + fp + fn), abs=1e-6), row
    assert len({row["precision"] for row in rows}) > 2  # a table with something in it
    assert not (tmp_path / "confusion_matrix.csv").exists()  # multi-class only


def multilabel_model(tmp_path: Path, class_names: str):
    """The multi-label classifier of the real configs, for three classes with these names."""
    overrides = [*FAST, "data=digits_multilabel", "data.num_classes=3"]
    cfg = compose_config("train.yaml", tmp_path, [*overrides, f"data.class_names={class_names}"])
    return instantiate(cfg.model, optimizer=cfg.optimizer, _recursive_=False)


def test_class_names_like_metric_names_never_overwrite_another_metric(tmp_path):
    """A class named `micro` and one named `a/b`: test/f1_micro keeps the task's micro F1, and
    each class's F1 and AP are logged once, one level below the task's metrics."""
    model = multilabel_model(tmp_path, "[micro,'a/b',c]")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 32, 32, generator=generator)
    y = (torch.rand(48, 3, generator=generator) < 0.5).long()
    logger = TensorBoardLogger(tmp_path, name="tensorboard", version="", default_hp_metric=False)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(model, DataLoader(TensorDataset(x, y), batch_size=16), verbose=False)
    logger.finalize("success")

    with torch.no_grad():
        probs = model.eval()(x).sigmoid()
    f1 = multilabel_f1_score(probs, y, num_labels=3, average=None)
    ap = multilabel_average_precision(probs, y, num_labels=3, average=None)
    expected = {
        "test/f1_micro": multilabel_f1_score(probs, y, num_labels=3, average="micro"),
        "test/f1": f1.mean(),
        **{f"test/per_class/f1/{name}": f1[i] for i, name in enumerate(["micro", "a_b", "c"])},
        **{f"test/per_class/ap/{name}": ap[i] for i, name in enumerate(["micro", "a_b", "c"])},
    }
    scalars = tensorboard_scalars(tmp_path)
    for tag, value in expected.items():
        assert scalars[tag] == pytest.approx([float(value)], abs=1e-6), tag
    per_class = sorted(tag for tag in scalars if tag.startswith("test/per_class/"))
    assert per_class == sorted(name for name in expected if name.startswith("test/per_class/"))
    logged = set(model.logged_metric_names(["test"]))
    assert set(scalars) - {"epoch"} == logged  # every name logged once, as the model says


def test_two_class_names_that_would_log_under_one_name_are_refused(tmp_path):
    with pytest.raises(Exception) as error:
        multilabel_model(tmp_path, "['a/b',a_b,c]")
    assert str(user_error_in(error.value)) == (
        "the classes 'a/b' and 'a_b' would log under one name, test/per_class/f1/a_b "
        "(a / in a class name is logged as _): rename one of them"
    )
