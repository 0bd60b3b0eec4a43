"""Binary classification (data.task=binary) on a real two-class image folder: one logit trained
with BCEWithLogits, class 1 predicted above the threshold, the binary metrics with AUROC, the 2x2
test outputs, predict's positive-class probability, eval of the checkpoint and the refusals."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from src.data.augmentation import parse_augmentation
from src.data.batch_mixing import draw_mixing, mix_batch
from src.eval import evaluate
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.models.loss import ClassificationLoss
from src.models.metrics import TaskMetrics
from src.models.tasks import training_predictions
from src.predict import predict, prediction_records
from src.train import train
from tests.conftest import LEAN, QUIET, binary_overrides, compose_config, write_two_digit_folder
from tests.helpers import csv_metric, error_lines, run_in_process

EPOCHS = 4
NAMES = ["one", "zero"]  # class 1, zero, is the positive class


@pytest.fixture(scope="module")
def binary_run(binary_folder, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """Four epochs of the small CNN on 0s (positive, a quarter) against 1s: folder, metrics."""
    out = tmp_path_factory.mktemp("binary_run")
    overrides = [
        *LEAN,
        *binary_overrides(binary_folder),
        "model=cnn",
        f"trainer.max_epochs={EPOCHS}",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
        "logger=csv",
    ]
    return out, train(compose_config("train.yaml", out, overrides))


def test_a_binary_run_learns_and_logs_auroc(binary_run):
    out, metrics = binary_run
    majority = 30 / 40  # the test split: 30 ones, 10 zeros
    assert metrics["test/acc"] >= majority + 0.15
    assert csv_metric(out, "test/auroc") == [pytest.approx(metrics["test/auroc"])]
    assert metrics["test/auroc"] >= 0.95
    for name in ("f1", "precision", "recall"):
        assert len(csv_metric(out, f"test/{name}")) == 1
    aurocs = csv_metric(out, "val/auroc")
    assert len(aurocs) == EPOCHS and "train/auroc" not in metrics  # AUROC: not in training
    # the best so far moves up (the metric-direction table says AUROC is maximised)
    assert csv_metric(out, "val/auroc_best") == pytest.approx(np.maximum.accumulate(aurocs))
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["run_config"]["monitor"] == "val/acc"
    model = classifier_from_checkpoint(checkpoint).eval()
    assert model(torch.zeros(3, 3, 16, 16)).shape == (3, 1)  # one logit


def test_the_test_writes_a_2x2_confusion_matrix_and_both_classes(binary_run):
    out, metrics = binary_run
    rows = list(csv.reader(open(out / "confusion_matrix.csv")))
    counts = [[int(v) for v in row[1:]] for row in rows[1:]]
    assert [row[0] for row in rows[1:]] == NAMES and len(counts) == 2 and len(counts[0]) == 2
    assert [sum(row) for row in counts] == [30, 10]  # rows: the true classes
    assert (counts[0][0] + counts[1][1]) / 40 == pytest.approx(metrics["test/acc"])
    per_class = {row["class"]: row for row in csv.DictReader(open(out / "per_class.csv"))}
    assert set(per_class) == set(NAMES) and int(per_class["zero"]["support"]) == 10
    assert float(per_class["zero"]["recall"]) == pytest.approx(metrics["test/recall"])


def test_eval_accepts_the_binary_checkpoint(binary_run, tmp_path):
    out, metrics = binary_run
    cfg = compose_config(
        "eval.yaml",
        tmp_path,
        ["extras.print_config=false", "logger=none", f"ckpt_path={out}/checkpoints/last.ckpt"],
    )
    found = evaluate(cfg)
    for name in ("test/acc", "test/auroc", "test/f1"):  # the train run tested last.ckpt too
        assert found[name] == pytest.approx(metrics[name])


def test_predict_writes_the_class_and_the_sigmoid_of_the_logit(binary_run, tmp_path):
    out, _ = binary_run
    ckpt = out / "checkpoints" / "last.ckpt"
    model = classifier_from_checkpoint(read_checkpoint(ckpt)).eval()
    dm = instantiate(torch.load(ckpt, weights_only=True)["run_config"]["data"])
    dm.setup("test")
    images, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    with torch.no_grad():
        logits = model(images)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for n, i in enumerate(dm.splits["test"][: len(images)]):  # 00.png, ... in the test order
        shutil.copy(dm.paths[i], inputs / f"{n:02d}.png")
    overrides = ["extras.print_config=false", f"ckpt_path={ckpt}", f"input={inputs}"]
    written = predict(compose_config("predict.yaml", tmp_path / "predict", overrides))
    rows = list(csv.DictReader(open(written)))
    assert list(rows[0]) == ["path", "class", "p_zero"]  # the positive class's probability
    p = [float(row["p_zero"]) for row in rows]
    assert p == pytest.approx(logits.squeeze(1).sigmoid().tolist(), abs=1e-5)
    assert [row["class"] for row in rows] == [NAMES[q > 0.5] for q in p]
    assert {"one", "zero"} == {row["class"] for row in rows}


def test_the_loss_is_torchs_bce_with_logits_on_the_one_logit():
    logits = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 1, 0, 0, 0, 1, 0])
    plain = ClassificationLoss("binary", 2)
    assert plain(logits, targets) == pytest.approx(
        F.binary_cross_entropy_with_logits(logits[:, 0], targets.float()).item()
    )
    weighted = ClassificationLoss("binary", 2, pos_weight=3.0)
    torch_loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]))
    assert weighted(logits, targets) == pytest.approx(torch_loss(logits[:, 0], targets.float()))
    assert weighted(logits, targets) > plain(logits, targets)  # missed positives cost more
    auto = ClassificationLoss("binary", 2, pos_weight="auto")
    auto.fit_to(targets)  # 5 negatives, 3 positives
    assert auto.pos_weight.tolist() == pytest.approx([5 / 3])


def test_label_smoothing_is_two_class_cross_entropys():
    """Smoothing one logit z is CrossEntropy's smoothing of the two logits (0, z): a 2-class
    model's label_smoothing means the same with data.task=binary."""
    z = torch.randn(8, 1, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 1, 0, 0, 0, 1, 0])
    binary = ClassificationLoss("binary", 2, label_smoothing=0.2)(z, targets)
    two_logits = torch.cat([torch.zeros_like(z), z], dim=1)
    assert binary == pytest.approx(F.cross_entropy(two_logits, targets, label_smoothing=0.2))


def test_mixed_binary_targets_are_the_mixed_share_of_class_1():
    aug = parse_augmentation({"mixup_alpha": 0.4})
    targets = torch.tensor([1, 0, 0, 1, 1, 0])
    lam = draw_mixing(aug, 8, 8, np.random.default_rng(0)).lam  # the draw mix_batch makes
    _, soft = mix_batch(torch.rand(6, 3, 8, 8), targets, aug, 2, np.random.default_rng(0), True)
    assert soft.shape == (6,) and 0 < lam < 1
    assert soft.tolist() == pytest.approx((lam * targets + (1 - lam) * targets.roll(1)).tolist())
    logits = torch.randn(6, 1)
    loss = ClassificationLoss("binary", 2)(logits, soft, mixed=True)
    assert loss == pytest.approx(F.binary_cross_entropy_with_logits(logits[:, 0], soft).item())


def test_a_higher_threshold_never_predicts_more_positives():
    probs = torch.rand(200, generator=torch.Generator().manual_seed(2))
    targets = (torch.rand(200, generator=torch.Generator().manual_seed(3)) < 0.4).long()
    logits = torch.logit(probs).unsqueeze(1)
    counts = []
    for threshold in (0.1, 0.3, 0.5, 0.7, 0.9):
        records = prediction_records(["x"] * 200, probs, NAMES, "binary", 1, threshold)
        predicted = sum(r["class"] == "zero" for r in records)
        metrics = TaskMetrics("binary", 2, threshold, NAMES)
        metrics.update_test(probs, targets)
        matrix = metrics.finish_test().confusion_matrix
        trained = int(training_predictions("binary", logits, threshold).sum())
        assert int(matrix[:, 1].sum()) == predicted == trained
        counts.append(predicted)
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert counts[2] == int((probs > 0.5).sum())


def refusal(tmp_path: Path, case: str) -> list[str]:
    """Overrides of a train.py command refused before training."""
    root = tmp_path / "images"
    if case == "three_classes":
        write_two_digit_folder(root, {"a": (0, 5), "b": (1, 5), "c": (2, 5)})
        return binary_overrides(root)
    write_two_digit_folder(root, {"one": (1, 5), "zero": (0, 5)})
    if case == "multi_label_rows":
        rows = [[f"{c}/{p.name}", c] for c in ("one", "zero") for p in (root / c).iterdir()]
        rows[0][1] = "one zero"
        with open(root / "labels.csv", "w", newline="") as file:
            csv.writer(file).writerows([["path", "labels"], *rows])
        return [*binary_overrides(root), "data.labels_file=labels.csv"]
    extra = {"class_weights": "model.class_weights=[1,3]", "head": "+model.net.num_classes=2"}
    return [*binary_overrides(root), extra[case]]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("three_classes", "data.task=binary needs exactly two classes"),
        ("multi_label_rows", "is multi-label (row 1 has 2 labels): use data.task=multilabel"),
        ("class_weights", "for binary data weight class 1 with model.pos_weight"),
        ("head", "head has 2 outputs but the data has binary classes (one logit)"),
    ],
)
def test_what_binary_cannot_take_is_refused_in_one_line(tmp_path, case, message):
    result = run_in_process(
        "src/train.py",
        *refusal(tmp_path, case),
        *QUIET,
        "trainer.accelerator=cpu",
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    assert result.returncode != 0
    [line] = error_lines(result)
    assert message in line, line
