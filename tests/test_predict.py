"""Inference: predict.py on the example image folders, from a checkpoint alone."""

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.serialization
from hydra.utils import instantiate
from torchmetrics.functional.classification import multilabel_average_precision

from scripts.make_example_data import write_digits, write_digits_multilabel
from src.eval import evaluate
from src.predict import predict
from tests.conftest import FAST, SMALL_MULTILABEL, compose_config
from tests.helpers import error_lines, run_in_process


@pytest.fixture
def digits_run(default_run) -> tuple[Path, dict[str, float]]:
    """The default run's best checkpoint and its metrics."""
    out, metrics = default_run
    return out / "checkpoints" / "best.ckpt", metrics


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    write_digits(out / "digits")
    return out


def run_predict(tmp_path: Path, *overrides: str) -> Path:
    return predict(compose_config("predict.yaml", tmp_path, [*FAST, *overrides]))


def test_predictions_on_the_example_test_folder_reproduce_test_accuracy(
    digits_run, examples, tmp_path
):
    ckpt, metrics = digits_run
    test_folder = examples / "digits" / "test"
    written = run_predict(tmp_path, f"ckpt_path={ckpt}", f"input={test_folder}")
    rows = list(csv.DictReader(open(written)))
    assert written.name == "predictions.csv"
    assert len(rows) == len(list(test_folder.rglob("*.png"))) == 360
    assert list(rows[0]) == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    correct = sum(row["class_1"] == Path(row["path"]).parent.name for row in rows)
    assert correct / len(rows) == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert all(float(r["prob_1"]) >= float(r["prob_2"]) >= float(r["prob_3"]) for r in rows)


def test_predict_takes_one_image_or_a_glob_and_writes_json(digits_run, examples, tmp_path):
    ckpt, _ = digits_run
    image = next((examples / "digits" / "test" / "7").glob("*.png"))
    one = json.loads(
        run_predict(
            tmp_path / "a", f"ckpt_path={ckpt}", f"input={image}", "output_format=json", "top_k=20"
        ).read_text()
    )
    assert len(one) == 1 and len(one[0]["top_k"]) == 10  # top_k is capped at the classes
    assert sum(t["probability"] for t in one[0]["top_k"]) == pytest.approx(1, abs=1e-4)
    pattern = str(examples / "digits" / "test" / "**" / "*.png")
    rows = list(
        csv.DictReader(open(run_predict(tmp_path / "b", f"ckpt_path={ckpt}", f"input={pattern}")))
    )
    assert len(rows) == 360


def test_multilabel_predictions_reproduce_the_test_map(multilabel_run, tmp_path):
    out, metrics = multilabel_run
    module = instantiate(compose_config("train.yaml", tmp_path / "cfg", SMALL_MULTILABEL).data)
    write_digits_multilabel(tmp_path / "ml", module)
    truth = {
        row["path"]: row["labels"].split()
        for row in csv.DictReader(open(tmp_path / "ml" / "labels.csv"))
        if row["split"] == "test"
    }
    written = run_predict(
        tmp_path / "run",
        f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}",
        f"input={tmp_path / 'ml' / 'images' / 'test_*.png'}",
        "output_format=json",
    )
    records = json.loads(written.read_text())
    assert len(records) == len(truth) == 300
    names = [str(d) for d in range(10)]
    probs = torch.tensor([[r["probabilities"][n] for n in names] for r in records])
    target = torch.tensor(
        [[int(n in truth["images/" + Path(r["path"]).name]) for n in names] for r in records]
    )
    found = multilabel_average_precision(probs, target, num_labels=10, average="macro")
    assert found.item() == pytest.approx(metrics["test/map"], abs=1e-5)
    assert all(
        set(r["labels"]) == {n for n, p in r["probabilities"].items() if p > 0.5} for r in records
    )


def test_a_checkpoint_saved_on_a_gpu_loads_on_the_cpu(digits_run, examples, tmp_path, monkeypatch):
    ckpt, metrics = digits_run
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["run_config"]["trainer"].update(accelerator="gpu", precision="16-mixed")
    gpu_ckpt = tmp_path / "gpu.ckpt"
    with monkeypatch.context() as patch:  # record every tensor as living on cuda:0
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(checkpoint, gpu_ckpt)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu_ckpt, weights_only=True)  # the file really asks for a GPU
    cfg = compose_config("eval.yaml", tmp_path / "eval", [*FAST, f"ckpt_path={gpu_ckpt}"])
    assert evaluate(cfg)["test/acc"] == pytest.approx(metrics["test/acc"])
    written = run_predict(
        tmp_path / "p", f"ckpt_path={gpu_ckpt}", f"input={examples / 'digits' / 'test'}"
    )
    assert len(list(csv.DictReader(open(written)))) == 360


@pytest.mark.parametrize(
    ("make_input", "expected"),
    [
        (lambda d: d / "notes.ckpt", "is not a readable checkpoint"),
        (lambda d: d / "empty", "holds no images"),
    ],
)
def test_bad_predict_input_gives_one_line_and_writes_nothing(
    digits_run, tmp_path, make_input, expected
):
    ckpt, _ = digits_run
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    target = make_input(tmp_path)
    args = (
        [f"ckpt_path={target}", f"input={tmp_path}"]
        if target.suffix
        else [f"ckpt_path={ckpt}", f"input={target}"]
    )
    logs = tmp_path / "logs"
    result = run_in_process("src/predict.py", f"paths.log_dir={logs}", *args)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (logs / "predict").exists()
