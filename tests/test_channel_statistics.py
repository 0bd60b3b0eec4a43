"""data.mean/std=auto: the training split's per-channel statistics, computed once, remembered
beside the manifest, and carried by the checkpoint to eval and predict."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.core.errors import ConfigError
from src.data.digits import DigitsDataModule
from src.data.image_folder import ImageFolderDataModule
from src.data.statistics import statistics_file
from src.data.transforms import eval_transform_of
from tests.conftest import QUIET
from tests.helpers import error_lines, run_folders, run_in_process, session_hparams

SPLITS = ("train", "val", "test")
# the base colour of each split's images: the training split reddish, the others bluish
BASE = {"train": (200, 60, 30), "val": (30, 60, 200), "test": (30, 90, 220)}


def write_striped(path: Path, base: tuple[int, ...], seed: int, mode: str = "RGB") -> None:
    """A 32x16 PNG: a noisy square of `base` in the middle, white stripes left and right (which
    the centre crop to 16x16 cuts off)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((16, 32, 3), 255, np.uint8)
    noise = rng.integers(-25, 26, (16, 16, 3))
    pixels[:, 8:24] = np.clip(np.array(base) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)


def write_presplit(root: Path, per_class: int = 3, mode: str = "RGB") -> None:
    """root/{train,val,test}/{a,b}/<i>.png, each split in its own colour."""
    for s, split in enumerate(SPLITS):
        for c, name in enumerate("ab"):
            for i in range(per_class):
                write_striped(
                    root / split / name / f"{i}.png", BASE[split], 100 * s + 10 * c + i, mode
                )


def true_statistics(paths: list[Path], crop: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the images' pixels in [0, 1], by PIL and numpy (the centre
    16x16 square of each with crop)."""
    pixels = [np.asarray(Image.open(p).convert("RGB"), np.float64) / 255 for p in paths]
    if crop:
        pixels = [p[:, 8:24] for p in pixels]
    flat = np.concatenate([p.reshape(-1, 3) for p in pixels])
    return flat.mean(0), flat.std(0)


def build(root: Path, **settings) -> ImageFolderDataModule:
    settings = {"image_size": 16, "manifest_dir": str(root.parent / "manifests"), **settings}
    return ImageFolderDataModule(str(root), mean="auto", std="auto", **settings)


def train_paths(dm: ImageFolderDataModule) -> list[Path]:
    return [Path(dm.paths[i]) for i in dm.splits["train"]]


@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_auto_is_the_training_splits_statistics_after_the_centre_crop(tmp_path, pipeline):
    root = tmp_path / "images"
    write_presplit(root)
    dm = build(root, pipeline=pipeline)
    assert {p.parent.parent.name for p in train_paths(dm)} == {"train"}
    mean, std = true_statistics(sorted((root / "train").rglob("*.png")))
    assert dm.mean == pytest.approx(mean.tolist(), abs=1e-4)
    assert dm.std == pytest.approx(std.tolist(), abs=1e-4)
    every_mean, _ = true_statistics(sorted(root.rglob("*.png")))
    assert abs(dm.mean[0] - every_mean[0]) > 0.1 and abs(dm.mean[2] - every_mean[2]) > 0.1
    uncropped_mean, _ = true_statistics(sorted((root / "train").rglob("*.png")), crop=False)
    assert abs(dm.mean[2] - uncropped_mean[2]) > 0.1  # the white stripes are not counted

    # and the images are normalised with them: the val images' mean colour, in those units
    dm.setup("fit")
    images, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    val_mean, _ = true_statistics(sorted((root / "val").rglob("*.png")))
    expected = (val_mean - np.array(dm.mean)) / np.array(dm.std)
    found = images.double().mean(dim=(0, 2, 3)).numpy()
    assert found == pytest.approx(expected, abs=1e-3)


def test_a_split_of_one_folder_uses_its_training_images_and_follows_the_split_seed(tmp_path):
    root = tmp_path / "images"
    for c, name in enumerate("ab"):
        for i in range(10):
            base = (40 + 20 * i, 200 - 15 * i, 90 + 5 * c)  # every image its own colour
            write_striped(root / name / f"{i}.png", base, 10 * c + i)
    first = build(root, val_fraction=0.2, test_fraction=0.2)
    assert first.mean == pytest.approx(true_statistics(train_paths(first))[0].tolist(), abs=1e-4)
    other = build(root, val_fraction=0.2, test_fraction=0.2, split_seed=7)
    assert set(train_paths(other)) != set(train_paths(first))
    assert other.mean == pytest.approx(true_statistics(train_paths(other))[0].tolist(), abs=1e-4)
    assert other.mean != first.mean


def stats_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("data.mean/std")]


def decode_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "into memory" in r.getMessage()]


def test_a_second_build_reads_the_remembered_statistics_and_a_changed_split_computes_them(
    tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    root = tmp_path / "images"
    write_presplit(root)
    remembered = statistics_file(tmp_path / "manifests", root)
    first = build(root, pipeline="batched")
    [line] = stats_lines(caplog)
    assert "of the 6 training images at 16x16 (computed in" in line
    assert decode_lines(caplog)  # the batched pipeline decoded the images to compute them
    written = remembered.stat().st_mtime_ns

    caplog.clear()
    again = build(root, pipeline="batched")
    assert (again.mean, again.std) == (first.mean, first.std)
    [line] = stats_lines(caplog)
    assert line.endswith(f"(remembered in {remembered})")
    assert decode_lines(caplog) == []  # nothing decoded: the images wait for setup
    assert remembered.stat().st_mtime_ns == written

    caplog.clear()  # a new training image: computed again, the new colour counted
    write_striped(root / "train" / "a" / "new.png", (255, 255, 255), 99)
    added = build(root, pipeline="batched")
    assert "of the 7 training images at 16x16 (computed in" in stats_lines(caplog)[0]
    assert added.mean[2] > first.mean[2] + 0.05
    assert remembered.stat().st_mtime_ns != written

    caplog.clear()  # the same file edited in place: computed again
    write_striped(root / "train" / "a" / "new.png", (0, 0, 0), 99)
    edited = build(root, pipeline="per_sample")
    assert "(computed in" in stats_lines(caplog)[0]
    mean, _ = true_statistics(sorted((root / "train").rglob("*.png")))
    assert edited.mean == pytest.approx(mean.tolist(), abs=1e-4)

    caplog.clear()  # without a manifest_dir: computed every time, nothing remembered
    build(root, manifest_dir=None)
    assert "(computed in" in stats_lines(caplog)[0]


def test_either_key_alone_may_be_auto_and_bad_values_are_refused_in_one_line(tmp_path):
    root = tmp_path / "images"
    write_presplit(root)
    mean, std = true_statistics(sorted((root / "train").rglob("*.png")))
    manifests = str(tmp_path / "manifests")
    only_mean = ImageFolderDataModule(str(root), image_size=16, mean="auto", std=[0.2, 0.3, 0.4])
    assert only_mean.mean == pytest.approx(mean.tolist(), abs=1e-4)
    assert only_mean.std == [0.2, 0.3, 0.4]
    only_std = ImageFolderDataModule(
        str(root), image_size=16, manifest_dir=manifests, mean=[0.5, 0.5, 0.5], std="auto"
    )
    assert (only_std.mean, only_std.std) == ([0.5, 0.5, 0.5], pytest.approx(std, abs=1e-4))

    with pytest.raises(ConfigError) as refused:
        ImageFolderDataModule(str(root), image_size=16, mean="auto", std=[0.2, 0.2])
    assert str(refused.value) == (
        "data.mean=auto and data.std=[0.2, 0.2] need three numbers each (one a channel: the "
        "images are read as RGB) or auto, the stds positive"
    )
    with pytest.raises(ConfigError, match=r"^data.mean=average and data.std=auto need three"):
        ImageFolderDataModule(str(root), mean="average", std="auto")
    names = [str(d) for d in range(10)]
    with pytest.raises(ConfigError) as refused:
        DigitsDataModule(num_classes=10, class_names=names, mean="auto", std="auto")
    assert str(refused.value) == (
        "data.mean/std=auto is computed for image folders (data=image_folder) only: "
        "DigitsDataModule has fixed statistics, give three numbers each (as its config does)"
    )


def test_a_grayscale_folder_gives_one_number_and_three_equal_ones_as_rgb(tmp_path):
    root = tmp_path / "gray"
    write_presplit(root, mode="L")
    gray = np.concatenate(
        [np.asarray(Image.open(p), np.float64)[:, 8:24].ravel() / 255
         for p in sorted((root / "train").rglob("*.png"))]
    )  # fmt: skip
    dm = build(root)
    assert dm.channels == 1
    assert dm.mean == pytest.approx([gray.mean()], abs=1e-4)
    assert dm.std == pytest.approx([gray.std()], abs=1e-4)
    rgb = build(root, channels=3)
    assert rgb.mean == pytest.approx([gray.mean()] * 3, abs=1e-4)
    assert rgb.std == pytest.approx([gray.std()] * 3, abs=1e-4)


# a short run on a test-made folder with data.mean/std=auto (the folder and log_dir: per test)
RUN = [
    "data=image_folder",
    "data.image_size=16",
    "data.num_workers=0",
    "data.batch_size=8",
    "data.mean=auto",
    "data.std=auto",
    *QUIET,
    "~callbacks.augmented_images",
    "~callbacks.test_figures",
    "model=cnn",
    "model.net.channels=[8,8,16]",
    "model.net.hidden_dim=32",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "test=false",
    "logger=tensorboard_csv",
]


def test_a_run_with_auto_records_the_numbers_that_eval_predict_and_resuming_use(tmp_path):
    root = tmp_path / "images"
    write_presplit(root, per_class=4)
    logs = tmp_path / "logs"
    result = run_in_process(
        "src/train.py",
        f"data.root={root}",
        f"data.manifest_dir={tmp_path / 'manifests'}",
        *RUN,
        f"paths.log_dir={logs}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = run_folders(logs)
    mean, std = true_statistics(sorted((root / "train").rglob("*.png")))
    log_text = (run / "train.log").read_text()
    assert log_text.count("data.mean/std=auto: mean [") == 1

    data = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["run_config"]["data"]
    assert all(isinstance(v, float) for v in data["mean"] + data["std"])
    assert data["mean"] == pytest.approx(mean.tolist(), abs=1e-4)
    assert data["std"] == pytest.approx(std.tolist(), abs=1e-4)
    saved = OmegaConf.load(run / ".hydra" / "config.yaml").data
    assert (list(saved.mean), list(saved.std)) == (data["mean"], data["std"])
    assert session_hparams(run)["data.mean"] == str(data["mean"])

    # eval's data module, built from the checkpoint, normalises with the recorded numbers
    rebuilt = instantiate(OmegaConf.create(data))
    assert (rebuilt.mean, rebuilt.std) == (data["mean"], data["std"])
    # predict's transform too, with the training folder gone (nothing to compute from)
    shutil.move(root, tmp_path / "elsewhere")
    image = tmp_path / "elsewhere" / "val" / "a" / "0.png"
    pixels = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"))[:, 8:24].copy())
    expected = (pixels.permute(2, 0, 1) / 255 - torch.tensor(data["mean"])[:, None, None]) / (
        torch.tensor(data["std"])[:, None, None]
    )
    found = eval_transform_of(data)(Image.open(image).convert("RGB"))
    assert torch.allclose(found, expected, atol=1e-5)
    predicted = run_in_process(
        "src/predict.py",
        "extras.print_config=false",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"input={image.parent}",
        f"paths.log_dir={tmp_path / 'predict'}",
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]

    # a resumed run normalises as it trained, not with the statistics of the folder as it is now
    write_striped(tmp_path / "elsewhere" / "train" / "a" / "white.png", (255, 255, 255), 7)
    resumed = run_in_process(
        "src/train.py",
        f"data.root={tmp_path / 'elsewhere'}",
        f"data.manifest_dir={tmp_path / 'manifests'}",
        *RUN,
        f"paths.log_dir={tmp_path / 'resumed'}",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    [again] = run_folders(tmp_path / "resumed")
    assert "data.mean/std=auto" not in (again / "train.log").read_text()
    saved = OmegaConf.load(again / ".hydra" / "config.yaml").data
    assert (list(saved.mean), list(saved.std)) == (data["mean"], data["std"])

    refused = run_in_process(
        "src/eval.py",
        "extras.print_config=false",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "data.mean=auto",
        f"paths.log_dir={tmp_path / 'eval'}",
    )
    assert refused.returncode == 2
    assert error_lines(refused) == [
        "error: eval normalises with the statistics the run trained with (the checkpoint's "
        "data.mean and data.std): drop data.mean=auto and data.std=auto"
    ]
