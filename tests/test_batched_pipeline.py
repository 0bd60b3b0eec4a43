"""The batched pipeline draws what the per-image torchvision transforms draw, on the same data."""

import colorsys
import math
from pathlib import Path

import hydra
import pytest
import torch
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import DistributedSampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from src.core.errors import user_error_in
from src.data.augmentation import (
    parse_augmentation,
    per_sample_eval_transform,
    per_sample_train_transform,
)
from src.data.batch_augment import BatchAugmentation, one_thread_on_cpu
from src.data.batch_color import adjust_hue, color_jitter
from src.data.digits import DigitsDataModule
from src.data.geometry import random_resized_crop, resized_crop, resized_crop_boxes
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


def crop_boxes(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The crop box (top, left, height, width) each coded image was resized from, read off the
    bilinear ramp: the output pixel j samples the box at (j + 0.5) * length / 32 - 0.5."""
    rows = images[:, 0, [2, 30], 16] * 255 / STEP - 1  # continuous source rows of rows 2 and 30
    cols = images[:, 1, 16, [2, 30]] * 255 / STEP - 1
    height = (rows[:, 1] - rows[:, 0]) * 32 / 28
    width = (cols[:, 1] - cols[:, 0]) * 32 / 28
    return {
        "top": rows[:, 0] - (2.5 * height / 32 - 0.5),
        "left": cols[:, 0] - (2.5 * width / 32 - 0.5),
        "height": height,
        "width": width,
    }


def test_resized_crop_boxes_keep_the_scale_and_ratio_and_match_torchvision():
    spec = {"resized_crop_scale": [0.35, 1.0], "resized_crop_ratio": [0.75, 1.3333]}
    stats = []
    for images in draw_both(spec, coded_image()):
        box = crop_boxes(images)
        # whole-pixel boxes, resized back: the measured sides are whole numbers (uint8 rounding)
        for side in ("height", "width"):
            assert (box[side] - box[side].round()).abs().max() < 0.4
        height, width = box["height"].round(), box["width"].round()
        area, ratio = height * width / 32**2, width / height
        # the box's sides are rounded to whole pixels: up to half a pixel beyond the ranges
        assert area.min() >= 0.33 and area.max() <= 1 and area.min() < 0.4
        assert 0.7 <= ratio.min() < 0.8 and 1.3 < ratio.max() <= 1.42
        assert ((box["top"] + box["height"]).max() <= 32.5) and box["top"].min() >= -0.5
        room = 32 - height  # the box at a uniform place: halfway on average
        position = (box["top"][room > 0] / room[room > 0]).mean()
        stats.append((area.mean(), area.std(), ratio.log().mean(), ratio.log().std(), position))
    (
        (area_a, spread_a, log_a, log_spread_a, pos_a),
        (area_b, spread_b, log_b, log_spread_b, pos_b),
    ) = stats
    assert abs(area_a - area_b) < 0.02 and abs(spread_a / spread_b - 1) < 0.1
    assert abs(log_a) < 0.02 and abs(log_b) < 0.02  # log-uniform ratio about 1
    assert abs(log_spread_a / log_spread_b - 1) < 0.1
    assert abs(pos_a - 0.5) < 0.03 and abs(pos_b - 0.5) < 0.03


def test_resized_crop_gives_torchvision_pixels_and_its_centre_crop_fallback():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 24, 32, generator=g)
    boxes = resized_crop_boxes(64, 24, 32, (0.1, 1.0), (0.5, 2.0), g)
    expected = torch.stack(
        [TF.resized_crop(x, *(int(b[i]) for b in boxes), [24, 32]) for i, x in enumerate(images)]
    )
    assert torch.allclose(resized_crop(images, *boxes), expected, atol=1e-5)
    assert len({tuple(int(b[i]) for b in boxes) for i in range(64)}) > 56  # a box per image
    # no box of a ratio in [3, 4] fits a square: torchvision's centre crop of the nearest ratio, 3
    image = coded_image()
    params = v2.RandomResizedCrop(32, (0.9, 1.0), (3.0, 4.0)).make_params([image])
    boxes = resized_crop_boxes(8, 32, 32, (0.9, 1.0), (3.0, 4.0), g)
    assert params == {"top": 10, "left": 0, "height": 11, "width": 32}
    assert all((b == params[k]).all() for b, k in zip(boxes, params, strict=True))
    # a scale and ratio of [1, 1]: the image itself, in both pipelines' ops
    square = torch.rand(16, 3, 32, 32, generator=g)
    assert torch.allclose(random_resized_crop(square, (1, 1), (1, 1), g), square, atol=1e-6)
    assert torch.equal(v2.RandomResizedCrop(32, (1, 1), (1, 1))(image), image)
    assert not parse_augmentation({"resized_crop_scale": [1, 1]}).resized_crop  # off


def test_resized_crop_comes_before_the_padded_crop_in_both_pipelines():
    spec = {"resized_crop_scale": [0.35, 1.0], "crop_padding": 4}
    padded_only = draw_both({"crop_padding": 4}, coded_image())[1]
    zeros = [(x[:, 2] == 0).float().mean() for x in (*draw_both(spec, coded_image()), padded_only)]
    # the padding is cut after the resize: whole zero pixels as many as without the resize
    # (resized after padding, it would be blurred into the image, not zero)
    assert abs(zeros[0] - zeros[2]) < 0.005 and abs(zeros[1] - zeros[2]) < 0.005


@pytest.mark.parametrize("spec", [{"vflip": 0.3}, {"crop_padding": 4, "hflip": 0.5, "vflip": 0.3}])
def test_vertical_flip_rate_matches_and_flips_along_the_height(spec):
    image = coded_image()
    plain = image.float() / 255
    for images in draw_both(spec, image):
        src_row, _ = source_position(images, 16, 16)
        next_row, _ = source_position(images, 17, 16)
        flipped = next_row < src_row
        assert abs(flipped.float().mean() - 0.3) < 0.035
        if "crop_padding" not in spec:  # the image itself or torch.flip of it along H
            assert torch.allclose(images[flipped], plain.flip(-2), atol=1e-6)
            assert torch.allclose(images[~flipped], plain, atol=1e-6)
        else:  # with the padded crop (one gather): the two flips drawn independently
            _, next_col = source_position(images, 16, 17)
            mirrored = next_col < source_position(images, 16, 16)[1]
            assert abs(mirrored.float().mean() - 0.5) < 0.04
            assert abs((mirrored & flipped).float().mean() - 0.15) < 0.03


def test_hue_shift_gives_torchvision_pixels_per_image():
    g = torch.Generator().manual_seed(4)
    images = torch.rand(40, 3, 8, 8, generator=g)
    images[:10] = (images[:10] * 4).round() / 4  # ties between channels
    images[10:12] = images[10:12, :1]  # gray pixels: no hue
    for shifts in (torch.full((40,), 0.1), torch.linspace(-0.5, 0.5, 40)):
        expected = torch.stack(
            [TF.adjust_hue(x, float(s)) for x, s in zip(images, shifts, strict=True)]
        )
        assert torch.allclose(adjust_hue(images, shifts), expected, atol=1e-5)
    assert not torch.allclose(adjust_hue(images, torch.full((40,), 0.1)), images, atol=0.01)
    gray = images[:, :1].clone()
    assert torch.equal(color_jitter(gray.clone(), 0, 0, 0, g, hue=0.5), gray)  # no hue to turn


def hue_shifts(images: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """How far each image's (single) colour turned from `colour`, in [-0.5, 0.5)."""
    before = colorsys.rgb_to_hsv(*(c / 255 for c in colour))[0]
    after = torch.tensor([colorsys.rgb_to_hsv(*x[:, 0, 0].tolist())[0] for x in images])
    return (after - before + 0.5).remainder(1.0) - 0.5


def test_hue_shifts_are_uniform_in_the_range_in_both_pipelines():
    colour = (200, 60, 30)
    image = torch.tensor(colour, dtype=torch.uint8)[:, None, None].expand(3, 4, 4).contiguous()
    quartiles = torch.tensor([0.25, 0.5, 0.75])
    with one_thread_on_cpu(torch.device("cpu")):  # torchvision's per-image hue: slow on more
        drawn = draw_both({"hue": 0.2}, image)
    spreads = []
    for images in drawn:
        shifts = hue_shifts(images, colour)
        assert shifts.min() >= -0.2 - 1e-4 and shifts.max() <= 0.2 + 1e-4
        assert shifts.min() < -0.19 and shifts.max() > 0.19  # the whole range drawn
        assert abs(shifts.mean()) < 0.012
        assert torch.allclose(shifts.quantile(quartiles), torch.tensor([-0.1, 0, 0.1]), atol=0.015)
        spreads.append(shifts.std())
    uniform_std = 0.4 / math.sqrt(12)
    assert all(abs(s / uniform_std - 1) < 0.06 for s in spreads)


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
        ({"augment": {"vflip": 1.5}}, "data.augment.vflip=1.5 is not valid: use a probability"),
        (
            {"augment": {"hue": 0.6}},
            "data.augment.hue=0.6 is not valid: use a hue shift in [0, 0.5]",
        ),
        (
            {"augment": {"resized_crop_scale": [0.5, 1.5]}},
            "data.augment.resized_crop_scale=[0.5, 1.5] is not valid: use shares of the area",
        ),
        (
            {"augment": {"resized_crop_ratio": [1.3, 0.7]}},
            "data.augment.resized_crop_ratio=[1.3, 0.7] is not valid: use aspect ratios",
        ),
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
