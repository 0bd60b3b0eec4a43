"""CIFAR-10 through torchvision's real loader, on a tiny archive in the real on-disk format."""

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torchvision.datasets import CIFAR10

from src.core.errors import ConfigError
from src.train import train

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_tiny_cifar10(root: Path, per_batch: int = 8, test: int = 20) -> dict[str, str]:
    """Write cifar-10-batches-py (5 train batches, a test batch, batches.meta) as torchvision
    expects it, with class-coloured images; return each file's md5."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(name: str, size: int, offset: int) -> None:
        labels = [(offset + i) % 10 for i in range(size)]
        images = rng.integers(0, 40, (size, 3, 32, 32), dtype=np.uint8)
        for image, label in zip(images, labels, strict=True):
            image[label % 3] += np.uint8(20 * label)  # a class-dependent colour
        entry = {
            "batch_label": name,
            "labels": labels,
            "data": images.reshape(size, 3072),
            "filenames": [f"{name}_{i}.png" for i in range(size)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))

    for k in range(1, 6):
        batch(f"data_batch_{k}", per_batch, k)
    batch("test_batch", test, 0)
    meta = {"label_names": CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture
def tiny_cifar10(tmp_path, monkeypatch) -> Path:
    """A tiny archive, with torchvision's checksum table pointed at its files."""
    root = tmp_path / "data"
    md5 = write_tiny_cifar10(root)
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{k}", md5[f"data_batch_{k}"]] for k in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return root


def cifar_overrides(root: Path) -> list[str]:
    return [
        "data=cifar10",
        f"data.data_dir={root}",
        "data.download=false",
        "data.val_size=10",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.pin_memory=false",
    ]


def test_datamodule_splits_and_transforms_the_archive(train_cfg, tiny_cifar10):
    cfg = train_cfg(*cifar_overrides(tiny_cifar10))
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (
        30,
        10,
        20,
    )
    batch = next(iter(datamodule.train_dataloader()))
    assert batch[0].shape == (8, 3, 32, 32) and batch[0].dtype == torch.uint8  # as held
    images, labels = datamodule.on_after_batch_transfer(batch, 0)  # on the training device
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.max() < 10
    again = instantiate(cfg.data)
    again.setup("fit")
    assert torch.equal(again.val_set.images, datamodule.val_set.images)  # the split is seeded


def test_trains_a_step_on_the_archive(train_cfg, tiny_cifar10):
    metrics = train(train_cfg(*cifar_overrides(tiny_cifar10), "debug=fdr"))
    # an untrained 10-class network's cross-entropy is near ln(10); not NaN, not zero
    assert 1.0 < metrics["train/loss"] < 4.0
    assert metrics["test/acc"] * 8 == pytest.approx(round(metrics["test/acc"] * 8))  # 1 batch of 8


def test_corrupted_files_are_refused(train_cfg, tmp_path):
    write_tiny_cifar10(tmp_path / "data")  # checksums differ from the real CIFAR-10
    datamodule = instantiate(train_cfg(*cifar_overrides(tmp_path / "data")).data)
    with pytest.raises(ConfigError, match="missing or corrupted"):
        datamodule.setup("fit")


def test_missing_folder_offline_says_where_to_put_the_archive(train_cfg, tmp_path, offline):
    cfg = train_cfg("data=cifar10", f"data.data_dir={tmp_path / 'nowhere'}", "data.download=true")
    datamodule = instantiate(cfg.data)
    with pytest.raises(ConfigError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert "could not be downloaded (network is unreachable" in message
    assert "cifar-10-python.tar.gz" in message
    assert str(tmp_path / "nowhere") in message and "\n" not in message
