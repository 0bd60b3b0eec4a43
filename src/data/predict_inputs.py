"""The images predict reads: one file, a folder searched recursively, or a glob."""

import glob
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from src.core.errors import ConfigError
from src.data.images import IMAGE_EXTENSIONS, list_images, read_image


def find_images(spec: str | None) -> list[Path]:
    """Image files named by `spec`: a file, a folder (recursively) or a glob such as a/**/*.jpg."""
    if not spec:
        raise ConfigError("input is not set: pass input=IMAGE, input=FOLDER or input='GLOB'")
    path = Path(spec)
    if path.is_file():
        found = [path]
    elif path.is_dir():
        found = list_images(path)
    else:
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    images = [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise ConfigError(
            f"input={spec} holds no images ({', '.join(IMAGE_EXTENSIONS)}): pass an image, "
            "a folder of images or a glob"
        )
    return images


class ImagePathDataset(Dataset):
    """The images at `paths`, read as uint8 tensors (channels, H, W: RGB, or grey-scale for a
    model trained on one channel) and passed through `transform`."""

    def __init__(
        self, paths: list[Path], transform: Callable[[Any], Any], channels: int = 3
    ) -> None:
        self.paths = paths
        self.transform = transform
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        return self.transform(read_image(self.paths[i], self.channels))
