"""Run the commands and read what a run wrote, the way a user would: event files, CSV, folders."""

import contextlib
import csv
import io
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src import PROJECT_ROOT
from tests.conftest import QUIET


def run_script(
    script: str, *args: str, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` in a new process, from the repository root, as a user types it;
    with `env`, those variables are added and the run can import the tests' own callbacks."""
    command = [sys.executable, script, *args]
    if env is not None:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env}
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_in_process(script: str, *args: str) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` run as __main__ in this process (no second start-up of torch and
    Lightning, seconds each): the same code path, stdout, stderr and exit code."""
    stdout, stderr, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = [str(PROJECT_ROOT / script), *args]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)  # the run's log file, in a folder that may be gone
            handler.close()
    returncode = code if isinstance(code, int) else int(code is not None)
    return subprocess.CompletedProcess(args, returncode, stdout.getvalue(), stderr.getvalue())


def optimizer_of(model: Any, total_steps: int = 1) -> Any:
    """What the model's configure_optimizers returns, built without a trainer."""
    from src.models.optimizer import build_optimizer

    hp = model.hparams
    return build_optimizer(model.net, hp.optimizer, hp.scheduler, hp.backbone_lr_scale, total_steps)


def last_checkpoint(run_dir: Path) -> dict:
    """The run's checkpoints/last.ckpt, loaded."""
    import torch

    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The `error: ...` lines a command wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def run_folders(log_dir: Path, task: str = "train") -> list[Path]:
    """The run folders of `task` under log_dir, oldest first."""
    return sorted((log_dir / task / "runs").glob("*")) if (log_dir / task).exists() else []


def tensorboard_scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar tag in the run's TensorBoard event files, read with tensorboard's reader."""
    values: dict[str, list[float]] = {}
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
    return values


def csv_metric(run_dir: Path, name: str) -> list[float]:
    """The values of one metric in the run's csv/metrics.csv, in the order they were logged."""
    with open(run_dir / "csv" / "metrics.csv") as file:
        return [float(row[name]) for row in csv.DictReader(file) if row.get(name)]


def tensorboard_events(run_dir: Path) -> EventAccumulator:
    """All of a run's TensorBoard records (images, histograms, text, hparams), fully loaded."""
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"),
        size_guidance={"images": 0, "histograms": 0, "tensors": 0, "scalars": 0},
    )
    accumulator.Reload()
    return accumulator


def run_status(run_dir: Path) -> str:
    """The run's status as its status.txt holds it, e.g. `finished` or `failed: <why>`."""
    return (run_dir / "status.txt").read_text().splitlines()[0]


def session_hparams(run_dir: Path) -> dict[str, object]:
    """The hyperparameters of the run's TensorBoard HPARAMS session."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = tensorboard_events(run_dir).PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return MessageToDict(start.session_start_info)["hparams"]


def multirun_args(log_dir: Path, *args: str) -> list[str]:
    """-m, the log folder, quiet output, no figures and two epochs, then ARGS."""
    figures = ["~callbacks.augmented_images", "~callbacks.test_figures"]
    return ["-m", f"paths.log_dir={log_dir}", *QUIET, *figures, "trainer.max_epochs=2", *args]


def multirun(log_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python src/train.py -m ARGS` (in this process), logging under log_dir."""
    return run_in_process("src/train.py", *multirun_args(log_dir, *args))


def job_folders(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders in job order (their names start with the job number)."""
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def only_folder(parent: Path) -> Path:
    (folder,) = list(parent.iterdir())
    return folder
