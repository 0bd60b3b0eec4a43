"""A grey-scale image folder is decoded and trained as one channel, with its own mean and std, and
its checkpoint evaluates and predicts the same way; a colour folder stays RGB."""

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.digits import load_digit_images
from src.data.image_folder import ImageFolderDataModule
from src.eval import evaluate
from src.models.nets.timm_net import TimmNet
from src.models.nets.torchvision_net import TorchvisionNet, use_input_channels
from src.predict import predict
from src.train import train
from tests.conftest import FAST, LEAN, ONE_EPOCH, QUIET, compose_config
from tests.helpers import error_lines, run_in_process


def write_grey_digits(root: Path, per_class: int = 20, rgb_one: bool = False) -> Path:
    """root/<digit>/<n>.png: three digits as one-channel (L) PNGs; with rgb_one, one of them
    saved as RGB."""
    images, labels = load_digit_images(16)
    for digit in (0, 1, 2):
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
        for i in (labels == digit).nonzero().flatten()[:per_class].tolist():
            grey = Image.fromarray(images[i, 0].numpy())  # the digits' channels are equal
            grey.save(root / str(digit) / f"{i}.png")
    if rgb_one:
        first = next((root / "0").glob("*.png"))
        Image.open(first).convert("RGB").save(first)
    return root


def module(root: Path, **settings) -> ImageFolderDataModule:
    return ImageFolderDataModule(root=str(root), mean="auto", std="auto", **settings)


@pytest.fixture(scope="module")
def grey_folder(tmp_path_factory) -> Path:
    return write_grey_digits(tmp_path_factory.mktemp("grey") / "images")


def test_a_grey_folder_is_one_channel_with_its_own_statistics(grey_folder):
    data = module(grey_folder)
    assert data.channels == 1
    images = data.decode_all()
    assert images.shape[1:] == (1, 16, 16)
    train = images[torch.as_tensor(data.splits["train"])].float() / 255
    assert data.mean == pytest.approx([train.mean().item()], abs=1e-4)
    assert data.std == pytest.approx([train.std().item()], abs=2e-3)


def test_one_colour_image_makes_the_folder_rgb_and_channels_3_forces_it(tmp_path, grey_folder):
    mixed = write_grey_digits(tmp_path / "mixed", rgb_one=True)
    assert module(mixed).channels == 3
    forced = module(grey_folder, channels=3)
    assert forced.channels == 3 and forced.decode_all().shape[1] == 3
    assert len(forced.mean) == 3 and forced.mean[0] == pytest.approx(forced.mean[2])


def test_three_statistics_for_a_grey_folder_are_refused_in_one_line(grey_folder, tmp_path):
    imagenet = ["data.mean=[0.485,0.456,0.406]", "data.std=[0.229,0.224,0.225]"]
    args = ["data=image_folder", f"data.root={grey_folder}", "data.manifest_dir=null", *imagenet]
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}", *QUIET, *args)
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: data.mean=[0.485, 0.456, 0.406] and data.std=[0.229, 0.224, 0.225] need one "
        "number each (one a channel: the images are read as grey-scale) or auto, the stds positive"
    ]


@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_a_grey_run_trains_one_channel_and_eval_and_predict_follow_it(
    grey_folder, tmp_path, pipeline
):
    folder = ["data=image_folder", f"data.root={grey_folder}", "data.manifest_dir=null"]
    overrides = [*LEAN, *ONE_EPOCH, *folder, f"data.pipeline={pipeline}", "data.num_workers=0"]
    overrides += ["trainer.limit_test_batches=null", "model=cnn", "data.augment.contrast=0.3"]
    out = tmp_path / "run"
    metrics = train(compose_config("train.yaml", out, overrides))
    best = out / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["state_dict"]["net.features.0.weight"].shape[1] == 1
    assert checkpoint["hyper_parameters"]["net"]["in_channels"] == 1
    scores = evaluate(compose_config("eval.yaml", tmp_path / "eval", [*FAST, f"ckpt_path={best}"]))
    assert scores["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    # predict reads the files as one channel too: the test split's predictions, file by file
    written = predict(
        compose_config(
            "predict.yaml", tmp_path / "p", [*FAST, f"ckpt_path={best}", f"input={grey_folder}"]
        )
    )
    rows = list(csv.DictReader(open(written)))
    assert len(rows) == 60
    tested = list(csv.DictReader(open(out / "per_class.csv")))
    assert sum(int(row["support"]) for row in tested) == 6  # a tenth of the 60 images


def test_a_torchvision_net_on_one_channel_gives_what_three_copies_gave():
    rgb = TorchvisionNet("resnet18", num_classes=4).eval()
    grey = copy.deepcopy(rgb)
    use_input_channels(grey.model, 1, "resnet18")
    assert grey.model.conv1.in_channels == 1
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5)
    built = TorchvisionNet("resnet18", num_classes=4, in_channels=1)
    assert built.model.conv1.weight.shape[1] == 1


def test_a_timm_net_takes_one_channel():
    net = TimmNet("test_resnet", num_classes=3, in_channels=1)
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1


def test_rgb_folders_and_the_built_in_data_stay_three_channels(train_cfg, tmp_path):
    assert train_cfg().model.net.in_channels == 3  # digits: no data.channels
    colour = tmp_path / "colour"
    for name in ("a", "b"):
        (colour / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.random.default_rng(i).integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(colour / name / f"{i}.png")
    assert module(colour).channels == 3
