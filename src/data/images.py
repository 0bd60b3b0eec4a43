"""Reading image files: which files are images, their sizes and channels, and each as RGB or
grey-scale pixels (a tensor, or PIL), as read or fitted to a square."""

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import center_crop, pil_to_tensor, resize, to_dtype

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
)  # fmt: skip
# data.image_size=auto: the median shorter side of the images, at most this (a size small folders
# train well at from scratch); read from this many headers at most, evenly spaced
AUTO_SIZE_CAP = 64
AUTO_SIZE_SAMPLE = 1000
# torchvision 0.29 warns on every decode that its decoders will move to TorchCodec
TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


def to_mode(image: Image.Image, channels: int = 3) -> Image.Image:
    """A copy of the image in RGB (channels 3) or grey-scale L (channels 1), whatever its mode
    (L, P, RGBA, CMYK, I;16, ...)."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns on palette transparency converted straight to RGB
    if image.mode.startswith("I;16"):  # PIL would clip 16-bit values at 255; keep the high byte
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    return image.convert("L" if channels == 1 else "RGB")


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Read an image file as an RGB (or, channels 1, L) PIL image, turned upright by its EXIF
    orientation."""
    with Image.open(path) as image:
        return to_mode(ImageOps.exif_transpose(image), channels)


def read_image(path: str | Path, channels: int = 3) -> tv_tensors.Image:
    """Read an image file as uint8 pixels (channels, H, W), RGB or grey-scale, turned upright by
    its EXIF orientation."""
    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", TORCHVISION_DEPRECATION, DeprecationWarning)
            pixels = decode_image(data, mode=mode, apply_exif_orientation=True)
    except RuntimeError:  # a format torchvision does not decode (BMP, TIFF, PPM, ...) or a bad file
        return tv_tensors.Image(pil_to_tensor(load_image(path, channels)))
    if pixels.ndim == 4:  # an animated GIF: its first frame, as PIL reads it
        pixels = pixels[0]
    if pixels.dtype != torch.uint8:  # 16-bit PNG
        pixels = to_dtype(pixels, torch.uint8, scale=True)
    return tv_tensors.Image(pixels)


def image_problem(path: Path) -> str | None:
    """Why the file does not decode as an image (not an image, truncated, ...), or None."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # PIL raises many types for broken files (OSError, SyntaxError, ...)
        return " ".join(str(exc).replace(f" '{path}'", "").split()) or type(exc).__name__
    return None


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden: .ipynb_checkpoints, macOS's ._ files, ..."""
    return name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files under folder, recursively, by extension, in sorted order."""
    found = []
    for parent, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if not is_hidden(name)]
        found += [
            Path(parent, name)
            for name in files
            if not is_hidden(name) and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)


def fit_to_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """The image (3, H, W) resized (antialiased) so its shorter side is `size`, then cut to a
    centred size x size square: how the network sees it, in its dtype (uint8 stays uint8)."""
    return center_crop(resize(image, size, antialias=True), [size, size])


def shorter_side(path: str | Path) -> int | None:
    """The shorter side of an image in pixels, from its header alone; None if it has none."""
    try:
        with Image.open(path) as image:
            return min(image.size)
    except Exception:  # PIL raises many types for files that are not images
        return None


def is_grey_scale(path: str | Path) -> bool:
    """Whether the image file holds one channel (modes 1, L, LA, I, I;16, F), from its header."""
    try:
        with Image.open(path) as image:
            return image.mode in ("1", "L", "LA", "I", "F") or image.mode.startswith("I;16")
    except Exception:  # PIL raises many types for files that are not images
        return False


def auto_channels(paths: list[Path]) -> int:
    """data.channels=auto: 1 when the images (up to AUTO_SIZE_SAMPLE of them, evenly spaced) are
    all grey-scale, else 3."""
    step = max(1, len(paths) // AUTO_SIZE_SAMPLE)
    return 1 if all(is_grey_scale(path) for path in paths[::step]) else 3


def auto_image_size(paths: list[Path]) -> int:
    """The median shorter side of the images (of up to AUTO_SIZE_SAMPLE of them, evenly spaced),
    at most AUTO_SIZE_CAP."""
    step = max(1, len(paths) // AUTO_SIZE_SAMPLE)
    sides = [side for path in paths[::step] if (side := shorter_side(path))]
    return min(AUTO_SIZE_CAP, int(np.median(sides))) if sides else AUTO_SIZE_CAP
