"""A frozen backbone stays frozen when DDP turns its batch-norm layers into SyncBatchNorm
(trainer=ddp sets sync_batchnorm: true): after a fit the frozen layers hold the running
statistics and weights they started with, while the layers after the frozen part train.

DDP refuses SyncBatchNorm on CPU processes, so this applies Lightning's own conversion (the one
`sync_batchnorm=true` applies) in this process and fits on the CPU; the freeze logic keys on
module names, which the conversion keeps."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins import TorchSyncBatchNorm
from torch import nn

from tests.conftest import LEAN

NORM_STATE = ("running_mean", "running_var", "num_batches_tracked", "weight", "bias")


@pytest.mark.parametrize(
    ("freeze", "frozen", "trained"),
    [
        ("model.backbone_lr_scale=0", ["features.1", "features.5", "features.9"], []),
        ("model.freeze_until=features.5", ["features.1", "features.5"], ["features.9"]),
    ],
)
def test_frozen_batch_norm_stays_frozen_after_sync_batchnorm_conversion(
    train_cfg, freeze, frozen, trained
):
    cfg = train_cfg(*LEAN, freeze)
    datamodule = instantiate(cfg.data)
    model = instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.get("scheduler"), _recursive_=False
    )
    model = TorchSyncBatchNorm().apply(model)  # what Lightning does under sync_batchnorm=true
    norms = {n for n, m in model.net.named_modules() if isinstance(m, nn.SyncBatchNorm)}
    assert norms == {"features.1", "features.5", "features.9"}
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    after = model.net.state_dict()
    for name in frozen:
        for key in NORM_STATE:
            assert torch.equal(after[f"{name}.{key}"], before[f"{name}.{key}"]), f"{name}.{key}"
    for name in trained:  # not frozen: it trains and keeps statistics as usual
        assert int(after[f"{name}.num_batches_tracked"]) == 3
        assert not torch.equal(after[f"{name}.running_mean"], before[f"{name}.running_mean"])
    head = "classifier.4.weight"
    assert not torch.equal(after[head], before[head])  # the head trained
