"""The optimizer and its schedule on their own: built from partial configs over the network's
parameter groups, with the run's length for one-cycle, and refused settings in one line."""

import pytest
import torch
from torch import nn

from src.core.errors import ConfigError
from src.models.optimizer import build_optimizer, check_optimizer

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01, "weight_decay": 0.0}


class Net(nn.Module):
    head_prefixes = ("head",)

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


def test_without_a_scheduler_the_optimizer_alone():
    built = build_optimizer(Net(), ADAM)
    assert isinstance(built, torch.optim.Adam) and len(built.param_groups) == 1


def test_a_scheduler_gets_the_optimizer_and_lightning_its_own_keys():
    step = {
        "_target_": "torch.optim.lr_scheduler.StepLR",
        "_partial_": True,
        "step_size": 3,
        "interval": "epoch",
        "frequency": 2,
    }
    built = build_optimizer(Net(), ADAM, step)
    schedule = built["lr_scheduler"]
    assert (
        schedule["scheduler"].step_size == 3
        and schedule["scheduler"].optimizer is built["optimizer"]
    )
    assert (schedule["interval"], schedule["frequency"]) == ("epoch", 2)


def test_one_cycle_total_steps_auto_is_the_runs_optimizer_steps():
    one_cycle = {
        "_target_": "torch.optim.lr_scheduler.OneCycleLR",
        "_partial_": True,
        "max_lr": 0.1,
        "total_steps": "auto",
        "interval": "step",
    }
    built = build_optimizer(Net(), ADAM, one_cycle, total_steps=120)
    assert built["lr_scheduler"]["scheduler"].total_steps == 120


def test_backbone_lr_scale_splits_head_and_backbone():
    groups = build_optimizer(Net(), ADAM, backbone_lr_scale=0.1).param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 0.01), ("backbone", 0.001)]


@pytest.mark.parametrize(
    ("optimizer", "scale", "message"),
    [
        ({**ADAM, "lr": -1}, 1.0, "optimizer.lr=-1 is refused by torch.optim.Adam"),
        ({k: v for k, v in ADAM.items() if k != "lr"}, 0.5, "backbone_lr_scale needs optimizer.lr"),
    ],
)
def test_refused_settings_are_one_line_naming_the_key(optimizer, scale, message):
    with pytest.raises(ConfigError, match=message):
        check_optimizer(Net(), optimizer, backbone_lr_scale=scale)


def test_a_network_with_nothing_left_to_train_is_refused():
    net = Net().requires_grad_(False)
    with pytest.raises(ConfigError, match="every parameter is frozen"):
        check_optimizer(net, ADAM)
