"""Image files decoded into uint8 squares of one size, many at a time: what the batched pipeline
holds in memory and what data.mean/std=auto are computed from."""

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from src.data.base import cpu_count
from src.data.images import fit_to_square, read_image

# folders of more images than this are decoded by worker processes
PARALLEL_DECODING_FROM = 2000


class SquareImageDataset(Dataset):
    """Image files as uint8 squares (channels, size, size), as `fit_to_square` cuts them."""

    def __init__(self, paths: Sequence[Path], size: int, channels: int = 3) -> None:
        self.paths = [str(path) for path in paths]
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        image = read_image(self.paths[i], self.channels)
        return fit_to_square(image, self.size).as_subclass(Tensor)


def square_batches(paths: Sequence[Path], size: int, channels: int = 3) -> Iterator[Tensor]:
    """The images as uint8 squares, 256 at a time (N, channels, size, size); decoded by worker
    processes when there are many."""
    workers = min(8, cpu_count()) if len(paths) >= PARALLEL_DECODING_FROM else 0
    yield from DataLoader(
        SquareImageDataset(paths, size, channels),
        batch_size=256,
        num_workers=workers,
        collate_fn=torch.stack,
    )


def load_squares(paths: Sequence[Path], size: int, channels: int = 3) -> Tensor:
    """Every image as a uint8 square, in one tensor (N, channels, size, size)."""
    images = torch.empty((len(paths), channels, size, size), dtype=torch.uint8)
    done = 0
    for batch in square_batches(paths, size, channels):
        images[done : done + len(batch)] = batch
        done += len(batch)
    return images


def megabytes_in_memory(count: int, size: int, channels: int = 3) -> float:
    """MiB that `count` uint8 images of size x size take."""
    return count * channels * size * size / 2**20
