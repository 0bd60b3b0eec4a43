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
import json
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
from scripts.handwritten_recipe import svm_on_pixels, train_and_test  # noqa: E402
from src.data.squares import load_squares  # noqa: E402
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


def hand_written(cfg: DictConfig, seed: int) -> dict:
    """On the template's split: the hand-written recipe's test score and wall time (decoding,
    training, testing), scikit-learn's SVM on the pixels (score, time) and the split's sizes."""
    start = time.perf_counter()
    data = instantiate(cfg.data)
    images = load_squares(data.paths, data.image_size, data.channels)
    fit = torch.as_tensor(sorted([*data.splits["train"], *data.splits["val"]]))
    test = torch.as_tensor(data.splits["test"])
    train_set, test_set = (images[fit], data.targets[fit]), (images[test], data.targets[test])
    loaded = time.perf_counter()
    score = train_and_test(
        train_set,
        test_set,
        max(data.num_classes, 2),  # binary: two outputs and cross-entropy
        epochs=cfg.trainer.max_epochs,
        flip_p=cfg.data.augment.hflip,
        seed=seed,
    )
    trained = time.perf_counter()
    svm = svm_on_pixels(train_set, test_set)
    return {
        "hand-written": (score, trained - start),
        "svm": (svm, time.perf_counter() - trained + loaded - start),
        "sizes": {name: len(index) for name, index in data.splits.items()},
    }


METHODS = ("data=image_folder", "hand-written", "svm")


def check(root: Path, overrides: list[str], seeds: list[int], out: Path) -> dict:
    """Every method on root with each seed: {method: [(score, seconds) per seed]}, the split's
    sizes and the metric's name."""
    scores: dict[str, list[tuple[float, float]]] = {method: [] for method in METHODS}
    for seed in seeds:
        cfg = compose_run(root, [*overrides, f"seed={seed}"], out / f"seed{seed}")
        scores["data=image_folder"].append(template(cfg))
        other = hand_written(cfg, seed)
        for method in ("hand-written", "svm"):
            scores[method].append(other[method])
        line = ", ".join(f"{m} {scores[m][-1][0]:.4f}" for m in METHODS)
        print(f"{root.name} seed {seed}: {line}", flush=True)
    metric = "mAP" if cfg.data.get("labels_file") else "accuracy"
    return {"scores": scores, "sizes": other["sizes"], "metric": metric, "seeds": seeds}


def summary(values: list[tuple[float, float]]) -> tuple[str, str]:
    """`mean +- std` of the scores (std over seeds) and the mean seconds."""
    score = torch.tensor([v[0] for v in values], dtype=torch.float64)
    spread = f" +- {score.std():.4f}" if len(values) > 1 else ""
    return f"{score.mean():.4f}{spread}", f"{sum(v[1] for v in values) / len(values):.0f}"


def seed_table(root: Path, result: dict) -> Table:
    """One row per seed and the mean: each method's test score and seconds, and the template's
    difference to the hand-written recipe in points."""
    n, scores = result["sizes"], result["scores"]
    table = Table(title=f"{root}: test {result['metric']} on the same {n['test']} images")
    table.add_column("seed", justify="right")
    trained_on = {
        "data=image_folder": f"{n['train']} (+{n['val']} val)",
        "hand-written": f"{n['train'] + n['val']}",
        "svm": f"{n['train'] + n['val']}",
    }
    for method in METHODS:
        table.add_column(f"{method}, trained on {trained_on[method]}", justify="right")
        table.add_column("(s)", justify="right")
    table.add_column("difference (points)", justify="right")
    for i, seed in enumerate(result["seeds"]):
        cells = [
            f"{v:.4f}" if k == 0 else f"{v:.0f}"
            for m in METHODS
            for k, v in enumerate(scores[m][i])
        ]
        ours, theirs = scores["data=image_folder"][i][0], scores["hand-written"][i][0]
        table.add_row(str(seed), *cells, f"{100 * (ours - theirs):+.1f}")
    if len(result["seeds"]) > 1:
        cells = [cell for method in METHODS for cell in summary(scores[method])]
        table.add_row("mean +- std", *cells, f"{100 * difference(result):+.1f}")
    return table


def mean_score(values: list[tuple[float, float]]) -> float:
    return sum(v[0] for v in values) / len(values)


def difference(result: dict) -> float:
    scores = result["scores"]
    return mean_score(scores["data=image_folder"]) - mean_score(scores["hand-written"])


def panel_markdown(results: dict[str, dict], panel: dict) -> str:
    """The panel table: each member's scores (mean +- std over the seeds) and seconds a run, and
    the panel's mean."""
    head = ["member", "kind", "metric", *[f"{m} | (s)" for m in METHODS], "difference (points)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(head) + len(METHODS))]
    for name, result in results.items():
        cells = [c for m in METHODS for c in summary(result["scores"][m])]
        kind = panel[name]["kind"].split(",")[0]
        row = [name, kind, result["metric"], *cells, f"{100 * difference(result):+.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    means = [
        sum(mean_score(r["scores"][m]) for r in results.values()) / len(results) for m in METHODS
    ]
    cells = [cell for value in means for cell in (f"{value:.4f}", "")]
    gap = f"{100 * (means[0] - means[1]):+.1f}"
    lines.append("| " + " | ".join(["panel mean", "", "", *cells, gap]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, nargs="?", help="an image folder (data.root)")
    parser.add_argument(
        "overrides", nargs="*", help="overrides for every run, e.g. trainer.max_epochs=30"
    )
    parser.add_argument(
        "--panel", type=Path, help="a folder of scripts/make_panel.py: check every member"
    )
    parser.add_argument("--members", nargs="+", help="with --panel: only these members")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[42], help="one set of runs per seed (same split)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "logs" / "recipe_check" / time.strftime("%Y-%m-%d_%H-%M-%S"),
        help="the template's run folders go here, one per seed (and member)",
    )
    args = parser.parse_args()
    console = Console(width=160)
    if args.panel is None:
        if args.root is None:
            parser.error("give an image folder, or --panel DIR")
        result = check(args.root, args.overrides, args.seeds, args.out)
        console.print(seed_table(args.root, result))
        return
    if args.root is not None:  # with --panel every positional argument is an override
        args.overrides.insert(0, str(args.root))
    record = args.panel / "panel.json"
    if not record.is_file():
        parser.exit(2, f"error: {record} does not exist: write it with scripts/make_panel.py\n")
    panel = json.loads(record.read_text())
    members = args.members or list(panel)
    unknown = sorted(set(members) - set(panel))
    if unknown:
        choices = ", ".join(panel)
        parser.exit(2, f"error: {', '.join(unknown)} not in {record}: choose from {choices}\n")
    results = {}
    for name in members:
        overrides = [*panel[name]["overrides"], *args.overrides]
        results[name] = check(args.panel / name, overrides, args.seeds, args.out / name)
        console.print(seed_table(args.panel / name, results[name]))
    table = panel_markdown(results, panel)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "panel.md").write_text(table)
    (args.out / "panel.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nseeds {' '.join(map(str, args.seeds))}, overrides {' '.join(args.overrides)}")
    print(table, end="")
    print(f"wrote {args.out / 'panel.md'} and {args.out / 'panel.json'}")


if __name__ == "__main__":
    main()
