"""A hand-written small-data recipe in plain PyTorch, the bar `data=image_folder` is measured by.

A VGG-style net (seven 3x3 conv + BatchNorm + ReLU layers, 64 to 256 wide, three max-pools, global
average pooling), per-image random rotation, zoom, shift and flip applied to whole batches,
AdamW with a one-cycle schedule, label smoothing 0.1, 60 epochs. scripts/recipe_check.py calls
`train_and_test` on the same split as the template's run; nothing here comes from the template.
"""

import math

import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import Tensor, nn

WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, "M", 256)


def vgg(num_classes: int) -> nn.Sequential:
    layers, width = [], 3
    for w in WIDTHS:
        if w == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(width, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
        width = w
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
    )


def augment(x: Tensor, flip_p: float) -> Tensor:
    """Rotation (+-30 degrees), zoom (0.8-1.2), shift (+-12%) and flip, drawn per image."""
    n = len(x)
    angle = (torch.rand(n) * 2 - 1) * math.pi / 6
    zoom = torch.rand(n) * 0.4 + 0.8
    flip = torch.where(torch.rand(n) < flip_p, -1.0, 1.0)
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, (torch.rand(n) * 2 - 1) * 0.24], 1),
            torch.stack([sin * flip, cos, (torch.rand(n) * 2 - 1) * 0.24], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def train_and_test(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    num_classes: int,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 3e-3,
    flip_p: float = 0.5,
    seed: int = 0,
) -> float:
    """Train on uint8 images (N, 3, H, W) with class indices (N,) or multi-hot targets (N, C);
    the test accuracy, or the macro average precision for multi-hot targets."""
    torch.manual_seed(seed)
    multilabel = train[1].ndim == 2
    mean = train[0].float().mean((0, 2, 3), keepdim=True) / 255
    std = train[0].float().std((0, 2, 3), keepdim=True) / 255
    x, y = (train[0].float() / 255 - mean) / std, train[1]
    model = vgg(num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x)).split(batch_size):
            logits = model(augment(x[index], flip_p))
            if multilabel:
                loss = F.binary_cross_entropy_with_logits(logits, y[index])
            else:
                loss = F.cross_entropy(logits, y[index], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b) for b in ((test[0].float() / 255 - mean) / std).split(256)])
    if multilabel:
        return float(average_precision_score(test[1].numpy(), logits.sigmoid().numpy()))
    return (logits.argmax(1) == test[1]).float().mean().item()
