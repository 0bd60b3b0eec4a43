"""Under DDP every validation and test image is scored exactly once (Lightning's DistributedSampler
would repeat a few to even out the processes' shares), and predict writes every row once."""

import csv
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Subset

from src import PROJECT_ROOT
from tests.conftest import QUIET
from tests.helpers import run_folders

ODD = 101  # images in the val or test split below: not a multiple of the 2 processes
STAGES = {"val": RunningStage.VALIDATING, "test": RunningStage.TESTING}


@pytest.mark.parametrize("stage", list(STAGES))
def test_two_processes_together_evaluate_each_image_once(train_cfg, monkeypatch, stage):
    """Lightning's own data connector prepares the loaders as it does for 2 DDP processes."""
    monkeypatch.setattr(rank_zero_only, "rank", 0)  # set_global_rank sets it process-wide
    datamodule = instantiate(train_cfg().data)
    seen: Counter[int] = Counter()
    for rank in (0, 1):
        trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False)
        trainer.strategy.cluster_environment.set_world_size(2)
        trainer.strategy.cluster_environment.set_global_rank(rank)
        datamodule.trainer = trainer
        datamodule.setup("fit")
        split = f"{stage}_set"
        setattr(datamodule, split, Subset(getattr(datamodule, split), range(ODD)))
        loader = getattr(datamodule, f"{stage}_dataloader")()
        prepared = trainer._data_connector._prepare_dataloader(
            loader, shuffle=False, mode=STAGES[stage]
        )
        indices = list(prepared.sampler)
        assert sum(len(batch[1]) for batch in prepared) == len(indices)
        seen.update(indices)
    assert seen == Counter(range(ODD))


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` on two CPU processes' worth of threads, from the repository root."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# digits split with these fractions: 65 validation and 321 test images (sklearn rounds shares
# up); each is odd, and one process gets one batch of 32 more than the other
VAL_FRACTION, TEST_FRACTION, TEST_IMAGES = "0.0359", "0.1785", 321


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """One short epoch of `trainer=ddp_cpu` (two processes), validated on 65 images and tested
    on 321: its folder."""
    log_dir = tmp_path_factory.mktemp("ddp")
    result = run(
        "src/train.py",
        f"paths.log_dir={log_dir}",
        *QUIET,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        f"data.val_fraction={VAL_FRACTION}",
        f"data.test_fraction={TEST_FRACTION}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(log_dir)
    return folder


@pytest.mark.slow
def test_ddp_test_metrics_count_each_test_image_once(ddp_run):
    with open(ddp_run / "confusion_matrix.csv") as file:
        rows = list(csv.reader(file))[1:]
    assert sum(int(v) for row in rows for v in row[1:]) == TEST_IMAGES
    with open(ddp_run / "per_class.csv") as file:
        per_class = list(csv.DictReader(file))
    support = [int(row["support"]) for row in per_class if row["class"].isdigit()]
    assert sum(support) == TEST_IMAGES


@pytest.mark.slow
def test_predict_under_ddp_writes_every_row_once(ddp_run, tmp_path):
    from scripts.make_example_data import write_digits

    write_digits(tmp_path / "digits")
    images = sorted((tmp_path / "digits" / "test").rglob("*.png"))[:7]  # an odd number
    for image in images:
        shutil.copy(image, tmp_path / f"{image.parent.name}_{image.name}")
    result = run(
        "src/predict.py",
        f"ckpt_path={ddp_run / 'checkpoints' / 'last.ckpt'}",
        f"input={tmp_path}/*.png",
        f"paths.log_dir={tmp_path / 'logs'}",
        "extras.print_config=false",
        "trainer=ddp_cpu",
        "batch_size=2",  # several batches per process
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(tmp_path / "logs", "predict")
    with open(folder / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    written = [Path(row["path"]).name for row in rows]
    assert sorted(written) == sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(set(written)) == len(written) == 7


def test_a_finished_run_leaves_its_gloo_process_group(tmp_path):
    """Lightning closes only NCCL groups at exit; an open gloo group can abort a finished DDP
    process at interpreter exit (seen once in a 2-node CPU run: exit -6). The entry points close
    it after a barrier."""
    import torch.distributed as dist

    from src.cli.extras import leave_process_group

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert dist.is_initialized()
    leave_process_group()
    assert not dist.is_initialized()
    leave_process_group()  # nothing to close: no error
