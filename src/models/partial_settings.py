"""Build an optimizer or scheduler from its partial config; a value its class refuses is one line
naming the key (torch's messages name the value, not the setting)."""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import get_object, instantiate

from src.core.errors import ConfigError

BUILD_ERRORS = (ValueError, TypeError)


def build_partial(
    group: str, settings: Mapping[str, Any], arg: Any, fresh_arg: Callable[[], Any]
) -> Any:
    """`instantiate(settings)(arg)`, or a ConfigError naming the `group.key` the class refused.
    fresh_arg: a new argument for each retry that finds the key (a failed build may change arg)."""
    try:
        return instantiate(settings)(arg)
    except BUILD_ERRORS as exc:
        reason = next(iter(str(exc).splitlines()), type(exc).__name__).rstrip(".")
        blamed = refused_key(settings, lambda changed: instantiate(changed)(fresh_arg()), reason)
        if blamed is None:
            raise ConfigError(f"bad {group} settings: {reason}: fix the {group}.* values") from exc
        key, default = blamed
        target = settings["_target_"]
        hint = f" ({target.rsplit('.', 1)[-1]}'s default, {default}, works)" if default else ""
        raise ConfigError(
            f"{group}.{key}={settings[key]} is refused by {target}: {reason}: pass another "
            f"{group}.{key}{hint}"
        ) from exc


def refused_key(
    settings: Mapping[str, Any], build: Callable[[dict[str, Any]], Any], reason: str
) -> tuple[str, str] | None:
    """The setting to blame for a build that failed with `reason`: the first whose reset to its
    class's default lets `build` succeed (with that default, as text), else the first whose reset
    changes the failure (a value another setting also constrains, with "" for the default)."""
    try:
        parameters = inspect.signature(get_object(settings["_target_"])).parameters
    except Exception:  # no importable target, or no signature to read
        return None
    changed_failure = None
    for key, value in settings.items():
        default = getattr(parameters.get(key), "default", inspect.Parameter.empty)
        if key.startswith("_") or default is inspect.Parameter.empty or default == value:
            continue
        try:
            build({**settings, key: default})
        except BUILD_ERRORS as exc:
            if changed_failure is None and not str(exc).startswith(reason):
                changed_failure = (key, "")
            continue
        return key, repr(default)
    return changed_failure
