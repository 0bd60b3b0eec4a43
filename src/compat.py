"""Every private name of Optuna, Hydra, Lightning and torch this project uses, in one place.

A library may change a private name in any release; tests/test_compat.py checks each one against
the installed library, so a change fails there, and tests/test_structure.py keeps every other
module off private names. Each says in one line (`why:`) what no public name does. Imports nothing
from src.
"""

from typing import Any

import torch
from hydra.core.utils import JobReturn
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO
from torch.nn.modules.batchnorm import _BatchNorm

# The base of Lightning's checkpoint plugins that wrap another one (AsyncCheckpointIO).
# why: only it tells a configured wrapper, which must wrap the atomic saving, from a plain plugin
WrappingCheckpointIO = _WrappingCheckpointIO
# The base of BatchNorm1d/2d/3d and SyncBatchNorm (not of GroupNorm or LayerNorm).
# why: torch has no public base class of them: frozen layers are found by one isinstance
BatchNorm = _BatchNorm
# torch's multi-tensor ops, as torch.optim.swa_utils uses them for its averages.
# why: the EMA update of every weight in a few kernels a step (AveragedModel's multi_avg_fn)
foreach_lerp_ = torch._foreach_lerp_
foreach_copy_ = torch._foreach_copy_


def __getattr__(name: str) -> Any:
    """HydraBasicSweeper: Hydra's basic sweeper (what `-m` runs), which the grid sweeper extends.

    why: Hydra exports no sweeper to extend; the grid sweeper keeps the basic one's job batching.
    Looked up when asked for: Hydra's plugin scan runs its module again, and a subclass of the
    class from before the scan fails its `super(BasicSweeper, self)`, which names the new one."""
    if name == "HydraBasicSweeper":
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        return BasicSweeper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sweep_params(sweeper: Any) -> list[str]:
    """The `hydra.sweeper.params` of a basic sweeper, as `key=value` overrides.

    why: only this private method reads them; the grid sweeper composes all jobs before any runs."""
    return sweeper._parse_config()


def job_outcome(result: JobReturn) -> Any:
    """What a Hydra job returned, or the exception it raised.

    why: JobReturn.return_value re-raises a failed job's exception; a sweep reports it, goes on."""
    return result._return_value


def storage_of(study: Any) -> Any:
    """The storage an optuna.Study reads and writes.

    why: a job's pruning note and the heartbeats are read and written there, not on the cached
    trial; optuna.Study has no public accessor."""
    return study._storage


def trial_id(trial: Any) -> int:
    """An optuna.Trial's id in its storage (its `number` counts within the study).

    why: the storage's heartbeat and user-attribute calls take the id, which Trial keeps private."""
    return trial._trial_id


def trial_by_number(study: Any, number: int) -> Any:
    """The optuna.Trial numbered `number` in `study` (a job reports to it from its own process).

    why: a job knows only its number (Hydra's job.num); the storage maps it to the trial's id."""
    import optuna

    storage_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, storage_id)


def policy_ops(policy: Any) -> dict[str, tuple[Any, bool]]:
    """A torchvision.transforms.v2 learned policy's ops (RandAugment, TrivialAugmentWide,
    AutoAugment): name -> (magnitudes(bins, height, width), a tensor or None; signed)."""
    return policy._AUGMENTATION_SPACE


def autoaugment_subpolicies(policy: Any) -> list[tuple[tuple[str, float, int | None], ...]]:
    """A v2.AutoAugment's sub-policies: steps of (op name, probability, magnitude bin or None)."""
    return policy._policies


def forget_train_loader(trainer: Any) -> None:
    """Drop the training loader Lightning keeps between fits, so the next fit builds it anew.

    why: a finder's search leaves a loader whose shuffle drew from the run's generator, and
    Lightning has no public reset."""
    trainer.fit_loop._combined_loader = None


def batches_that_stepped(epoch_loop_state: dict[str, Any]) -> int:
    """Lightning's count of optimizer-stepping batches (its logging step), from the
    `epoch_loop.state_dict` of a checkpoint's fit loop.

    why: resume=auto purges TensorBoard from the step the run continues at, known before the fit."""
    return int(epoch_loop_state["_batches_that_stepped"])
