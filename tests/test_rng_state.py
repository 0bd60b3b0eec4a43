"""The random-generator states a checkpoint keeps restore on a machine with fewer GPUs than the
one that saved them: what fits is restored, the rest is named once, nothing crashes."""

import logging

import pytest
import torch

from src.callbacks.rng_state import RNGStateCheckpoint


@pytest.fixture
def saved_on_eight_gpus() -> dict:
    """A checkpoint's RNG state from a machine with 8 GPUs (8 CUDA generator states)."""
    state = RNGStateCheckpoint().state_dict()  # torch, numpy and Python states of this machine
    state["cuda"] = [torch.full((16,), gpu, dtype=torch.uint8) for gpu in range(8)]
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
    assert all(torch.equal(restored[i], saved_on_eight_gpus["cuda"][i]) for i in restored)
    assert torch.equal(torch.get_rng_state(), saved_on_eight_gpus["torch"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"the checkpoint holds the random-generator states of 8 GPUs, this machine has {gpus}: "
        f"restored {gpus}; the random draws on the GPUs differ from an uninterrupted run"
    ]
    torch.set_rng_state(cpu_draw)


def test_states_of_fewer_gpus_restore_without_a_warning(saved_on_eight_gpus, monkeypatch, caplog):
    restored = machine_with_gpus(monkeypatch, 8)
    saved_on_eight_gpus["cuda"] = saved_on_eight_gpus["cuda"][:2]  # saved on a 2-GPU machine
    with caplog.at_level(logging.WARNING):
        RNGStateCheckpoint().load_state_dict(saved_on_eight_gpus)
    assert sorted(restored) == [0, 1]
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
