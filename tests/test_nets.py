"""The networks: output shapes, the CIFAR stem, pretrained loading and its offline errors."""

import pytest
import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from src.core.errors import ConfigError
from src.models.nets.cnn import SmallCNN
from src.models.nets.torchvision_net import TorchvisionNet


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("hidden_dim", [64, None])
def test_small_cnn_maps_any_image_size_to_class_logits(size, hidden_dim):
    net = SmallCNN(num_classes=7, hidden_dim=hidden_dim, batch_norm=True, dropout=0.2)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 7)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64]
    assert all(c.kernel_size == (5, 5) for c in convs)


def test_resnet50_small_input_stem_keeps_32px_resolution():
    net = TorchvisionNet("resnet50", num_classes=10, small_input_stem=True)
    assert net.model.conv1.kernel_size == (3, 3) and net.model.conv1.stride == (1, 1)
    assert isinstance(net.model.maxpool, nn.Identity)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_pretrained_weights_keep_the_backbone_and_replace_the_head(monkeypatch):
    pretrained = resnet50().state_dict()  # stands in for the downloaded ImageNet weights
    monkeypatch.setattr(ResNet50_Weights, "get_state_dict", lambda self, **_: pretrained)
    net = TorchvisionNet("resnet50", num_classes=5, weights="IMAGENET1K_V2")
    assert torch.equal(net.model.layer4[2].conv3.weight, pretrained["layer4.2.conv3.weight"])
    assert torch.equal(net.model.conv1.weight, pretrained["conv1.weight"])
    assert net.model.fc.out_features == 5


def test_pretrained_weights_offline_give_one_clear_line(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: it must download
    with pytest.raises(ConfigError) as error:
        TorchvisionNet("resnet50", num_classes=10, weights="IMAGENET1K_V1")
    message = str(error.value)
    assert (
        "could not download the resnet50 weights IMAGENET1K_V1 (network is unreachable" in message
    )
    assert "place resnet50-0676ba61.pth (from https://download.pytorch.org/models/" in message
    assert f"in {tmp_path}/hub/checkpoints/, or use model.net.weights=null" in message
    assert "\n" not in message


def test_unknown_weight_names_are_refused():
    with pytest.raises(ConfigError, match="IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT or null"):
        TorchvisionNet("resnet50", num_classes=10, weights="imagenet")
