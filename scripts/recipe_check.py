"""The default `data=image_folder` recipe against a hand-written one, on the same split, in one run.

    python scripts/recipe_check.py data/hard_shapes
    python scripts/recipe_check.py data/examples/digits data.augment.hflip=0
    python scripts/recipe_check.py data/examples/digits_multilabel \
        data.labels_file=data/examples/digits_multilabel/labels.csv

Trains `python src/train.py data=image_folder data.root=ROOT [OVERRIDES]` (its logs under
logs/recipe_check/) and the plain-PyTorch recipe of scripts/handwritten_recipe.py on the same
images: the template's train and val images (the hand-written recipe has no use for a val split),
tested on the template's test images. Prints a table of test accuracy (macro mAP for multi-label
data) and wall time for each, and the difference.
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
    "+trainer.enable_progress_bar=false",
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
    parser.add_argument("overrides", nargs="*", help="overrides for both runs, e.g. seed=1")
    args = parser.parse_args()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    cfg = compose_run(args.root, args.overrides, ROOT / "logs" / "recipe_check" / stamp)
    metric = "mAP" if cfg.data.get("labels_file") else "accuracy"
    ours, ours_time = template(cfg)
    theirs, theirs_time, n = hand_written(cfg, cfg.seed)
    table = Table(title=f"{args.root}: test {metric} on the same {n['test']} images")
    for column in ("recipe", f"test {metric}", "wall time (s)", "trained on"):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    fit = f"{n['train']} (+{n['val']} val)"
    table.add_row("data=image_folder (defaults)", f"{ours:.4f}", f"{ours_time:.0f}", fit)
    table.add_row("hand-written", f"{theirs:.4f}", f"{theirs_time:.0f}", str(n["train"] + n["val"]))
    Console().print(table)
    print(f"difference (template - hand-written): {100 * (ours - theirs):+.1f} points")


if __name__ == "__main__":
    main()
