"""Which of a network's parameters are its head, its backbone, frozen, or free of weight decay;
freezing them, batch-norm statistics included."""

import difflib
from collections.abc import Iterator
from typing import Any

from torch import nn

from src.compat import BatchNorm
from src.core.errors import ConfigError


def head_prefixes(net: nn.Module) -> tuple[str, ...]:
    """The parameter-name prefixes of the network's classification head (its `head_prefixes`)."""
    prefixes = getattr(net, "head_prefixes", None)
    if not prefixes:
        raise ConfigError(
            f"{type(net).__name__} does not name its head (a `head_prefixes` attribute): add one "
            "to use model.backbone_lr_scale, model.init_from or backbone fine-tuning"
        )
    return tuple(prefixes)


def in_head(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the parameter or module `name` (relative to the network) belongs to the head."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def backbone_modules(net: nn.Module) -> nn.ModuleList:
    """The modules outside the head that own parameters or buffers themselves: the backbone, as
    Lightning's BackboneFinetuning callback wants it (a view; the network's keys are unchanged)."""
    head = head_prefixes(net)
    return nn.ModuleList(
        module
        for name, module in net.named_modules()
        if name
        and not in_head(name, head)
        and (
            any(True for _ in module.parameters(recurse=False))
            or any(True for _ in module.buffers(recurse=False))
        )
    )


def _module_names(net: nn.Module) -> list[str]:
    return [name for name, _ in net.named_modules() if name]


def resolve_module(net: nn.Module, name: str, key: str = "model.freeze_until") -> str:
    """The full name in `net` of the module `name`: as given, or the one module whose name ends
    with it (so `layer3` finds a wrapped torchvision ResNet's `model.layer3`)."""
    names = _module_names(net)
    if name in names:
        return name
    endings = [n for n in names if n.endswith("." + name)]
    if len(endings) == 1:
        return endings[0]
    if len(endings) > 1:
        raise ConfigError(f"{key}={name} names several modules ({', '.join(endings)}): pick one")
    # suggest among the shorter names (the stages), not every conv of every block
    stages = [n for n in names if n.count(".") <= 1]
    close = difflib.get_close_matches(name, stages, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    shown = ", ".join(stages[:12]) + (", ..." if len(stages) > 12 else "")
    raise ConfigError(f"{key}={name} is not a module of the network: {hint}modules: {shown}")


def modules_up_to(net: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The modules registered before `name` and inside it, in registration (forward) order."""
    full = resolve_module(net, name)
    modules = [(n, m) for n, m in net.named_modules() if n]
    last = max(i for i, (n, _) in enumerate(modules) if n == full or n.startswith(full + "."))
    return modules[: last + 1]


def parameters_up_to(net: nn.Module, name: str) -> list[str]:
    """Names of the parameters held by the modules registered before the module `name` ends
    (its enclosing modules included, such as a ViT encoder with its position embedding)."""
    modules = modules_up_to(net, name)
    return [
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, module in [("", net), *modules]
        for param_name, _ in module.named_parameters(recurse=False)
    ]


def norm_layers(modules: list[tuple[str, nn.Module]]) -> list[str]:
    """The names of the batch-norm layers (SyncBatchNorm included) among `modules`."""
    return [name for name, module in modules if isinstance(module, BatchNorm)]


def freeze(net: nn.Module, freeze_until: str | None, backbone_lr_scale: float) -> list[str]:
    """Stop the gradients of the modules up to and including `freeze_until` and, with a
    backbone_lr_scale of 0, of all but the head; return the names of the batch-norm layers among
    the frozen modules, whose statistics stay as they are too (see keep_norms_frozen)."""
    frozen: list[tuple[str, nn.Module]] = []
    if freeze_until:
        names = set(parameters_up_to(net, freeze_until))
        for name, param in net.named_parameters():
            param.requires_grad_(param.requires_grad and name not in names)
        frozen += modules_up_to(net, freeze_until)
    if backbone_lr_scale == 0:
        head = head_prefixes(net)
        for name, param in net.named_parameters():
            param.requires_grad_(param.requires_grad and in_head(name, head))
        frozen += [(n, m) for n, m in net.named_modules() if n and not in_head(n, head)]
    return norm_layers(frozen)


def keep_norms_frozen(net: nn.Module, names: list[str]) -> None:
    """Put the named batch-norm layers in eval mode, so training leaves their statistics as they
    are: by name, since trainer=ddp replaces the layers by SyncBatchNorm ones."""
    for name in names:
        net.get_submodule(name).eval()


def _no_weight_decay_names(net: nn.Module) -> set[str]:
    """Parameters a network asks to keep free of weight decay (timm's `no_weight_decay()`)."""
    method = getattr(net, "no_weight_decay", None)
    names = set(method()) if callable(method) else set()
    inner = getattr(net, "model", None)
    method = getattr(inner, "no_weight_decay", None)
    if callable(method):
        names |= {f"model.{n}" for n in method()}
    return names


def is_norm_or_bias(name: str, param: nn.Parameter, skip: set[str]) -> bool:
    """Biases, norm-layer weights (1-d tensors) and what the network lists as no-decay."""
    return param.ndim <= 1 or name.endswith(".bias") or name in skip


def parameter_groups(
    net: nn.Module,
    lr: float,
    weight_decay: float | None,
    backbone_lr_scale: float,
    decay_norm_and_bias: bool,
) -> Iterator[dict[str, Any]]:
    """The optimizer's parameter groups of the trainable parameters: head first (its lr is the
    optimizer's), then the backbone at lr x backbone_lr_scale; each split in weight-decayed and
    decay-free (norm layers and biases) unless `decay_norm_and_bias`. Empty groups are left out;
    a group without `weight_decay` takes the optimizer's."""
    split_decay = not decay_norm_and_bias and weight_decay != 0
    scaled = backbone_lr_scale != 1
    head = head_prefixes(net) if scaled else ()
    skip = _no_weight_decay_names(net) if split_decay else set()
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if scaled and not in_head(name, head) else "head"
        no_decay = split_decay and is_norm_or_bias(name, param, skip)
        groups.setdefault((part, no_decay), []).append(param)
    for part in ("head", "backbone"):
        for no_decay in (False, True):
            params = groups.get((part, no_decay))
            if not params:
                continue
            label = part if scaled else "all"
            group: dict[str, Any] = {"params": params, "name": label + "/no_decay" * no_decay}
            group["lr"] = lr * (backbone_lr_scale if part == "backbone" else 1)
            if no_decay:
                group["weight_decay"] = 0.0
            yield group
