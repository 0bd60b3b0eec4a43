"""Predict classes of new images with a trained checkpoint, into predictions.csv (or .json).

    python src/predict.py ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt input=photos/

The checkpoint alone supplies the model, the class names, the task and the evaluation transforms.
"""

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import DataLoader

import src.cli.resolvers  # noqa: F401  (registers the resolvers the configs use)
from src.cli.extras import apply_extras, keep_file_logs_on_rank_zero, leave_process_group
from src.cli.one_line_errors import hydra_errors_on_one_line, report_user_errors
from src.core.errors import ConfigError
from src.core.files import write_atomically
from src.core.runs import RUN_CONFIG_KEY
from src.data.predict_inputs import ImagePathDataset, find_images
from src.data.transforms import eval_transform_of
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.tracking.provenance import record_provenance

log = logging.getLogger(__name__)
FORMATS = ("csv", "json")


def prediction_records(
    paths: Sequence[Path],
    probs: Tensor,
    class_names: Sequence[str],
    task: str,
    top_k: int,
    threshold: float,
) -> list[dict[str, Any]]:
    """One record per image: the top-k classes (multi-class), the predicted class and the
    positive class's probability (binary: class 1 above threshold), or the labels above threshold
    and every label's probability (multi-label)."""
    records = []
    for path, p in zip(paths, probs.tolist(), strict=True):
        if task == "binary":  # p: the probability of class 1, the positive class
            predicted = class_names[int(p > threshold)]
            records.append(
                {"path": str(path), "class": predicted, "probabilities": {class_names[1]: p}}
            )
        elif task == "multiclass":
            order = sorted(range(len(p)), key=lambda c: -p[c])[:top_k]
            top = [{"class": class_names[c], "probability": p[c]} for c in order]
            records.append({"path": str(path), "top_k": top})
        else:
            labels = [name for name, q in zip(class_names, p, strict=True) if q > threshold]
            probabilities = dict(zip(class_names, p, strict=True))
            records.append({"path": str(path), "labels": labels, "probabilities": probabilities})
    return records


def csv_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: path, class_1, prob_1, ... (multi-class), path, class, p_<positive class>
    (binary) or path, labels, p_<label>, ... (multi-label)."""
    if "top_k" in records[0]:
        k = len(records[0]["top_k"])
        header = ["path"] + [f"{col}_{i}" for i in range(1, k + 1) for col in ("class", "prob")]
        rows = [
            [r["path"]] + [v for t in r["top_k"] for v in (t["class"], f"{t['probability']:.6f}")]
            for r in records
        ]
        return header, rows
    names = list(records[0]["probabilities"])
    predicted = "class" if "class" in records[0] else "labels"
    header = ["path", predicted] + [f"p_{name}" for name in names]
    rows = [
        [r["path"], r["class"] if predicted == "class" else " ".join(r["labels"])]
        + [f"{r['probabilities'][n]:.6f}" for n in names]
        for r in records
    ]
    return header, rows


def write_records(records: list[dict[str, Any]], path: Path) -> None:
    """Write CSV or JSON (by the file's suffix) through a temporary file, so no half file stays."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            if path.suffix == ".json":
                json.dump(records, file, indent=1)
            else:
                header, rows = csv_rows(records)
                writer = csv.writer(file)
                writer.writerow(header)
                writer.writerows(rows)

    write_atomically(path, write)


class PredictionsInInputOrder(BasePredictionWriter):
    """Every process's class probabilities, gathered after prediction into one tensor in the
    order of the inputs (`probs`). Under DDP each process predicts its own share of the images
    (Lightning's sampler repeats none) and records their indices."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")
        self.probs = torch.empty(0)

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        indices = [i for batch in batch_indices[0] for i in batch]  # one loader's batches
        probs = torch.cat([batch.float().cpu() for batch in predictions])
        shares: list[Any] = [(indices, probs)]
        if trainer.world_size > 1:
            shares = [None] * trainer.world_size
            torch.distributed.all_gather_object(shares, (indices, probs))
        order = torch.tensor([i for share_indices, _ in shares for i in share_indices])
        self.probs = torch.cat([share_probs for _, share_probs in shares])[order.argsort()]


def predict(cfg: DictConfig) -> Path:
    """Predict every image of `input` and write the predictions into the run folder."""
    if cfg.output_format not in FORMATS:
        raise ConfigError(f"output_format={cfg.output_format} is not one of {FORMATS}")
    if cfg.top_k < 1:
        raise ConfigError(f"top_k must be 1 or more, got {cfg.top_k}")
    checkpoint = read_checkpoint(cfg.get("ckpt_path"), map_location="cpu")  # checked: safe to build
    images = find_images(cfg.get("input"))
    model = classifier_from_checkpoint(checkpoint, f"ckpt_path={cfg.ckpt_path}")
    data = dict(checkpoint[RUN_CONFIG_KEY]["data"])
    if cfg.get("image_size"):
        data["image_size"] = cfg.image_size
    transform = eval_transform_of(data)
    loader = DataLoader(
        ImagePathDataset(images, transform, int(data.get("channels") or 3)),
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
    )
    gathered = PredictionsInInputOrder()
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[gathered])
    trainer.predict(model, loader, return_predictions=False)

    path = Path(cfg.paths.output_dir) / f"predictions.{cfg.output_format}"
    if not trainer.is_global_zero:  # under DDP, rank zero writes what every process predicted
        return path
    hp = model.hparams
    threshold = cfg.threshold if cfg.get("threshold") is not None else hp.threshold
    records = prediction_records(
        images, gathered.probs, hp.class_names, hp.task, min(cfg.top_k, hp.num_classes), threshold
    )
    write_records(records, path)
    record_provenance(Path(cfg.paths.output_dir))
    log.info(f"Wrote {len(records)} predictions to {path}")
    return path


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict.yaml")
@report_user_errors
def main(cfg: DictConfig) -> None:
    """Entry point."""
    keep_file_logs_on_rank_zero()
    apply_extras(cfg)
    predict(cfg)
    leave_process_group()


if __name__ == "__main__":
    with hydra_errors_on_one_line():
        main()
