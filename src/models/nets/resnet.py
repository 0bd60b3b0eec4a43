"""torchvision's ResNet50 with optional pretrained weights, a CIFAR stem and a frozen backbone."""

from urllib.error import URLError

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import ResNet50_Weights, resnet50

from src.cli.errors import ConfigError

WEIGHT_CHOICES = ("IMAGENET1K_V1", "IMAGENET1K_V2")


def _pretrained(weights: str) -> ResNet50_Weights:
    if weights not in WEIGHT_CHOICES:
        raise ConfigError(
            f"model.net.weights={weights!r} is not a ResNet50 weight set: use one of "
            f"{', '.join(WEIGHT_CHOICES)} or null"
        )
    return ResNet50_Weights[weights]


class ResNet50(nn.Module):
    """ResNet50 whose head is sized to `num_classes`.

    Args:
        num_classes: width of the new fully connected head.
        weights: None (random init), "IMAGENET1K_V1" or "IMAGENET1K_V2". Pretrained loading keeps
            the backbone and replaces the 1000-class head.
        small_input_stem: for 32x32 images use a 3x3 stride-1 first conv and no max-pool.
        freeze_backbone: train only the head; the backbone's BatchNorm statistics stay fixed too.
    """

    def __init__(
        self,
        num_classes: int,
        weights: str | None = None,
        small_input_stem: bool = False,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.freeze_backbone = freeze_backbone
        chosen = _pretrained(weights) if weights else None
        try:
            self.model = resnet50(weights=chosen)
        except (URLError, OSError) as exc:
            cache = f"{torch.hub.get_dir()}/checkpoints"
            raise ConfigError(
                f"could not download ResNet50 {weights} weights ({getattr(exc, 'reason', exc)}): "
                f"connect once to fill {cache}, copy {chosen.url.rsplit('/', 1)[-1]} there, or "
                "use model.net.weights=null"
            ) from exc
        if small_input_stem:
            self.model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.model.maxpool = nn.Identity()
        self.model.fc = nn.Linear(self.model.fc.in_features, num_classes)
        if freeze_backbone:
            for name, param in self.model.named_parameters():
                param.requires_grad = name.startswith("fc.")

    def train(self, mode: bool = True) -> "ResNet50":
        super().train(mode)
        if self.freeze_backbone:  # keep pretrained BatchNorm statistics as they are
            for module in self.model.modules():
                # _BatchNorm: also the SyncBatchNorm that trainer=ddp turns BatchNorm2d into
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
