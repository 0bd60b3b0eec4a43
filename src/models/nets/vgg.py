"""A VGG-style network for small images trained from scratch: 3x3 convolutions, max-pools, global
average pooling."""

from collections.abc import Sequence

from torch import Tensor, nn


class VGG(nn.Module):
    """Stages of 3x3 Conv -> BatchNorm -> ReLU layers, a 2x2 max-pool between stages, then global
    average pooling and a linear head; any input size works.

    Args:
        num_classes: width of the output layer.
        stages: output channels of each conv layer, one list per stage; a max-pool follows every
            stage but the last, e.g. [[64, 64], [128, 128], [256, 256], [256]].
        in_channels: channels of the input images.
        dropout: dropout probability before the linear head.
    """

    head_prefixes = ("classifier",)

    def __init__(
        self,
        num_classes: int,
        stages: Sequence[Sequence[int]] = ((64, 64), (128, 128), (256, 256), (256,)),
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        width = in_channels
        for i, stage in enumerate(stages):
            if i:
                layers.append(nn.MaxPool2d(2))
            for out in stage:
                layers += [
                    nn.Conv2d(width, out, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                width = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
