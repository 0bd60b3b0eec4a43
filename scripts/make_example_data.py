"""Write the embedded digits as real image folders, to see the layouts and train from files.

    python scripts/make_example_data.py data/examples

writes
    data/examples/digits/{train,val,test}/<digit>/<n>.png          multi-class, pre-split
    data/examples/digits_multilabel/images/<split>_<n>.png         multi-label canvases
    data/examples/digits_multilabel/labels.csv                     path,labels,split
    data/examples/digits_multilabel/classes.txt                    one label per line

with the same splits and pixels as `data=digits` and `data=digits_multilabel`, so results compare.
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from src.data.digits import DigitsDataModule, load_digit_images
from src.data.digits_multilabel import DigitsMultilabelDataModule

CLASSES = [str(d) for d in range(10)]
SPLITS = ("train", "val", "test")


def save_png(image: np.ndarray, path: Path) -> None:
    """Save a (3, H, W) uint8 array as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.transpose(1, 2, 0)).save(path)


def write_digits(out: Path) -> int:
    """The digits as out/<split>/<digit>/<n>.png with the split of `data=digits`."""
    images, labels = load_digit_images(32)
    splits = DigitsDataModule(num_classes=10, class_names=CLASSES).split_indices()
    for split, indices in zip(SPLITS, splits, strict=True):
        for i in indices:
            save_png(images[i].numpy(), out / split / str(int(labels[i])) / f"{i:04d}.png")
    return len(images)


def write_digits_multilabel(out: Path, module: DigitsMultilabelDataModule | None = None) -> int:
    """The canvases of `data=digits_multilabel` (or of `module`) as out/images/*.png, labels.csv
    and classes.txt."""
    if module is None:
        module = DigitsMultilabelDataModule(num_classes=10, class_names=CLASSES, task="multilabel")
    rows = []
    for split, (images, targets) in zip(SPLITS, module.canvases(), strict=True):
        for n, (image, target) in enumerate(zip(images, targets, strict=True)):
            name = f"images/{split}_{n:05d}.png"
            save_png(image.numpy(), out / name)
            present = " ".join(CLASSES[c] for c in target.nonzero().flatten().tolist())
            rows.append([name, present, split])
    with open(out / "labels.csv", "w", newline="") as file:
        csv.writer(file).writerows([["path", "labels", "split"], *rows])
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write into, e.g. data/examples")
    out = parser.parse_args().out
    digits = write_digits(out / "digits")
    canvases = write_digits_multilabel(out / "digits_multilabel")
    print(
        f"wrote {digits} digits to {out / 'digits'} and {canvases} canvases to "
        f"{out / 'digits_multilabel'}"
    )


if __name__ == "__main__":
    main()
