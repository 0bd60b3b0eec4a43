"""Learning-rate schedules that torch does not ship as one class."""

import logging

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from src.core.errors import ConfigError

log = logging.getLogger(__name__)


def cosine_with_warmup(
    optimizer: Optimizer,
    warmup_epochs: int,
    max_epochs: int,
    warmup_start_factor: float = 0.01,
    eta_min: float = 0.0,
) -> LRScheduler:
    """Raise the LR linearly for `warmup_epochs`, then anneal it with a cosine to `eta_min`."""
    if warmup_epochs < 0 or max_epochs < 1:
        raise ConfigError(
            f"scheduler.warmup_epochs={warmup_epochs} and max_epochs={max_epochs} must be "
            "0 or more and 1 or more"
        )
    if warmup_epochs >= max_epochs:  # short debug runs: keep at least one epoch of cosine
        log.warning(f"warm-up of {warmup_epochs} epochs cut to {max_epochs - 1} for this short run")
        warmup_epochs = max_epochs - 1
    cosine = CosineAnnealingLR(optimizer, T_max=max_epochs - warmup_epochs, eta_min=eta_min)
    if warmup_epochs == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=warmup_start_factor, total_iters=warmup_epochs)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])
