"""Each private library name in src/compat.py, checked against the installed library: what the
project relies on it to do. A library release that renames or changes one fails here."""

import optuna
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from src import compat
from src.data.batch_policy import OPS


def test_the_grid_sweeper_extends_hydras_basic_sweeper_and_its_params():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    def name(cls: type) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    sweeper = compat.HydraBasicSweeper(max_batch_size=None, params={"seed": "1,2", "x": "a"})
    params = compat.sweep_params(sweeper)
    assert params == ["seed=1,2", "x=a"]
    # what GridSweeper.sweep does with them: split into jobs, then ask for batches until done
    overrides = OverridesParser.create().parse_overrides(params)
    sweeper.overrides = sweeper.split_arguments(overrides, None)
    jobs = []
    while not sweeper.is_done():
        jobs.extend(sweeper.get_job_batch())
    assert sorted(map(tuple, jobs)) == [("seed=1", "x=a"), ("seed=2", "x=a")]
    # the class Hydra finds as its own basic sweeper (what `-m` runs without a sweeper config)
    assert name(compat.HydraBasicSweeper) in map(name, Plugins.instance().discover(Sweeper))


def test_a_jobs_outcome_is_its_value_or_its_exception_without_raising():
    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)
    error = ValueError("bad")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_outcome(done) == 0.5
    assert compat.job_outcome(failed) is error


def test_a_trial_found_by_number_in_a_loaded_study_is_the_sweepers_trial(tmp_path):
    """As the pruning callback does in a job: load the study, take the trial the sweeper asked
    for by its number, and what it records is what the sweeper reads."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()
    asked = study.ask()  # number 1
    loaded = optuna.load_study(study_name="s", storage=storage)
    trial = compat.trial_by_number(loaded, asked.number)
    assert isinstance(trial, optuna.Trial) and trial.number == 1
    trial.set_user_attr("pruned", "hopeless")
    storage_of = compat.storage_of(study)
    assert isinstance(storage_of, optuna.storages.BaseStorage)
    assert storage_of.get_trial_user_attrs(compat.trial_id(asked)) == {"pruned": "hopeless"}
    assert storage_of.get_trial(compat.trial_id(asked)).number == 1


class SizedBoringModel(BoringModel):
    """BoringModel whose training batches are `batch_size` long, recording the sizes it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_size, self.seen = 2, []

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.randn(64, 32), batch_size=self.batch_size)

    def training_step(self, batch, batch_idx):
        self.seen.append(len(batch))
        return super().training_step(batch, batch_idx)


class SearchFirst(Callback):
    """Like a finder: at the start of fit, runs with the training loader (which Lightning keeps),
    then changes the batch size; forgets the loader if `forget`."""

    def __init__(self, forget: bool) -> None:
        self.forget = forget

    def on_fit_start(self, trainer: Trainer, pl_module: SizedBoringModel) -> None:
        trainer.fit_loop.setup_data()
        pl_module.batch_size = 5
        if self.forget:
            compat.forget_train_loader(trainer)


def fit(model: BoringModel, steps: int = 1, callbacks: list[Callback] | None = None) -> Trainer:
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, max_steps=steps, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(model)
    return trainer


@pytest.mark.parametrize("forget", [False, True])
def test_a_forgotten_train_loader_is_built_anew_for_training(forget):
    """What the finders rely on: Lightning keeps the training loader a search made for the
    training that follows, unless it is dropped (a batch-size search changes the size)."""
    model = SizedBoringModel()
    fit(model, callbacks=[SearchFirst(forget)])
    assert model.seen == [5 if forget else 2]


def test_the_logging_step_read_from_a_checkpoint(tmp_path):
    trainer = fit(SizedBoringModel(), steps=3)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    checkpoint = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert (
        compat.batches_that_stepped(checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]) == 3
    )


def test_the_wrapping_checkpoint_io_is_the_base_of_lightnings_wrappers():
    assert issubclass(AsyncCheckpointIO, compat.WrappingCheckpointIO)
    wrapper = AsyncCheckpointIO()
    inner = TorchCheckpointIO()
    wrapper.checkpoint_io = inner  # what trainer_plugins does to put ours inside
    assert wrapper.checkpoint_io is inner


def test_batch_norm_is_the_base_of_every_batch_norm_and_of_no_other_norm():
    norms = [nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.BatchNorm3d(2), nn.SyncBatchNorm(2)]
    assert all(isinstance(m, compat.BatchNorm) for m in norms)
    assert not any(isinstance(m, compat.BatchNorm) for m in (nn.GroupNorm(1, 2), nn.LayerNorm(2)))


def test_foreach_lerp_and_copy_update_every_tensor_in_place():
    averaged, current = [torch.zeros(3), torch.ones(2)], [torch.ones(3), torch.full((2,), 3.0)]
    compat.foreach_lerp_(averaged, current, 0.25)
    assert [t.tolist() for t in averaged] == [[0.25] * 3, [1.5, 1.5]]
    counters, now = [torch.tensor(1)], [torch.tensor(7)]
    compat.foreach_copy_(counters, now)
    assert counters[0].item() == 7


@pytest.mark.parametrize(
    "policy",
    [v2.RandAugment(), v2.TrivialAugmentWide(), v2.AutoAugment()],
    ids=lambda p: type(p).__name__,
)
def test_the_policies_ops_are_those_the_batched_pipeline_knows(policy):
    ops = compat.policy_ops(policy)
    assert set(ops) <= set(OPS) and "Equalize" in ops
    for magnitudes, signed in ops.values():
        values = magnitudes(10, 32, 32)
        assert isinstance(signed, bool) and (values is None or values.shape == (10,))
    if isinstance(policy, v2.AutoAugment):
        for steps in compat.autoaugment_subpolicies(policy):
            assert all(name in ops and 0 <= p <= 1 for name, p, _ in steps) and len(steps) == 2
