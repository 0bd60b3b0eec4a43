"""Instantiate the callbacks and loggers groups, which hold any number of `_target_` entries."""

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from lightning import Callback
from lightning.pytorch.loggers import Logger


def _instantiate_all(group: Mapping[str, Any] | None) -> list[Any]:
    """Instantiate every entry of a group that has a `_target_`, in order."""
    return [
        instantiate(entry)
        for entry in (group or {}).values()
        if isinstance(entry, Mapping) and "_target_" in entry
    ]


def instantiate_callbacks(group: Mapping[str, Any] | None) -> list[Callback]:
    """Lightning callbacks from the `callbacks` config group."""
    return _instantiate_all(group)


def instantiate_loggers(group: Mapping[str, Any] | None) -> list[Logger]:
    """Lightning loggers from the `logger` config group."""
    return _instantiate_all(group)
