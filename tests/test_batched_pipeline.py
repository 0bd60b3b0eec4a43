"""The batched pipeline draws what the per-image torchvision transforms draw, on the same data."""

from pathlib import Path

import hydra
import pytest
import torch
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import DistributedSampler

from src.core.errors import user_error_in
from src.data.augmentation import (
    parse_augmentation,
    per_sample_eval_transform,
    per_sample_train_transform,
)
from src.data.batch_augment import BatchAugmentation
from src.data.digits import DigitsDataModule
from src.data.in_memory import augmentation_seed
from tests.conftest import compose_config

DRAWS = 2000
STEP = 7  # the coded image's pixel values: (row + 1) * STEP in channel 0, (col + 1) * STEP in 1


def coded_image(size: int = 32) -> torch.Tensor:
    """A uint8 image whose pixels say where they come from; zero only where padding or fill is."""
    index = (torch.arange(size) + 1) * STEP
    rows = index[:, None].expand(size, size)
    cols = index[None, :].expand(size, size)
    return torch.stack([rows, cols, torch.full((size, size), 255)]).to(torch.uint8)


def draw_both(spec: dict, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DRAWS augmented copies of `image` from each pipeline, normalised with mean 0 and std 1."""
    aug = parse_augmentation(spec)
    torch.manual_seed(0)
    per_sample = per_sample_train_transform(aug, [0, 0, 0], [1, 1, 1], tuple(image.shape[-2:]))
    one_by_one = torch.stack([per_sample(image) for _ in range(DRAWS)])
    batched = BatchAugmentation(aug, [0, 0, 0], [1, 1, 1])
    whole = batched(image.expand(DRAWS, -1, -1, -1), torch.Generator().manual_seed(1))
    return one_by_one, whole


def source_position(images: torch.Tensor, row: int, col: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the output pixel (row, col) of coded images came from (-1 where it is fill)."""
    pixel = (images[:, :2, row, col] * 255 / STEP).round() - 1
    return pixel[:, 0], pixel[:, 1]


def test_crop_offsets_and_flip_rate_match_torchvision():
    one_by_one, whole = draw_both({"crop_padding": 4, "hflip": 0.5}, coded_image())
    for images in (one_by_one, whole):
        src_row, src_col = source_position(images, 16, 16)
        offsets = src_row - 16 + 4  # the crop's top offset into the padded image
        frequencies = torch.bincount(offsets.long(), minlength=9).float() / DRAWS
        assert len(frequencies) == 9 and (frequencies - 1 / 9).abs().max() < 0.03, frequencies
        _, next_col = source_position(images, 16, 17)
        flipped = (next_col < src_col).float().mean()
        assert abs(flipped - 0.5) < 0.04


def test_affine_shifts_rotations_and_zooms_match_torchvision():
    spec = {"degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1]}
    one_by_one, whole = draw_both(spec, coded_image())
    for row, col in ((16, 16), (6, 6), (26, 20)):
        (a_row, a_col), (b_row, b_col) = (source_position(x, row, col) for x in (one_by_one, whole))
        inside = (a_row >= 0) & (b_row >= 0)
        for a, b in ((a_row, b_row), (a_col, b_col)):
            a, b = a[inside], b[inside]
            assert abs(a.mean() - b.mean()) < 0.25, (row, col)
            assert abs(a.std() / b.std() - 1) < 0.08, (row, col, a.std(), b.std())
    for images in (one_by_one, whole):
        src_row, _ = source_position(images, 16, 16)
        assert src_row.min() >= 16 - 6 and src_row.max() <= 16 + 6  # 3 shifted, 2 zoomed, 1 turned


def test_colour_jitter_and_erasing_pixel_statistics_match_torchvision():
    image = torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(3))
    image = image.to(torch.uint8)
    spec = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4}
    one_by_one, whole = draw_both(spec, image)
    assert abs(one_by_one.mean() - whole.mean()) < 0.01
    assert abs(one_by_one.std() / whole.std() - 1) < 0.03
    per_image = (one_by_one.std(dim=(1, 2, 3)), whole.std(dim=(1, 2, 3)))
    assert abs(per_image[0].std() / per_image[1].std() - 1) < 0.1  # the spread of contrasts
    one_by_one, whole = draw_both({"erasing": 0.5}, image)
    erased = [(x == 0).all(dim=1).flatten(1).float() for x in (one_by_one, whole)]
    rates = [(e.sum(1) > 0).float().mean() for e in erased]
    assert abs(rates[0] - 0.5) < 0.04 and abs(rates[1] - 0.5) < 0.04
    areas = [e.sum(1)[e.sum(1) > 0].mean() / 256 for e in erased]
    assert abs(areas[0] - areas[1]) < 0.02 and 0.1 < areas[1] < 0.2


def datamodule(pipeline: str, **settings) -> DigitsDataModule:
    cfg = compose_config(
        "train.yaml", Path("unused"), ["data.batch_size=50", f"data.pipeline={pipeline}"]
    )
    dm: DigitsDataModule = hydra.utils.instantiate(cfg.data, **settings)
    dm.setup("fit")
    return dm


def batches(dm: DigitsDataModule, loader) -> list:
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def test_without_augmentation_batched_batches_equal_the_per_sample_eval_transform():
    batched, per_sample = datamodule("batched"), datamodule("per_sample")
    for loader in ("val_dataloader", "test_dataloader"):
        a = batches(batched, getattr(batched, loader)())
        b = batches(per_sample, getattr(per_sample, loader)())
        assert len(a) == len(b) > 1
        for (x, y), (u, v) in zip(a, b, strict=True):
            assert x.dtype == u.dtype == torch.float32
            assert torch.allclose(x, u, atol=1e-6) and torch.equal(y, v)
    # augmentation switched off: training batches are the evaluation transform too
    plain = BatchAugmentation(parse_augmentation({}), batched.mean, batched.std)
    images = batched.train_set.images[:20]
    expected = torch.stack(
        [per_sample_eval_transform(batched.mean, batched.std)(i) for i in images]
    )
    assert torch.allclose(plain(images, torch.Generator()), expected, atol=1e-6)


def test_batched_loader_shuffles_drops_last_and_shards_under_ddp():
    dm = datamodule("batched", drop_last=True)
    loader = dm.train_dataloader()
    first, second = (torch.cat([y for _, y in loader]) for _ in range(2))
    assert len(first) == len(dm.train_set) // 50 * 50  # the last, partial batch dropped
    assert not torch.equal(first, second)  # shuffled anew each epoch
    shards = []
    for rank in (0, 1):
        sampler = DistributedSampler(dm.train_set, num_replicas=2, rank=rank)
        sharded = _update_dataloader(datamodule("batched").train_dataloader(), sampler)
        images = torch.cat([x for x, _ in sharded])
        assert images.dtype == torch.uint8 and len(images) == (len(dm.train_set) + 1) // 2
        shards.append({image.numpy().tobytes() for image in images})
    every_image = {image.numpy().tobytes() for image in dm.train_set.images}
    assert shards[0] | shards[1] == every_image and len(shards[0] & shards[1]) <= 1


def test_augmentation_seed_depends_on_seed_epoch_and_rank():
    seeds = {augmentation_seed(s, e, r) for s in (0, 42) for e in (0, 1) for r in (0, 1)}
    assert len(seeds) == 8
    assert augmentation_seed(42, 3, 1) == augmentation_seed(42, 3, 1)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pipeline": "gpu"}, "data.pipeline=gpu is not known: use batched or per_sample"),
        (
            {"augment": {"hfilp": 0.5}},
            "data.augment.hfilp is not an augmentation: did you mean hflip?",
        ),
        ({"augment": {"hflip": 2}}, "data.augment.hflip=2 is not valid: use a probability"),
        ({"augment": {"scale": [1.2, 0.8]}}, "data.augment.scale=[1.2, 0.8] is not valid"),
        ({"mean": [0.5]}, "data.mean=[0.5] and data.std="),
        ({"eval_transforms": []}, "data.train_transforms/eval_transforms are applied per image"),
    ],
)
def test_bad_pipeline_settings_are_refused_in_one_line(settings, message):
    cfg = compose_config("train.yaml", Path("unused"))
    with pytest.raises(Exception) as raised:
        hydra.utils.instantiate(cfg.data, **settings)
    error = user_error_in(raised.value)
    assert message in str(error) and "\n" not in str(error)
