"""Reading image files: which files are images, and each as an RGB PIL image."""

import os
from pathlib import Path

from PIL import Image

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
)  # fmt: skip


def to_rgb(image: Image.Image) -> Image.Image:
    """A copy of the image in RGB, whatever its mode (L, P, RGBA, CMYK, I;16, ...)."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns on palette transparency converted straight to RGB
    return image.convert("RGB")


def load_rgb_image(path: str | Path) -> Image.Image:
    """Read an image file as an RGB PIL image."""
    with Image.open(path) as image:
        return to_rgb(image)


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
