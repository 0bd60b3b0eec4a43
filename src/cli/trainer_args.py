"""The Lightning Trainer's arguments as `trainer.NAME` config keys, read from the installed
Trainer's signature: their types and defaults, and the check of the composed `trainer` node.

configs/trainer/default.yaml holds every argument (scripts/sync_trainer_config.py writes the ones
not chosen by hand), so a misspelt key fails in Hydra's composition; the values' types are checked
here, before any work, since the YAML config itself has none.
"""

import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from functools import cache
from pathlib import PurePath
from typing import Any, Literal, Union

import lightning.pytorch as pl
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from src.core.errors import ConfigError

# Trainer arguments the entry points build from config groups of their own and pass themselves;
# no keys of the trainer node (a key would be overwritten without a word), with where to set them.
# (`plugins` is a key: src/train.py adds atomic checkpoint saving to the configured ones.)
PASSED_BY_CODE = {
    "callbacks": "the callbacks group sets them, e.g. callbacks.early_stopping.patience=5, "
    "~callbacks.early_stopping or callbacks=none",
    "logger": "the logger group sets it, e.g. logger=csv, logger=tensorboard_csv or logger=none",
}


@dataclass(frozen=True)
class TrainerArgument:
    """One keyword argument of the Trainer: its name, type annotation and default."""

    name: str
    annotation: Any
    default: Any


@cache
def trainer_arguments(trainer: type = pl.Trainer) -> dict[str, TrainerArgument]:
    """The Trainer's arguments that are config keys, in the signature's order."""
    hints = typing.get_type_hints(trainer.__init__)
    parameters = list(inspect.signature(trainer.__init__).parameters.values())[1:]  # no self
    arguments = {
        p.name: TrainerArgument(p.name, hints.get(p.name, Any), p.default)
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in PASSED_BY_CODE
    }
    if trainer is not pl.Trainer and any(p.kind == p.VAR_KEYWORD for p in parameters):
        arguments = trainer_arguments(pl.Trainer) | arguments  # a subclass passing **kwargs on
    return arguments


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    """The members of Union[...] / X | Y, else None."""
    origin = typing.get_origin(annotation)
    return typing.get_args(annotation) if origin in (Union, types.UnionType) else None


def type_name(annotation: Any) -> str:
    """A short reading of a type annotation as config values: `int or null`, `bool, 'warn' or
    null`, `list of int`, `str, timedelta or null (a class as a _target_ node)`."""
    names, classes = _type_names(annotation)
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"{text} (a class as a _target_ node)" if classes else text


def _type_names(annotation: Any) -> tuple[list[str], bool]:
    """The readings of the members of an annotation, and whether one is a class to build."""
    names: list[str] = []
    classes = False
    for member in _union_members(annotation) or (annotation,):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if member is type(None):
            name = "null"
        elif origin is Literal:
            name = ", ".join(repr(a) if isinstance(a, str) else str(a) for a in args)
        elif origin in (list, Sequence, Iterable) and args:
            inner, nested_classes = _type_names(args[0])
            classes |= nested_classes
            joined = ", ".join(inner[:-1]) + " or " + inner[-1] if len(inner) > 1 else inner[0]
            name = f"list of [{joined}]" if len(inner) > 1 else f"list of {joined}"
        elif origin in (dict, Mapping) and len(args) == 2:
            name = f"dict of {type_name(args[0])} to {type_name(args[1])}"
        elif member is Any or member is inspect.Parameter.empty:
            name = "any value"
        elif member in (bool, int, float, str):
            name = member.__name__
        elif isinstance(member, type) and issubclass(member, PurePath):
            name = "path"
        else:
            name, classes = getattr(member, "__name__", str(member)), True
        names.append(name)
    return [n for i, n in enumerate(names) if n not in names[:i]], classes


def accepts(annotation: Any, value: Any) -> bool:
    """Whether a config value (resolved, as plain Python) fits the type annotation; an int fits
    float; a class other than the plain types fits a node with `_target_` (instantiated)."""
    if (members := _union_members(annotation)) is not None:
        return any(accepts(m, value) for m in members)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, Sequence, Iterable):
        return isinstance(value, list) and all(accepts(args[0], v) for v in value)
    if origin in (dict, Mapping):
        return (
            isinstance(value, dict)
            and "_target_" not in value
            and all(accepts(args[0], k) and accepts(args[1], v) for k, v in value.items())
        )
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return isinstance(value, str)
    if isinstance(annotation, type):  # Accelerator, Strategy, Profiler, timedelta...
        return isinstance(value, dict) and "_target_" in value
    return True  # an annotation this does not read: Lightning judges the value


def unknown_key_message(key: str, trainer: type = pl.Trainer) -> str:
    """One line for `trainer.KEY` that is not an argument of the Trainer: where to set it, or
    the closest argument's name and type."""
    if key in PASSED_BY_CODE:
        return f"trainer.{key} is not a config key: {PASSED_BY_CODE[key]}"
    arguments = trainer_arguments(trainer)
    message = f"trainer.{key} is not an argument of Lightning's {trainer.__name__}"
    if close := get_close_matches(key, list(arguments), n=1):
        name = close[0]
        return f"{message}: did you mean trainer.{name} ({type_name(arguments[name].annotation)})?"
    return f"{message}: configs/trainer/default.yaml lists them all"


def trainer_class(node: DictConfig) -> type | None:
    """The Lightning Trainer (or subclass) the node's `_target_` names, else None."""
    target = node.get("_target_")
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, pl.Trainer) else None


def check_trainer_config(node: DictConfig | None) -> None:
    """Refuse a `trainer` key that is no argument of the Trainer its `_target_` names, or a value
    of a type the argument does not take, with one line naming the key, the type and a fix."""
    if not isinstance(node, DictConfig) or (trainer := trainer_class(node)) is None:
        return
    arguments = trainer_arguments(trainer)
    for key in map(str, node):
        if key.startswith("_") and key.endswith("_"):  # _target_, _convert_, ...
            continue
        if key not in arguments:
            raise ConfigError(unknown_key_message(key, trainer))
        try:
            value = node[key]
        except (MissingMandatoryValue, InterpolationResolutionError):
            continue  # not known yet: instantiating the Trainer reports it as it does today
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if not accepts(arguments[key].annotation, value):
            expected = type_name(arguments[key].annotation)
            raise ConfigError(
                f"trainer.{key}={_as_override(value)} is not a value Lightning's "
                f"{trainer.__name__} takes for {key}: it takes {expected}"
            )


def _as_override(value: Any) -> str:
    """A value as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
