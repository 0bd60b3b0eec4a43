"""Write a small, hard image folder: eight kinds of rotated, cluttered, low-contrast shapes.

    python scripts/make_hard_shapes.py data/hard_shapes [--per-class 80] [--size 32] [--seed 0]

writes data/hard_shapes/<shape>/<n>.png (class folders, split by data.val_fraction and
data.test_fraction). Each image is drawn at 4x its size and shrunk with antialiasing: a shape of
random size, rotation, position and colour, a shade or two off a background with a gradient,
crossed by lines and spotted with blobs of other colours and pixel noise. Seeded: the same
arguments write the same pixels.
"""

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("disk", "ring", "triangle", "square", "star", "cross", "crescent", "arrow")
SUPERSAMPLE = 4


def _polygon(points: list[tuple[float, float]], angle: float, scale: float, centre) -> list:
    """Points rotated by angle (radians), scaled and moved to centre."""
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return [(cx + scale * (x * cos - y * sin), cy + scale * (x * sin + y * cos)) for x, y in points]


def _regular(corners: int, inner: float | None = None) -> list[tuple[float, float]]:
    """A regular polygon (or a star with `inner` radius) of outer radius 1."""
    steps = corners * (2 if inner else 1)
    return [
        (
            (inner if inner and i % 2 else 1.0) * math.cos(2 * math.pi * i / steps),
            (inner if inner and i % 2 else 1.0) * math.sin(2 * math.pi * i / steps),
        )
        for i in range(steps)
    ]


CROSS = [(-1, -0.3), (-0.3, -0.3), (-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3),
         (0.3, 0.3), (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3)]  # fmt: skip
ARROW = [(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre, radius: float, angle: float, fill):
    """Draw one shape of outer radius `radius` rotated by `angle` about `centre`."""
    cx, cy = centre
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "disk":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(radius * 0.35)))
    elif shape == "crescent":
        mask = Image.new("L", draw.im.size, 0)
        ImageDraw.Draw(mask).ellipse(box, fill=255)
        dx, dy = 0.55 * radius * math.cos(angle), 0.55 * radius * math.sin(angle)
        cut = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
        ImageDraw.Draw(mask).ellipse(cut, fill=0)
        draw.bitmap((0, 0), mask, fill=fill)
    else:
        points = {
            "triangle": _regular(3),
            "square": _regular(4),
            "star": _regular(5, inner=0.42),
            "cross": CROSS,
            "arrow": ARROW,
        }[shape]
        draw.polygon(_polygon(points, angle, radius, centre), fill=fill)


def make_image(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of `shape` at size x size pixels."""
    big = size * SUPERSAMPLE
    base = rng.uniform(50, 200) + rng.uniform(-40, 40, 3)
    gradient = np.linspace(-1, 1, big)[None, :, None] * rng.uniform(-25, 25, 3)
    if rng.random() < 0.5:
        gradient = gradient.transpose(1, 0, 2)
    background = np.clip(base + gradient + np.zeros((big, big, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 6)):  # clutter: thin lines and small blobs
        shade = rng.choice([-1, 1]) * rng.uniform(15, 50) + rng.uniform(-15, 15, 3)
        colour = tuple(int(v) for v in np.clip(base + shade, 0, 255))
        if rng.random() < 0.6:
            ends = [tuple(rng.uniform(0, big, 2)) for _ in range(2)]
            draw.line(ends, fill=colour, width=int(rng.integers(SUPERSAMPLE, 2 * SUPERSAMPLE)))
        else:
            x, y = rng.uniform(0, big, 2)
            r = rng.uniform(0.03, 0.08) * big
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    radius = rng.uniform(0.22, 0.38) * big
    centre = tuple(rng.uniform(radius, big - radius, 2))
    # low contrast: a shade lighter or darker than the background, slightly off its colour
    shade = rng.choice([-1, 1]) * rng.uniform(25, 50) + rng.uniform(-10, 10, 3)
    fill = tuple(int(v) for v in np.clip(base + shade, 0, 255))
    draw_shape(draw, shape, centre, radius, rng.uniform(0, 2 * math.pi), fill)
    small = image.filter(ImageFilter.GaussianBlur(SUPERSAMPLE * 0.3)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_hard_shapes(out: Path, per_class: int = 80, size: int = 32, seed: int = 0) -> int:
    """out/<shape>/<n>.png for each of SHAPES; the number of images written."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            make_image(shape, size, rng).save(out / shape / f"{n:03d}.png")
    return per_class * len(SHAPES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write into, e.g. data/hard_shapes")
    parser.add_argument("--per-class", type=int, default=80, help="images of each shape")
    parser.add_argument("--size", type=int, default=32, help="side of the square images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = write_hard_shapes(args.out, args.per_class, args.size, args.seed)
    print(f"wrote {count} images of {len(SHAPES)} shapes to {args.out}")


if __name__ == "__main__":
    main()
