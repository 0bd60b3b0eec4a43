"""The classic CIFAR-10 "quick" network: three 5x5 conv + max-pool stages, then linear layers."""

from collections.abc import Sequence

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Conv(5x5) -> [BatchNorm] -> ReLU -> MaxPool(2) per stage, then a linear head.

    Args:
        num_classes: width of the output layer.
        channels: output channels of each conv stage (32/32/64 in the original).
        in_channels: channels of the input images.
        hidden_dim: width of the hidden linear layer; None for a single linear layer.
        batch_norm: add BatchNorm after each convolution.
        dropout: dropout probability before each linear layer.
        pool_size: spatial size the features are pooled to before flattening, so any input
            size works (for 32x32 inputs and three stages this pooling is the identity).

    `features` is the backbone and `classifier` the head (`head_prefixes`).
    """

    head_prefixes = ("classifier",)

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (32, 32, 64),
        in_channels: int = 3,
        hidden_dim: int | None = 64,
        batch_norm: bool = False,
        dropout: float = 0.0,
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        stages: list[nn.Module] = []
        width = in_channels
        for out in channels:
            stages += [nn.Conv2d(width, out, kernel_size=5, padding=2, bias=not batch_norm)]
            stages += [nn.BatchNorm2d(out)] if batch_norm else []
            stages += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(pool_size), nn.Flatten())
        flat = width * pool_size * pool_size
        if hidden_dim:
            head = [
                nn.Dropout(dropout),
                nn.Linear(flat, hidden_dim),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, num_classes),
            ]
        else:
            head = [nn.Dropout(dropout), nn.Linear(flat, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
