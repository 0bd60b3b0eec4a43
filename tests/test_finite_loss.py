"""A loss or weights that stop being finite end training, with one line that says where, which
checkpoint is still good and what to try; the run is failed and last.ckpt stays good. The loss is
checked on the device each step (no wait there) and the result read before any checkpoint is
saved, before validation and at the epoch's end; a bad step leaves the weights finite."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from src.callbacks.finite_loss import NonFiniteLoss, StopOnNonFiniteLoss
from tests.conftest import LEAN_SHORT as SHORT
from tests.conftest import STEPS_PER_EPOCH
from tests.helpers import (
    error_lines,
    last_checkpoint,
    run_folders,
    run_in_process,
    run_script,
    run_status,
)

HINTS = (
    "clip gradients with trainer.gradient_clip_val=1.0, or find the operation that made it "
    "with trainer.detect_anomaly=true"
)


class PoisonWeights(L.Callback):
    """Test only: set the first weight to NaN at a hook of an epoch (from 1), as divergence
    would."""

    def __init__(self, epoch: int, hook: str = "on_train_batch_start", batch: int = 0) -> None:
        self.epoch, self.hook, self.batch = epoch, hook, batch

    def _at(self, trainer, pl_module, hook, batch=0):
        if hook == self.hook and trainer.current_epoch + 1 == self.epoch and batch == self.batch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._at(trainer, pl_module, "on_train_batch_start", batch_idx)

    def on_train_epoch_end(self, trainer, pl_module):
        self._at(trainer, pl_module, "on_train_epoch_end")


class PoisonInputs(L.Callback):
    """Test only: make the images of one training batch (epoch from 1, batch from 0) NaN, so that
    step's loss is NaN while the weights are still finite."""

    def __init__(self, epoch: int, batch: int, rank: int | None = None) -> None:
        self.epoch, self.batch, self.rank = epoch, batch, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        at = trainer.current_epoch + 1 == self.epoch and batch_idx == self.batch
        if at and self.rank in (None, trainer.global_rank):
            batch[0].fill_(float("nan"))


def poison(epoch: int, what: str = "PoisonWeights", **settings: object) -> list[str]:
    added = [
        f"+callbacks.poison._target_={__name__}.{what}",
        f"+callbacks.poison.epoch={epoch}",
    ]
    return added + [f"+callbacks.poison.{key}={value}" for key, value in settings.items()]


def assert_finite(checkpoint: dict) -> None:
    for name, value in checkpoint["state_dict"].items():
        if name.startswith("net."):  # the network's weights (metric states may hold inf)
            assert torch.isfinite(value).all(), name


def test_a_huge_learning_rate_fails_with_one_line_and_hints(tmp_path):
    result = run_in_process(
        "src/train.py", *SHORT, "optimizer=sgd", "optimizer.lr=1e12", f"paths.log_dir={tmp_path}"
    )
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: the training loss became nan in epoch 1 after 2 steps; no checkpoint was saved "
        f"before it: lower the learning rate (optimizer.lr=1e+12 now), {HINTS}"
    ]
    assert "Traceback" not in result.stderr
    [run] = run_folders(tmp_path)  # kept: the failed run shows in reports
    assert (run / "status.txt").read_text().startswith("failed: the training loss became nan")
    assert run_status(run).startswith("failed: the training loss became nan")
    assert not (run / "checkpoints" / "last.ckpt").exists()


def test_a_nan_loss_names_the_last_good_checkpoint_and_leaves_it_good(tmp_path):
    result = run_in_process(
        "src/train.py", *SHORT, f"paths.log_dir={tmp_path}", *poison(2, batch=1)
    )
    assert result.returncode == 2
    [run] = run_folders(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert error_lines(result) == [
        f"error: the training loss became nan in epoch 2 after {STEPS_PER_EPOCH + 1} steps; the "
        f"last good checkpoint is {last} (saved in epoch 1 at step {STEPS_PER_EPOCH}): lower the "
        f"learning rate (optimizer.lr=0.001 now), {HINTS}"
    ]
    checkpoint = last_checkpoint(run)
    assert checkpoint["global_step"] == STEPS_PER_EPOCH
    assert_finite(checkpoint)
    assert (run / "status.txt").read_text().startswith("failed: the training loss became nan")


def test_non_finite_weights_are_never_saved_over_last_ckpt(tmp_path):
    result = run_in_process(
        "src/train.py", *SHORT, f"paths.log_dir={tmp_path}", *poison(2, hook="on_train_epoch_end")
    )
    assert result.returncode == 2
    [line] = error_lines(result)
    assert line.startswith("error: the weights became non-finite (net.")
    assert f"in epoch 2 after {2 * STEPS_PER_EPOCH} steps; the last good checkpoint is" in line
    [run] = run_folders(tmp_path)
    checkpoint = last_checkpoint(run)
    assert checkpoint["global_step"] == STEPS_PER_EPOCH  # epoch 2's was refused
    assert_finite(checkpoint)


def test_a_nan_loss_mid_epoch_is_caught_before_the_next_step_interval_checkpoint(tmp_path):
    command = [*SHORT, f"paths.log_dir={tmp_path}"]
    command += ["callbacks.last_checkpoint.every_n_train_steps=2", *poison(1, "PoisonInputs")]
    result = run_in_process("src/train.py", *command, "+callbacks.poison.batch=2")
    assert result.returncode == 2
    [run] = run_folders(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert error_lines(result) == [
        f"error: the training loss became nan in epoch 1 after 2 steps; the last good checkpoint "
        f"is {last} (saved in epoch 1 at step 2): lower the learning rate (optimizer.lr=0.001 "
        f"now), {HINTS}"
    ]  # step 4 would have saved it
    checkpoint = last_checkpoint(run)
    assert checkpoint["global_step"] == 2
    assert_finite(checkpoint)


@pytest.mark.slow
def test_under_ddp_a_nan_loss_in_one_process_stops_every_process_before_a_save(tmp_path):
    """Rank 1's loss goes NaN in the epoch's last step; the all-reduce hands rank 0 NaN gradients
    its own (finite) loss does not flag. Both processes must stop together at the next check,
    before validation and epoch 2's checkpoint (each process takes 5 batches an epoch)."""
    command = [*SHORT, f"paths.log_dir={tmp_path}", "trainer=ddp_cpu", "trainer.max_epochs=3"]
    command += [*poison(2, "PoisonInputs"), "+callbacks.poison.batch=4", "+callbacks.poison.rank=1"]
    result = run_script("src/train.py", *command, timeout=600, env={})  # the poison callback
    assert result.returncode == 2, result.stderr[-3000:]
    # each process that gets to print before the launcher stops the other says why it stopped
    good = "; the last good checkpoint is "
    said = {line.split(good)[0] for line in error_lines(result)}
    assert said and said <= {
        "error: the training loss became nan in epoch 2 after 9 steps",  # rank 1
        "error: a training loss became non-finite in epoch 2 after 10 steps",  # rank 0
    }
    [run] = run_folders(tmp_path)
    checkpoint = last_checkpoint(run)
    assert checkpoint["global_step"] == STEPS_PER_EPOCH  # epoch 1's, not epoch 2's
    assert_finite(checkpoint)
    assert (run / "status.txt").read_text().startswith("failed: ")


def test_a_step_of_non_finite_loss_moves_no_weight_to_nan_and_is_reported_at_the_next_check():
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    one_process = SimpleNamespace(reduce=lambda value, reduce_op: value)
    trainer = SimpleNamespace(
        global_step=6, current_epoch=1, callbacks=[], optimizers=[optimizer], strategy=one_process
    )
    callback = StopOnNonFiniteLoss()
    for images in (torch.randn(4, 3), torch.full((4, 3), float("nan")), torch.randn(4, 3)):
        loss = net(images).sum()
        callback.on_before_backward(trainer, net, loss)
        loss.backward()
        callback.on_before_optimizer_step(trainer, net, optimizer)
        optimizer.step()
        optimizer.zero_grad()
        trainer.global_step += 1
    assert all(torch.isfinite(p).all() for p in net.parameters())
    with pytest.raises(
        NonFiniteLoss, match="the training loss became nan in epoch 2 after 7 steps"
    ):
        callback.on_validation_start(trainer, net)
