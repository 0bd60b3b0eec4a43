"""augment=<preset> replaces any data set's augmentation; the learned policies (RandAugment, ...)
run in both pipelines, per image, reproducibly, the batched one op by op as torchvision computes
them; bad settings are refused in one line."""

from dataclasses import fields
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms import v2

from src import compat
from src.core.errors import user_error_in
from src.data.augmentation import (
    Augmentation,
    parse_augmentation,
    per_sample_train_transform,
)
from src.data.batch_augment import BatchAugmentation, one_thread_on_cpu
from src.data.batch_policy import OP, OPS, apply_ops
from src.train import train
from tests.conftest import CONFIG_DIR, FAST, compose_config

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "augment").glob("*.yaml"))
KEYS = {f.name for f in fields(Augmentation)}


# the random ops besides crop, flip and erasing that each preset's name promises (README)
POLICY_OF = {
    "none": None,
    "light": v2.RandomAffine,
    "randaugment": v2.RandAugment,
    "trivialaugment": v2.TrivialAugmentWide,
    "autoaugment": v2.AutoAugment,
}


@pytest.mark.parametrize("preset", sorted(POLICY_OF))
def test_each_preset_augments_as_its_name_says(preset):
    cfg = compose_config("train.yaml", Path("unused"), [f"augment={preset}"])
    aug = parse_augmentation(cfg.data.augment)
    transform = per_sample_train_transform(aug, [0.5] * 3, [0.25] * 3, (32, 32))
    plain = {v2.ToImage, v2.ToDtype, v2.Normalize, v2.RandomCrop, v2.RandomHorizontalFlip}
    random = {type(t) for t in transform.transforms} - plain - {v2.RandomErasing}
    expected = POLICY_OF[preset]
    assert random == ({expected} if expected else set()), random


@pytest.mark.parametrize("data", ["digits", "digits_multilabel", "cifar10"])
def test_every_data_set_lists_every_augmentation_key(data):
    cfg = compose_config("train.yaml", Path("unused"), [f"data={data}"])
    assert set(cfg.data.augment) == KEYS
    assert not parse_augmentation(cfg.data.augment).mixing  # mixing is opt-in


@pytest.mark.parametrize("data", ["digits", "digits_multilabel", "cifar10"])
@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_replaces_the_data_sets_augmentation_whole(data, preset):
    cfg = compose_config("train.yaml", Path("unused"), [f"data={data}", f"augment={preset}"])
    base = OmegaConf.load(CONFIG_DIR / "augment" / "none.yaml")  # every key, all off
    written = OmegaConf.load(CONFIG_DIR / "augment" / f"{preset}.yaml")
    changed = {k: v for k, v in OmegaConf.to_container(written).items() if k != "defaults"}
    expected = {**OmegaConf.to_container(base), **changed}
    assert set(base) == KEYS  # nothing of the data set's own block is left
    assert OmegaConf.to_container(cfg.data.augment) == expected
    assert cfg.data._target_.endswith("DataModule")  # the rest of data.* is the data set's
    module = hydra.utils.instantiate(cfg.data)  # (CIFAR-10 downloads in prepare_data only)
    assert module.augmentation.policy == expected["policy"]  # null for none and light


def test_a_preset_and_a_command_line_key_compose():
    overrides = ["augment=randaugment", "data.augment.mixup_alpha=0.2", "data.augment.hflip=0.5"]
    cfg = compose_config("train.yaml", Path("unused"), overrides)
    aug = parse_augmentation(cfg.data.augment)
    assert (aug.policy, aug.mixup_alpha, aug.hflip, aug.degrees) == ("randaugment", 0.2, 0.5, 0)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "policy=randaugmnet",
            "data.augment.policy=randaugmnet is not a policy: did you mean randaugment? use null",
        ),
        ("policy_magnitude=31", "data.augment.policy_magnitude=31 is not valid: use a whole"),
        ("policy_num_ops=0", "data.augment.policy_num_ops=0 is not valid"),
        ("autoaugment_policy=mnist", "use imagenet or cifar10 or svhn"),
        ("mixup_alpha=-0.2", "data.augment.mixup_alpha=-0.2 is not valid: use 0 (off)"),
        ("cutmix_alpha=-1", "data.augment.cutmix_alpha=-1 is not valid"),
        ("mix_prob=1.5", "data.augment.mix_prob=1.5 is not valid: use a probability"),
        ("mixup_off_epoch=-1", "data.augment.mixup_off_epoch=-1 is not valid: use null"),
        ("mixup_of_epoch=3", "data.augment.mixup_of_epoch is not an augmentation: did you mean "),
        ("fill=mirror", "data.augment.fill=mirror is not valid: use zeros or border or reflection"),
        ("interpolation=cubic", "data.augment.interpolation=cubic is not valid: use nearest or"),
    ],
)
def test_bad_augmentation_settings_are_refused_in_one_line(setting, message):
    override = f"{'+' if 'mixup_of_' in setting else ''}data.augment.{setting}"
    cfg = compose_config("train.yaml", Path("unused"), [override])
    with pytest.raises(Exception) as raised:
        hydra.utils.instantiate(cfg.data)
    error = user_error_in(raised.value)
    assert message in str(error) and "\n" not in str(error)


def digit_image() -> torch.Tensor:
    """A uint8 3x32x32 image with structure: a bright square on a dark, graded background."""
    ramp = torch.linspace(0, 80, 32)
    image = (ramp[None, :] + ramp[:, None]).expand(3, 32, 32).clone()
    image[:, 8:24, 10:22] = 230
    return image.to(torch.uint8)


def test_the_batched_policy_draws_per_image_and_reproducibly_without_touching_the_rng():
    aug = BatchAugmentation(parse_augmentation({"policy": "randaugment"}), [0] * 3, [1] * 3)
    batch = digit_image().expand(64, -1, -1, -1)
    state = torch.get_rng_state()
    first = aug(batch, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # the run's RNG did not move
    assert len({tuple(x.flatten().tolist()) for x in first}) > 40  # not one op for the batch
    assert torch.equal(aug(batch, torch.Generator().manual_seed(0)), first)
    assert not torch.equal(aug(batch, torch.Generator().manual_seed(1)), first)


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment", "autoaugment"])
def test_both_pipelines_apply_the_policy_with_the_same_statistics(policy):
    draws = 300
    aug = parse_augmentation({"policy": policy})
    image = digit_image()
    torch.manual_seed(0)
    per_sample = per_sample_train_transform(aug, [0] * 3, [1] * 3, (32, 32))
    assert any(
        isinstance(step, v2.RandAugment | v2.TrivialAugmentWide | v2.AutoAugment)
        for step in per_sample.transforms
    )
    with one_thread_on_cpu(image.device):  # as in DataLoader workers
        one_by_one = torch.stack([per_sample(image) for _ in range(draws)])
    batched = BatchAugmentation(aug, [0] * 3, [1] * 3)
    whole = batched(image.expand(draws, -1, -1, -1), torch.Generator().manual_seed(1))
    original = image.float() / 255
    for images in (one_by_one, whole):
        assert images.dtype == torch.float32 and images.shape == (draws, 3, 32, 32)
        changed = (images - original).abs().flatten(1).amax(dim=1) > 1e-6
        assert changed.float().mean() > 0.5  # most images changed
    # the same distribution of brightness and of change, within sampling noise
    brightness = [x.mean(dim=(1, 2, 3)) for x in (one_by_one, whole)]
    change = [(x - original).abs().mean(dim=(1, 2, 3)) for x in (one_by_one, whole)]
    for a, b in (brightness, change):
        assert abs(a.mean() - b.mean()) < 0.25 * a.std() + 0.01
        assert abs(a.std() / b.std() - 1) < 0.25


@pytest.mark.parametrize("name", OPS)
def test_each_op_of_the_batched_policies_gives_torchvisions_pixels(name):
    """Every op at several magnitudes of its table, both signs: the same uint8 pixels as
    torchvision's kernel applied image by image (a flat and a low-contrast image included)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)
    images[0] = digit_image()
    images[1] = 7
    images[2] = torch.randint(90, 110, (3, 32, 32), dtype=torch.uint8, generator=generator)
    policy = v2.AutoAugment()  # its ops (Invert too) and RandAugment's Identity
    magnitudes_of, signed = (compat.policy_ops(v2.RandAugment()) | compat.policy_ops(policy))[name]
    table = magnitudes_of(31, 32, 32)
    magnitudes = [0.0] if table is None else [float(table[i]) for i in (1, 9, 30)]
    for magnitude in magnitudes + [-m for m in magnitudes if signed]:
        n = len(images)
        ours = apply_ops(images, torch.full((n,), OP[name]), torch.full((n,), magnitude), {name})
        theirs = torch.stack(
            [
                policy._apply_image_or_video_transform(i, name, magnitude, "nearest", policy._fill)
                for i in images
            ]
        )
        assert torch.equal(ours, theirs), (name, magnitude)


@pytest.mark.slow
def test_mixup_cutmix_and_randaugment_on_digits_reach_098_test_accuracy(tmp_path: Path):
    overrides = [
        *FAST,
        "augment=randaugment",
        "data.augment.mixup_alpha=0.2",
        "data.augment.cutmix_alpha=1.0",
    ]
    metrics = train(compose_config("train.yaml", tmp_path, overrides))
    print(f"digits, randaugment + mixup + cutmix: test/acc {float(metrics['test/acc']):.4f}")
    assert metrics["test/acc"] >= 0.98


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill", ["zeros", "border", "reflection"])
def test_the_affine_fill_shows_no_black_corners_unless_zeros_in_either_pipeline(
    fill, interpolation
):
    """A flat grey image rotated by 45 degrees and zoomed out: with border or reflection it stays
    flat grey (nothing artificial to learn from); with zeros its corners turn black."""
    aug = parse_augmentation(
        {"degrees": 45, "scale": [0.7, 0.7], "fill": fill, "interpolation": interpolation}
    )
    grey = torch.full((3, 32, 32), 120, dtype=torch.uint8)
    identity = ([0.0] * 3, [1.0] * 3)  # normalised pixels are the [0, 1] values themselves
    batched = BatchAugmentation(aug, *identity)(
        grey.expand(8, 3, 32, 32).clone(), torch.Generator()
    )
    per_sample = per_sample_train_transform(aug, *identity, (32, 32))
    torch.manual_seed(0)
    for images in (batched, torch.stack([per_sample(grey) for _ in range(8)])):
        dark = (images < 0.2).float().mean().item()
        if fill == "zeros":
            assert dark > 0.1  # the rotated, shrunk square leaves its corners black
        else:
            assert dark == 0 and torch.allclose(images, torch.tensor(120 / 255), atol=1e-5)
