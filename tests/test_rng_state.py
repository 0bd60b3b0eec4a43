"""The random-generator states a checkpoint keeps restore on a machine with fewer GPUs than the
one that saved them: what fits is restored, the rest is named once, nothing crashes."""

import json
import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from src.callbacks.rng_state import RNGStateCheckpoint
from tests.conftest import QUIET
from tests.helpers import run_script


@pytest.fixture
def saved_on_eight_gpus() -> dict:
    """A checkpoint's RNG state from a machine with 8 GPUs (8 CUDA generator states)."""
    state = RNGStateCheckpoint().state_dict()  # torch, numpy and Python states of this process
    state["ranks"][0]["cuda"] = [torch.full((16,), gpu, dtype=torch.uint8) for gpu in range(8)]
    return state


def machine_with_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> dict[int, torch.Tensor]:
    """Make torch.cuda look like `count` GPUs; return the generator states set, by GPU.

    Setting the state of a GPU that does not exist fails as torch does (an index past
    torch.cuda.default_generators)."""
    restored: dict[int, torch.Tensor] = {}

    def set_rng_state(state: torch.Tensor, device: int | str = "cuda") -> None:
        index = device if isinstance(device, int) else 0
        if index >= count:
            raise IndexError("tuple index out of range")
        restored[index] = state

    for module in (torch.cuda, torch.cuda.random):
        monkeypatch.setattr(module, "set_rng_state", set_rng_state)
        monkeypatch.setattr(module, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    return restored


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_states_of_eight_gpus_restore_on_fewer_with_one_warning(
    saved_on_eight_gpus, monkeypatch, caplog, gpus
):
    restored = machine_with_gpus(monkeypatch, gpus)
    cpu_draw = torch.get_rng_state()
    with caplog.at_level(logging.WARNING):
        RNGStateCheckpoint().load_state_dict(saved_on_eight_gpus)
    # what fits is restored: GPU i gets the state saved for GPU i
    assert sorted(restored) == list(range(gpus))
    saved = saved_on_eight_gpus["ranks"][0]
    assert all(torch.equal(restored[i], saved["cuda"][i]) for i in restored)
    assert torch.equal(torch.get_rng_state(), saved["torch"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"the checkpoint holds the random-generator states of 8 GPUs, this machine has {gpus}: "
        f"restored {gpus}; the random draws on the GPUs differ from an uninterrupted run"
    ]
    torch.set_rng_state(cpu_draw)


def test_states_of_fewer_gpus_restore_without_a_warning(saved_on_eight_gpus, monkeypatch, caplog):
    restored = machine_with_gpus(monkeypatch, 8)
    saved = saved_on_eight_gpus["ranks"][0]
    saved["cuda"] = saved["cuda"][:2]  # saved on a 2-GPU machine
    with caplog.at_level(logging.WARNING):
        RNGStateCheckpoint().load_state_dict(saved_on_eight_gpus)
    assert sorted(restored) == [0, 1]
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_states_of_two_processes_resume_on_one_with_one_warning(caplog):
    """A checkpoint saved by two DDP processes, resumed without DDP: rank zero's states."""
    first = RNGStateCheckpoint().state_dict()["ranks"][0]
    torch.rand(1), np.random.rand(), random.random()
    second = RNGStateCheckpoint().state_dict()["ranks"][0]
    with caplog.at_level(logging.WARNING):
        RNGStateCheckpoint().load_state_dict({"ranks": [first, second]})
    assert torch.equal(torch.get_rng_state(), first["torch"])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "the checkpoint holds the random-generator states of 2 processes, this run has 1: "
        "restored those of the first 1; the random draws differ from an uninterrupted run"
    ]


@pytest.fixture
def process_group(tmp_path):
    """A gloo process group of this one process, as DDP makes them."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def test_in_a_process_group_the_gathered_states_load_safely_and_restore(process_group, tmp_path):
    saved = RNGStateCheckpoint().state_dict()
    torch.save({"callbacks": saved}, tmp_path / "x.ckpt")
    loaded = torch.load(tmp_path / "x.ckpt", weights_only=True)["callbacks"]
    after_save = torch.rand(3).tolist(), np.random.rand(), random.random()
    RNGStateCheckpoint().load_state_dict(loaded)
    assert len(loaded["ranks"]) == 1
    assert (torch.rand(3).tolist(), np.random.rand(), random.random()) == after_save


class RankDraws(L.Callback):
    """Test probe: process r first draws r numbers from each generator (processes whose draws
    differ, as under per-process augmentation), then records what it draws at the first training
    step of every epoch in FOLDER/rank<r>.json."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for _ in range(trainer.global_rank):
            torch.rand(1), np.random.rand(), random.random()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx > 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        record[trainer.current_epoch] = [torch.rand(1).item(), np.random.rand(), random.random()]
        path.write_text(json.dumps(record))


def train_on_two_processes(*args: str) -> None:
    """`python src/train.py trainer=ddp_cpu ARGS` (two gloo processes), which must succeed."""
    args = (*QUIET, "trainer=ddp_cpu", *args)
    result = run_script("src/train.py", *args, timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_each_ddp_process_resumes_its_own_random_draws(tmp_path):
    """Three epochs straight against one epoch, saved, then resumed for two: every process draws
    in epochs 1 and 2 what it drew in the straight run (not rank zero's draws on every rank)."""
    run = [
        "logger=none",
        "test=false",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "+callbacks.draws._target_=tests.test_rng_state.RankDraws",
    ]
    train_on_two_processes(
        *run,
        f"paths.log_dir={tmp_path / 'straight'}",
        f"+callbacks.draws.folder={tmp_path / 'straight_draws'}",
        "+callbacks.every_epoch._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.every_epoch.dirpath={tmp_path / 'epochs'}",
        "+callbacks.every_epoch.save_top_k=-1",
    )
    (saved,) = (tmp_path / "epochs").glob("epoch=0-*.ckpt")
    first_epoch = saved.rename(tmp_path / "epoch0.ckpt")  # no `=` in an override's value
    train_on_two_processes(
        *run,
        f"ckpt_path={first_epoch}",
        f"paths.log_dir={tmp_path / 'resumed'}",
        f"+callbacks.draws.folder={tmp_path / 'resumed_draws'}",
    )
    straight, resumed = (
        [json.loads((tmp_path / kind / f"rank{rank}.json").read_text()) for rank in (0, 1)]
        for kind in ("straight_draws", "resumed_draws")
    )
    assert straight[0]["1"] != straight[1]["1"]  # the two processes' generators differ
    for rank in (0, 1):
        assert sorted(resumed[rank]) == ["1", "2"]
        assert resumed[rank] == {epoch: straight[rank][epoch] for epoch in ("1", "2")}
