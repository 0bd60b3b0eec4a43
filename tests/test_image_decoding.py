"""Image files decode with torchvision where it can, PIL elsewhere, to the same RGB pixels."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2.functional import pil_to_tensor

import src.data.images as images
from src.data.images import load_image, read_image
from src.data.predict_inputs import ImagePathDataset
from src.data.transforms import eval_transform_of

ORIENTATION = 0x0112  # the EXIF tag; 6 means "rotate 90° clockwise to view"


def photo(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """A smooth gradient with some noise: a JPEG of it decodes close to, not exactly, itself."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 1, size[0]), np.linspace(0, 1, size[1]))
    pixels = np.stack([x, y, (x + y) / 2], -1) * 200 + rng.integers(0, 40, (size[1], size[0], 3))
    return Image.fromarray(pixels.astype(np.uint8))


def pil_pixels(path: Path) -> torch.Tensor:
    return pil_to_tensor(load_image(path))


@pytest.fixture
def pil_reads(monkeypatch) -> list[Path]:
    """Paths that read_image handed to PIL."""
    calls: list[Path] = []

    def counted(path, channels=3):
        calls.append(Path(path))
        return load_image(path, channels)

    monkeypatch.setattr(images, "load_image", counted)
    return calls


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_png_decodes_exactly_as_pil_reads_it(tmp_path, mode, pil_reads):
    path = tmp_path / f"{mode}.png"
    photo().convert(mode).save(path)
    pixels = read_image(path)
    assert isinstance(pixels, tv_tensors.Image) and pixels.dtype == torch.uint8
    assert pixels.shape == (3, 64, 96)
    assert torch.equal(pixels, pil_pixels(path))
    assert pil_reads == []  # torchvision decoded it


def test_16_bit_png_keeps_its_high_byte_on_both_paths(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, (8, 12), np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    expected = torch.from_numpy((values >> 8).astype(np.uint8)).expand(3, -1, -1)
    assert torch.equal(read_image(tmp_path / "deep.png"), expected)
    assert torch.equal(pil_pixels(tmp_path / "deep.png"), expected)


def test_jpeg_decodes_nearly_as_pil_reads_it(tmp_path, pil_reads):
    photo().save(tmp_path / "a.jpg", quality=85)  # 4:2:0 chroma, where decoders may differ
    pixels, reference = read_image(tmp_path / "a.jpg"), pil_pixels(tmp_path / "a.jpg")
    assert pixels.shape == reference.shape == (3, 64, 96)
    assert (pixels.float() - reference.float()).abs().mean() < 1.0
    assert pil_reads == []


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_turns_the_image_upright_on_both_paths(tmp_path, suffix):
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = tmp_path / f"turned{suffix}"
    photo().save(path, exif=exif.tobytes())
    pixels = read_image(path)
    assert pixels.shape == (3, 96, 64)  # stored 96 wide, viewed 64 wide
    assert (pixels.float() - pil_pixels(path).float()).abs().mean() < 1.0


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".ppm"])
def test_formats_torchvision_cannot_decode_fall_back_to_pil(tmp_path, suffix, pil_reads):
    path = tmp_path / f"a{suffix}"
    photo().save(path)
    pixels = read_image(path)
    assert pil_reads == [path]
    assert isinstance(pixels, tv_tensors.Image) and pixels.dtype == torch.uint8
    assert torch.equal(pixels, pil_to_tensor(photo()))


def test_a_broken_file_fails_with_pil_s_reason(tmp_path):
    path = tmp_path / "cut.jpg"
    photo().save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(OSError, match="(?i)truncated"):
        read_image(path)


def test_the_configured_transforms_give_the_same_floats_from_either_path(train_cfg, tmp_path):
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            photo(seed=i).save(root / name / f"{i}.png")
    path = root / "a" / "0.png"
    cfg = train_cfg(
        "data=image_folder",
        f"data.root={root}",
        "data.manifest_dir=null",
        "data.image_size=32",
        "data.pipeline=per_sample",  # the files read and transformed image by image
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    for transform in (dm.val_set.transform, dm.train_set.transform):
        torch.manual_seed(0)
        decoded = transform(read_image(path))
        torch.manual_seed(0)
        from_pil = transform(load_image(path))
        assert decoded.shape == (3, 32, 32) and decoded.dtype == torch.float32
        assert torch.equal(decoded, from_pil)
    batch, _ = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, 3, 32, 32) and batch.dtype == torch.float32
    # predict applies the evaluation transform the run's config describes (mean/std=auto filled
    # in by train.py with what the data module found)
    recorded = {**cfg.data, "mean": dm.mean, "std": dm.std}
    predicted = ImagePathDataset([path], eval_transform_of(recorded))[0]
    assert torch.equal(predicted, dm.val_set.transform(load_image(path)))
