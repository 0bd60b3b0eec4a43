"""Any torchvision classification model by name, its head sized to `num_classes`."""

import difflib
import logging
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import get_model, get_model_weights, list_models

from src.core.errors import ConfigError

log = logging.getLogger(__name__)

# Families that add auxiliary classifiers in training unless asked not to; their extra outputs
# would reach the loss as a tuple, so they are off unless model.net.aux_logits says otherwise.
AUX_LOGITS_FAMILIES = ("googlenet", "inception_v3")


def classification_models() -> list[str]:
    """The names torchvision.models.get_model builds classification models for."""
    return list_models(module=torchvision.models)


def close_names(name: str, names: list[str]) -> list[str]:
    """The names most like `name`, for a suggestion (resnet18 and resnet50 when nothing is)."""
    return difflib.get_close_matches(name, names, n=3, cutoff=0.5) or ["resnet18", "resnet50"]


def weights_enum_member(name: str, weights: str) -> torchvision.models.WeightsEnum:
    """The weight set `weights` (DEFAULT, an enum name such as IMAGENET1K_V2, or the full
    ResNet50_Weights.IMAGENET1K_V2) of the model `name`."""
    enum = get_model_weights(name)
    key = weights.removeprefix(f"{enum.__name__}.")
    if key not in enum.__members__:
        raise ConfigError(
            f"model.net.weights={weights!r} is not a weight set of {name}: use one of "
            f"{', '.join(enum.__members__)} or null"
        )
    return enum[key]


def last_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The name and module of the model's last Linear or Conv2d: its classifier in every
    torchvision classification family (the 1x1 Conv2d of SqueezeNet)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    if not layers:
        return "", nn.Identity()
    return layers[-1]


def out_width(layer: nn.Module) -> int | None:
    """The outputs of a Linear or Conv2d layer, None for anything else."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    return None


def find_head(model: nn.Module, width: int, name: str) -> str:
    """The module name of the classification head, a last layer with `width` outputs."""
    head, layer = last_layer(model)
    if out_width(layer) != width:
        raise ConfigError(
            f"cannot find the classification head of {name} (no last Linear or Conv2d with "
            f"{width} outputs): use another model.net.name"
        )
    return head


def new_head(layer: nn.Module, num_classes: int) -> nn.Module:
    """A freshly initialised layer like `layer` (Linear or 1x1 Conv2d) with num_classes outputs."""
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None)
    return nn.Conv2d(layer.in_channels, num_classes, kernel_size=1, bias=layer.bias is not None)


def use_small_input_stem(model: nn.Module, name: str, pretrained: bool) -> None:
    """Swap a ResNet-like stem (conv1 + maxpool) for a 3x3 stride-1 conv and no max-pool."""
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(
        getattr(model, "maxpool", None), nn.Module
    ):
        raise ConfigError(
            f"model.net.small_input_stem=true needs a ResNet-like stem (conv1 + maxpool), which "
            f"{name} has not: set model.net.small_input_stem=false"
        )
    if pretrained:
        log.warning(
            f"model.net.small_input_stem=true replaces the pretrained first conv of {name} with a "
            "randomly initialised 3x3 one (and drops the max-pool)"
        )
    model.conv1 = nn.Conv2d(
        conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=conv.bias is not None
    )
    model.maxpool = nn.Identity()


def use_input_channels(model: nn.Module, channels: int, name: str) -> None:
    """Make the model's first conv take `channels` (1: grey-scale) instead of RGB. Its weights
    are summed over the colour channels, so a grey image gives what its three copies gave."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None))
    conv_name, conv = first
    if conv is None or conv.in_channels != 3 or conv.groups != 1:
        raise ConfigError(
            f"cannot give {name} {channels} input channels (its first layer is not a plain RGB "
            "convolution): use data.channels=3"
        )
    new = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(1, keepdim=True).expand_as(new.weight) / channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent, _, leaf = conv_name.rpartition(".")
    setattr(model.get_submodule(parent), leaf, new)


def download_error(name: str, weights: Any, exc: BaseException) -> ConfigError:
    """One line saying which weight file to place where, when it could not be downloaded."""
    file = weights.url.rsplit("/", 1)[-1]
    folder = f"{torch.hub.get_dir()}/checkpoints"
    reason = getattr(exc, "reason", None) or exc
    return ConfigError(
        f"could not download the {name} weights {weights.name} ({reason}): place {file} "
        f"(from {weights.url}) in {folder}/, or use model.net.weights=null"
    )


class TorchvisionNet(nn.Module):
    """A torchvision classification model (`torchvision.models.get_model`) whose head has
    `num_classes` outputs, wherever that family keeps it.

    Args:
        name: a torchvision classification model, e.g. resnet18, efficientnet_b0, convnext_tiny,
            mobilenet_v3_large, vit_b_16.
        num_classes: width of the head.
        weights: None (random init), "DEFAULT", or a weight set of the model (e.g. IMAGENET1K_V2).
            Pretrained weights keep everything but the head, which is replaced by a new one.
        small_input_stem: ResNet-like families only: a 3x3 stride-1 first conv and no max-pool,
            for 32x32 images (with pretrained weights this first conv is new and random).
        in_channels: 3 (RGB) or 1 (grey-scale: the first conv's weights summed over RGB).
        **kwargs: passed to get_model, e.g. image_size=32 for a ViT on 32x32 images.
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
        if name not in classification_models():
            raise ConfigError(
                f"model.net.name={name!r} is not a torchvision classification model: use one of "
                f"{', '.join(close_names(name, classification_models()))} or another name of "
                "torchvision.models.list_models(module=torchvision.models)"
            )
        self.num_classes = num_classes
        chosen = weights_enum_member(name, weights) if weights else None
        if name in AUX_LOGITS_FAMILIES:
            kwargs.setdefault("aux_logits", False)
        if chosen is None:  # random init: the family builds its own head, initialised its way
            kwargs["num_classes"] = num_classes
        try:
            self.model = get_model(name, weights=chosen, **kwargs)
        except OSError as exc:  # URLError and HTTPError included: no network, or no such file
            raise download_error(name, chosen, exc) from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"torchvision's {name} refused its arguments ({exc}): fix or remove them under "
                "model.net"
            ) from exc
        if chosen is None:
            head = find_head(self.model, num_classes, name)
        else:
            head = find_head(self.model, len(chosen.meta["categories"]), name)
            parent, _, leaf = head.rpartition(".")  # not set_submodule: torch 2.5 brought it
            setattr(
                self.model.get_submodule(parent),
                leaf,
                new_head(self.model.get_submodule(head), num_classes),
            )
        if small_input_stem:
            use_small_input_stem(self.model, name, pretrained=chosen is not None)
        if in_channels != 3:
            use_input_channels(self.model, in_channels, name)
        # parameter-name prefixes of the head; the rest is the backbone
        self.head_prefixes: tuple[str, ...] = (f"model.{head}",)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
