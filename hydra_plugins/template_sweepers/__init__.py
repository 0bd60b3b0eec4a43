"""The template's sweepers, as Hydra loads them: from classes defined in `hydra_plugins`.

The code lives in src/sweepers/; these subclasses only give it the module Hydra requires.
"""

from src.sweepers import grid, optuna_search


class GridSweeper(grid.GridSweeper):
    """Every combination of the swept values; a failing job does not end the sweep."""


class OptunaSweeper(optuna_search.OptunaSweeper):
    """An Optuna search with pruning, continued from its SQLite study after a crash."""
