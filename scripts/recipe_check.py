"""The default `data=image_folder` recipe against a hand-written one, on the same split, in one run.

    python scripts/recipe_check.py data/hard_shapes --seeds 0 1 2
    python scripts/recipe_check.py data/examples/digits data.augment.hflip=0
    python scripts/recipe_check.py data/examples/digits_multilabel \
        data.labels_file=data/examples/digits_multilabel/labels.csv

Trains `python src/train.py data=image_folder data.root=ROOT [OVERRIDES]` (its runs under
logs/recipe_check/<time>/seed<seed>/, or --out) and the plain-PyTorch recipe of
scripts/handwritten_recipe.py on the same images: the template's train and val images (the
hand-written recipe has no use for a val split), tested on the template's test images. Prints a
table of test accuracy (macro mAP for multi-label data) and wall time for each, and the
difference; with several --seeds (the split stays, seeded by data.split_seed), one row per seed
and the mean +- std: on a few hundred images one seed can swing a score by several points.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import src.cli.resolvers  # noqa: E402, F401  (registers the resolvers the configs use)
from scripts.handwritten_recipe import train_and_test  # noqa: E402
from src.data.image_folder import load_squares  # noqa: E402
from src.train import train  # noqa: E402

QUIET = [
    "extras.print_config=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary",
    "trainer.enable_progress_bar=false",
]


def compose_run(root: Path, overrides: list[str], out: Path) -> DictConfig:
    """train.yaml with data=image_folder on root, as `python src/train.py` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        args = ["data=image_folder", f"data.root={root}", *QUIET, *overrides]
        cfg = compose("train.yaml", overrides=args, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.work_dir = str(ROOT)
        del cfg.hydra
    return cfg


def template(cfg: DictConfig) -> tuple[float, float]:
    """The template's test score and wall time (data set-up, training, testing)."""
    start = time.perf_counter()
    metrics = train(cfg)
    score = metrics.get("test/acc", metrics.get("test/map"))
    return score, time.perf_counter() - start


def hand_written(cfg: DictConfig, seed: int) -> tuple[float, float, dict[str, int]]:
    """The hand-written recipe's test score and wall time (decoding, training, testing) on the
    template's split, and the split's sizes."""
    start = time.perf_counter()
    data = instantiate(cfg.data)
    images = load_squares(data.paths, data.image_size)
    fit = torch.as_tensor(sorted([*data.splits["train"], *data.splits["val"]]))
    test = torch.as_tensor(data.splits["test"])
    score = train_and_test(
        (images[fit], data.targets[fit]),
        (images[test], data.targets[test]),
        data.num_classes,
        epochs=cfg.trainer.max_epochs,
        flip_p=cfg.data.augment.hflip,
        seed=seed,
    )
    sizes = {name: len(index) for name, index in data.splits.items()}
    return score, time.perf_counter() - start, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="an image folder (data.root)")
    parser.add_argument(
        "overrides", nargs="*", help="overrides for both runs, e.g. trainer.max_epochs=30"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[42], help="one pair of runs per seed (same split)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "logs" / "recipe_check" / time.strftime("%Y-%m-%d_%H-%M-%S"),
        help="the template's run folders go here, one per seed",
    )
    args = parser.parse_args()
    rows: list[tuple[int, float, float, float, float]] = []
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        cfg = compose_run(args.root, [*args.overrides, f"seed={seed}"], out)
        ours, ours_time = template(cfg)
        theirs, theirs_time, n = hand_written(cfg, seed)
        rows.append((seed, ours, ours_time, theirs, theirs_time))
        print(f"seed {seed}: data=image_folder {ours:.4f}, hand-written {theirs:.4f}", flush=True)
    metric = "mAP" if cfg.data.get("labels_file") else "accuracy"
    table = Table(title=f"{args.root}: test {metric} on the same {n['test']} images")
    fit = f"{n['train']} (+{n['val']} val)"
    for column in (
        "seed",
        f"data=image_folder, trained on {fit}",
        "(s)",
        f"hand-written, trained on {n['train'] + n['val']}",
        "(s) ",
        "difference (points)",
    ):
        table.add_column(column, justify="right")
    for seed, ours, ours_time, theirs, theirs_time in rows:
        difference = f"{100 * (ours - theirs):+.1f}"
        table.add_row(
            str(seed),
            f"{ours:.4f}",
            f"{ours_time:.0f}",
            f"{theirs:.4f}",
            f"{theirs_time:.0f}",
            difference,
        )
    if len(rows) > 1:
        ours_all = torch.tensor([row[1] for row in rows])
        theirs_all = torch.tensor([row[3] for row in rows])
        table.add_row(
            "mean +- std",
            f"{ours_all.mean():.4f} +- {ours_all.std():.4f}",
            "",
            f"{theirs_all.mean():.4f} +- {theirs_all.std():.4f}",
            "",
            f"{100 * (ours_all.mean() - theirs_all.mean()):+.1f}",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
