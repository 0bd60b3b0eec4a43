"""Rich printing: the composed config as a tree, and the test confusion matrix as a table."""

import csv
from collections.abc import Sequence
from pathlib import Path

import rich
import rich.syntax
import rich.tree
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.table import Table
from torch import Tensor

# The groups printed first, in this order; the rest follow as composed.
FIRST = ("data", "model", "optimizer", "scheduler", "callbacks", "logger", "trainer", "paths")


@rank_zero_only
def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the composed config as a rich tree and, if given, save the same text to a file."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    order = [k for k in FIRST if k in cfg] + [k for k in cfg if k not in FIRST]
    for key in order:
        branch = tree.add(key, style="bold", guide_style="dim")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as file:
            rich.print(tree, file=file)


@rank_zero_only
def print_confusion_matrix(
    matrix: Tensor, class_names: Sequence[str], save_to: Path | None = None
) -> None:
    """Print the confusion matrix (rows: true class, columns: predicted) and save it as CSV."""
    table = Table(title="test confusion matrix (rows: true, columns: predicted)")
    table.add_column("true \\ pred", style="bold")
    for name in class_names:
        table.add_column(str(name), justify="right")
    rows = [
        [str(name), *(str(int(v)) for v in row)]
        for name, row in zip(class_names, matrix.tolist(), strict=True)
    ]
    for row in rows:
        table.add_row(*row)
    rich.print(table)
    if save_to is not None:
        with open(save_to, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["true\\pred", *map(str, class_names)])
            writer.writerows(rows)
