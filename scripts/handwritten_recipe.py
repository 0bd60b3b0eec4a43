"""A hand-written small-data recipe in plain PyTorch, the bar `data=image_folder` is measured by.

What a researcher writes in 60 lines: a VGG-style net (seven 3x3 conv + BatchNorm + ReLU layers,
64 to 256 wide, three max-pools, global average pooling), random crops (padded by an eighth of the
side, zeros) and horizontal flips only, the training images' own mean and std, AdamW with a
one-cycle schedule, label smoothing 0.1. scripts/recipe_check.py calls `train_and_test` on the
same split as the template's run; nothing here comes from the template.
"""

import math

import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import Tensor, nn

WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, "M", 256)


def vgg(num_classes: int, channels: int = 3) -> nn.Sequential:
    layers, width = [], channels
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
    """A random crop of each image padded by an eighth of its side, and a horizontal flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    corners = torch.randint(0, 2 * pad + 1, (n, 2)).tolist()
    crops = torch.stack([padded[i, :, t : t + h, c : c + w] for i, (t, c) in enumerate(corners)])
    flip = torch.rand(n) < flip_p
    return torch.where(flip[:, None, None, None], crops.flip(3), crops)


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
    """Train on uint8 images (N, C, H, W) with class indices (N,) or multi-hot targets (N, C);
    the test accuracy, or the macro average precision for multi-hot targets."""
    torch.manual_seed(seed)
    multilabel = train[1].ndim == 2
    mean = train[0].float().mean((0, 2, 3), keepdim=True) / 255
    std = train[0].float().std((0, 2, 3), keepdim=True) / 255
    x, y = (train[0].float() / 255 - mean) / std, train[1] if multilabel else train[1].long()
    model = vgg(num_classes, channels=x.shape[1])
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
    return (logits.argmax(1) == test[1].long()).float().mean().item()


def svm_on_pixels(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> float:
    """scikit-learn's RBF support-vector machine on the raw pixels (scaled to [0, 1]), its
    default settings: the test accuracy, or the macro average precision for multi-hot targets."""
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    x, x_test = (t[0].flatten(1).float().numpy() / 255 for t in (train, test))
    if train[1].ndim == 2:
        svm = OneVsRestClassifier(SVC()).fit(x, train[1].numpy())
        return float(average_precision_score(test[1].numpy(), svm.decision_function(x_test)))
    svm = SVC().fit(x, train[1].long().numpy())
    return float((svm.predict(x_test) == test[1].long().numpy()).mean())
