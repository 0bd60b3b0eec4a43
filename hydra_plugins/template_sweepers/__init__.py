"""The template's sweepers, as Hydra loads them: from classes defined in `hydra_plugins`.

Hydra imports every module of this package at start-up to find plugins, in every Hydra app of the
environment. So these classes only name where the code lives (src/sweepers/) and import it when a
sweep uses them: plain start-up imports neither Optuna nor TensorBoard nor the template.
"""

from importlib import import_module
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class _DeferredSweeper(Sweeper):
    """A sweeper whose implementation, `module:Class` in `implementation`, is imported when the
    sweeper is built."""

    implementation = ""

    def __init__(self, **settings: Any) -> None:
        module, _, name = self.implementation.partition(":")
        self.sweeper: Sweeper = getattr(import_module(module), name)(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)


class GridSweeper(_DeferredSweeper):
    """Every combination of the swept values; a failing job does not end the sweep."""

    implementation = "src.sweepers.grid:GridSweeper"


class OptunaSweeper(_DeferredSweeper):
    """An Optuna search with pruning, continued from its SQLite study after a crash."""

    implementation = "src.sweepers.optuna_search:OptunaSweeper"
