"""A multirun on one machine whose jobs would make Lightning start DDP processes is refused before
any work: Lightning's launcher runs the script again per process with the same command line, so
every process would run the whole sweep (or its own Optuna search) again."""

import pytest

from src.sweepers.ddp_guard import lightning_starts_processes, refuse_ddp_jobs
from tests.conftest import QUIET, compose_with_hydra
from tests.helpers import error_lines, run_in_process


@pytest.mark.parametrize(
    ("overrides", "starts"),
    [
        (["trainer=ddp"], True),
        (["trainer=ddp_cpu"], True),
        (["trainer.devices=2"], True),  # strategy auto picks ddp for several devices
        (["trainer=ddp", "trainer.devices=[0,1]"], True),
        (["trainer=ddp", "trainer.devices=auto"], True),  # every GPU of the machine
        (["trainer=ddp", "trainer.num_nodes=2", "trainer.devices=1"], True),
        ([], False),
        (["trainer=gpu"], False),
        (["trainer=ddp", "trainer.devices=1"], False),
        (["trainer=ddp_cpu", "trainer.strategy=ddp_spawn"], False),  # spawn runs no script
    ],
)
def test_which_trainer_configs_make_lightning_run_the_script_again(overrides, starts):
    assert lightning_starts_processes(compose_with_hydra(*overrides).trainer) is starts


@pytest.mark.parametrize("search", [[], ["hparams_search=optuna"]], ids=["grid", "optuna"])
def test_a_local_ddp_multirun_is_refused_with_one_line_before_any_work(tmp_path, search):
    result = run_in_process(
        "src/train.py",
        "-m",
        *search,
        f"paths.log_dir={tmp_path}",
        *QUIET,
        "trainer=ddp_cpu",
        "optimizer.lr=0.001,0.01",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = error_lines(result)
    assert line.startswith("error: a multirun cannot run jobs whose DDP processes Lightning ")
    assert "hydra/launcher=slurm" in line
    assert not (tmp_path / "train").exists()  # no sweep folder, no study, no job


def test_the_slurm_launcher_may_run_ddp_jobs(tmp_path):
    """One SLURM task per device: each job's processes come from srun, not from Lightning."""
    cfg = compose_with_hydra("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4")
    refuse_ddp_jobs(cfg, [cfg])  # does not raise
