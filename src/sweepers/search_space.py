"""Hydra sweep overrides (choice, range, interval with tag(log)) as Optuna suggestions."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer

Suggest = Callable[[optuna.Trial], Any]


@dataclass
class SearchSpace:
    """What each trial varies (name -> how to draw a value) and what it fixes (override lines)."""

    suggestions: dict[str, Suggest]
    descriptions: dict[str, str]
    fixed: list[str]

    def overrides(self, trial: optuna.Trial) -> list[str]:
        """The command-line overrides of one trial: drawn values, then the fixed ones."""
        drawn = [f"{name}={suggest(trial)}" for name, suggest in self.suggestions.items()]
        return drawn + self.fixed


def _suggestion(name: str, override: Override) -> Suggest:
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        return lambda trial: trial.suggest_categorical(name, choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if any(isinstance(v, float) for v in (start, stop, step)):
            last = start + step * int((stop - start) / step - 1e-9)  # range() excludes stop
            return lambda trial: trial.suggest_float(name, start, last, step=step)
        last = int(start + step * ((stop - start - 1) // step))
        return lambda trial: trial.suggest_int(name, int(start), last, step=int(step))
    if isinstance(value, IntervalSweep):
        low, high, log = value.start, value.end, "log" in value.tags
        if isinstance(low, int) and isinstance(high, int):
            return lambda trial: trial.suggest_int(name, low, high, log=log)
        return lambda trial: trial.suggest_float(name, float(low), float(high), log=log)
    raise ValueError(f"{override.input_line}: Optuna cannot draw from this kind of sweep")


def parse_search_space(lines: list[str]) -> SearchSpace:
    """Sweeps become suggestions; plain `key=value` lines are passed to every trial."""
    space = SearchSpace({}, {}, [])
    for override in OverridesParser.create().parse_overrides(lines):
        name = override.get_key_element()
        if override.is_sweep_override():
            space.suggestions[name] = _suggestion(name, override)
            space.descriptions[name] = override.input_line.split("=", 1)[1].strip()
        else:
            space.fixed.append(f"{name}={override.get_value_element_as_str()}")
    return space
