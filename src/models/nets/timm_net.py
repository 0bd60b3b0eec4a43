"""Any timm model by name (`timm.create_model`), its head sized to `num_classes`."""

from pathlib import Path
from typing import Any

import timm
from huggingface_hub.constants import HF_HUB_CACHE
from huggingface_hub.errors import LocalEntryNotFoundError
from timm.models import get_pretrained_cfg, load_state_dict, split_model_name_tag
from torch import Tensor, nn

from src.core.errors import ConfigError
from src.models.nets.torchvision_net import close_names, out_width, use_small_input_stem

# What model.net.weights may end with to name a local weight file rather than a weight set.
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def is_weight_file(weights: str) -> bool:
    """Whether `weights` names a local file rather than DEFAULT or a pretrained tag."""
    return "/" in weights or weights.endswith(WEIGHT_FILE_SUFFIXES)


def pretrained_name(name: str, weights: str) -> str:
    """The timm name (architecture.tag) of the weight set `weights` (DEFAULT or a tag) of
    `name`, refused in one line when timm has no such weights."""
    architecture, tag = split_model_name_tag(name)
    available = timm.list_pretrained(f"{architecture}.*")
    if not available:
        raise ConfigError(
            f"timm has no pretrained weights for {architecture}: use model.net.weights=null or a "
            "weight file (model.net.weights=/path/to/model.safetensors)"
        )
    tags = ", ".join(n.split(".", 1)[1] for n in available)
    if weights == "DEFAULT":
        if tag and name not in available:
            raise ConfigError(
                f"model.net.name={name!r}: timm has no weight set {tag!r} for {architecture}; "
                f"use one of {tags}"
            )
        return name
    if f"{architecture}.{weights}" not in available:
        raise ConfigError(
            f"model.net.weights={weights!r} is not a timm weight set of {architecture}: use "
            f"DEFAULT, one of {tags}, a weight file or null"
        )
    return f"{architecture}.{weights}"


def download_error(name: str, exc: BaseException) -> ConfigError:
    """One line saying how to get the weights of `name` without a network."""
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.tag:
        name = f"{cfg.architecture}.{cfg.tag}"
    source = (
        f"model.safetensors from https://huggingface.co/{cfg.hf_hub_id}"
        if cfg is not None and cfg.hf_hub_id
        else getattr(cfg, "url", None) or "its weight file"
    )
    if isinstance(exc, LocalEntryNotFoundError):
        reason = "not in the cache, and the Hugging Face Hub cannot be reached"
    else:
        reason = f"{type(exc).__name__}: " + " ".join(str(exc).split(". ")[0].split())[:160]
    return ConfigError(
        f"could not download timm's {name} weights ({reason}): download {source} elsewhere "
        f"and pass model.net.weights=/path/to/model.safetensors, run once online to fill "
        f"{HF_HUB_CACHE}, or use model.net.weights=null"
    )


def timm_head(model: nn.Module, num_classes: int, name: str) -> tuple[str, ...]:
    """The module names of the model's classifier(s) as timm's pretrained config names them,
    else the module get_classifier() returns."""
    named = getattr(model, "pretrained_cfg", {}).get("classifier")
    heads = (named,) if isinstance(named, str) else tuple(named or ())
    modules = dict(model.named_modules())
    if not heads or not all(h in modules for h in heads):
        classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
        heads = tuple(n for n, m in modules.items() if n and m is classifier)
    if not heads or out_width(modules[heads[0]]) != num_classes:
        raise ConfigError(
            f"cannot find the classification head of timm's {name}: use another model.net.name"
        )
    return heads


def load_weight_file(model: nn.Module, path: str, heads: tuple[str, ...], name: str) -> None:
    """Load a weight file of the model into everything but its head, refusing a file that does
    not cover the rest."""
    try:
        state = load_state_dict(path)
    except Exception as exc:  # a file of another format, or damaged
        raise ConfigError(
            f"model.net.weights={path} is not a readable weight file ({exc})"
        ) from exc
    state = {k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)}
    own = model.state_dict()
    misfits = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not any(k.startswith(h + ".") for h in heads)]
    if misfits or missing:
        example = (misfits or missing)[0]
        raise ConfigError(
            f"model.net.weights={path} does not fit timm's {name} ({len(missing)} tensors "
            f"missing, {len(misfits)} unknown or of another shape, e.g. {example}): pass a "
            "weight file of that model"
        )
    model.load_state_dict(state, strict=False)


class TimmNet(nn.Module):
    """A timm model (`timm.create_model(name, pretrained=..., num_classes=...)`).

    Args:
        name: a timm model, e.g. resnet18, efficientnet_b0, convnext_tiny, vit_small_patch16_224,
            optionally with its pretrained tag (resnet18.a1_in1k).
        num_classes: width of the head.
        weights: None (random init), "DEFAULT" (timm's default weights of `name`), a pretrained
            tag of the architecture (e.g. a1_in1k), or a local weight file (.safetensors, .pth,
            ...). Pretrained weights keep everything but the head, which is new.
        small_input_stem: ResNet-like models (conv1 + maxpool) only: a 3x3 stride-1 first conv
            and no max-pool, for 32x32 images.
        in_channels: 3 (RGB) or 1 (grey-scale), timm's in_chans.
        **kwargs: passed to timm.create_model, e.g. img_size=32 for a ViT, drop_rate=0.2.
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        weights: str | None = None,
        small_input_stem: bool = False,
        in_channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not timm.is_model(name):
            raise ConfigError(
                f"model.net.name={name!r} is not a timm model: use one of "
                f"{', '.join(close_names(name, timm.list_models()))} or another name of "
                "timm.list_models()"
            )
        self.num_classes = num_classes
        file = bool(weights) and is_weight_file(weights)
        if file and not Path(weights).is_file():
            raise ConfigError(f"model.net.weights={weights}: no such file")
        build = pretrained_name(name, weights) if weights and not file else name
        try:
            self.model = timm.create_model(
                build,
                pretrained=bool(weights) and not file,
                num_classes=num_classes,
                in_chans=in_channels,  # timm sums pretrained RGB weights for 1 channel
                **kwargs,
            )
        except OSError as exc:  # no network, and not in the cache
            raise download_error(build, exc) from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"timm's {name} refused its arguments ({exc}): fix or remove them under model.net"
            ) from exc
        heads = timm_head(self.model, num_classes, name)
        if file:
            load_weight_file(self.model, weights, heads, name)
        if small_input_stem:
            use_small_input_stem(self.model, name, pretrained=bool(weights))
        # parameter-name prefixes of the head; the rest is the backbone
        self.head_prefixes: tuple[str, ...] = tuple(f"model.{h}" for h in heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
