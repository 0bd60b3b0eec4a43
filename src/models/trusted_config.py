"""The allow-list of what may be built from a config read from a file (a checkpoint someone sent):
this project's own classes, torch.optim's optimizers and schedules, torchvision's transforms and
the model builders of torchvision and timm. Nothing else a file names is imported or called."""

import pydoc
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from src.core.errors import ConfigError

# a dotted name of public parts only: `os.system` yes, `a.b(c)`, `x._private` or `..` no
DOTTED = re.compile(r"[A-Za-z]\w*(\.[A-Za-z]\w*)+")
# functions of this project that configs name as a `_target_` (classes are checked by kind)
PROJECT_BUILDERS = ("src.models.schedulers.cosine_with_warmup",)
NOT_OURS = "which is not a class of this project"
# Hydra's look-ups by name: allowed for what the allow-list allows, and torch's dtypes (older
# checkpoints' transform lists name torch.float32 so)
HYDRA_GETTERS = ("hydra.utils.get_object", "hydra.utils.get_class", "hydra.utils.get_method")


def _project_kind(target: str, obj: Any) -> str | None:
    import lightning as L
    from torch import nn

    if target in PROJECT_BUILDERS:
        return None
    kinds = (nn.Module, L.LightningDataModule, L.Callback)  # networks, data, the classifier
    if isinstance(obj, type) and obj.__module__.startswith("src.") and issubclass(obj, kinds):
        return None
    return NOT_OURS


def _optim_kind(target: str, obj: Any) -> str | None:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

    kinds = (Optimizer, LRScheduler, ReduceLROnPlateau)
    ok = isinstance(obj, type) and issubclass(obj, kinds) and obj.__name__ != "MultiplicativeLR"
    return None if ok else "which is not an optimizer or schedule of torch.optim"


def _transform_kind(target: str, obj: Any) -> str | None:
    ok = isinstance(obj, type) and obj.__module__.startswith("torchvision.transforms")
    return None if ok else "which is not a transform class of torchvision"


def _torchvision_model_kind(target: str, obj: Any) -> str | None:
    from torchvision.models import get_model_builder, list_models

    ok = any(get_model_builder(name) is obj for name in list_models())
    return None if ok else "which is not a model builder of torchvision"


def _timm_model_kind(target: str, obj: Any) -> str | None:
    from timm.models import is_model, model_entrypoint

    name = getattr(obj, "__name__", "")
    ok = callable(obj) and is_model(name) and model_entrypoint(name) is obj
    return None if ok else "which is not a model builder of timm"


# Namespaces whose modules may be imported to look a name up, each with what it may name there.
TRUSTED: dict[str, Callable[[str, Any], str | None]] = {
    "src.": _project_kind,
    "torch.optim.": _optim_kind,
    "torchvision.transforms.": _transform_kind,
    "torchvision.models.": _torchvision_model_kind,
    "timm.": _timm_model_kind,
}


def why_refused(target: Any) -> str | None:
    """Why `target` (a `_target_` value) may not be built from a file, or None if it may; a name
    outside the trusted namespaces is refused without importing anything."""
    if not isinstance(target, str) or not DOTTED.fullmatch(target):
        return NOT_OURS
    if "Lambda" in target:  # torchvision's Lambda, LambdaLR, Lightning's LambdaCallback
        return "which calls whatever callable it is given"
    check = next((c for prefix, c in TRUSTED.items() if target.startswith(prefix)), None)
    if check is None:
        return NOT_OURS
    try:
        obj = pydoc.locate(target)  # imports modules of the trusted namespace only
    except pydoc.ErrorDuringImport:
        obj = None
    if obj is None:
        return "which does not exist in this version of the project"
    return check(target, obj)


def _is_dtype(name: Any) -> bool:
    import torch

    prefix, _, attribute = str(name).rpartition(".")
    return prefix == "torch" and isinstance(getattr(torch, attribute, None), torch.dtype)


def refuse_untrusted(config: Any, source: str, key: str = "") -> None:
    """Raise a one-line ConfigError if `config` (read from `source`, e.g. `ckpt_path=x.ckpt`,
    under `key`) names, at any depth, a `_target_` outside the allow-list or holds an OmegaConf
    interpolation (a resolver is code; a run's saved config is resolved and has none)."""

    def refuse(path: str, value: Any, why: str) -> None:
        raise ConfigError(f"{source} names {path}={value}, {why}: refusing to build it")

    if isinstance(config, str):
        if "${" in config:
            refuse(key, repr(config), "an interpolation, which runs a resolver")
        return
    if isinstance(config, Mapping):
        for name, value in config.items():
            path = f"{key}.{name}" if key else str(name)
            refuse_untrusted(name, source, path)  # a key can be an interpolation too
            if name == "_target_" and value in HYDRA_GETTERS:
                args = config.get("_args_")
                looked_up = config.get("path", args[0] if isinstance(args, list) and args else None)
                if not _is_dtype(looked_up) and (why := why_refused(looked_up)) is not None:
                    refuse(f"{path}={value} with path", looked_up, why)
            elif name == "_target_" and (why := why_refused(value)) is not None:
                refuse(path, value, why)
            refuse_untrusted(value, source, path)
    elif isinstance(config, Sequence) and not isinstance(config, bytes):
        for index, value in enumerate(config):
            refuse_untrusted(value, source, f"{key}[{index}]")
