"""Class imbalance: data.sampler=balanced (also under DDP) and model.class_weights=auto."""

import json
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from src.data.base import TransformedDataset
from src.data.in_memory import TensorImageDataset
from src.data.sampling import BalancedSampler, balanced_weights
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.models.tasks import inverse_frequency_weights
from src.train import train
from tests.conftest import FAST, QUIET, compose_config
from tests.helpers import error_lines, run_folders, run_in_process, run_script
from tests.test_cifar10 import cifar_overrides, tiny_cifar10  # noqa: F401  (tiny_cifar10: a fixture)

# 900 / 90 / 10 samples of classes 0 / 1 / 2
IMBALANCED = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)


class DrawnSamples(L.Callback):
    """Test probe: per epoch, the training indices this process was handed and the targets of
    the batches it trained on; written to `folder`/rank<global rank>.json when training ends."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.indices: dict[int, list[int]] = {}
        self.targets: dict[int, list[int]] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = trainer.train_dataloader.sampler  # Lightning's DDP wrapper, if it made one
        self.indices[trainer.current_epoch] = [int(i) for i in sampler]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.targets.setdefault(trainer.current_epoch, []).extend(batch[1].tolist())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        drawn = {"indices": self.indices, "targets": self.targets}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(drawn))


def drawn(sampler: BalancedSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def shares(indices: list[int], targets: torch.Tensor = IMBALANCED) -> list[float]:
    """The share of each class among the samples at `indices`."""
    counts = torch.bincount(targets[torch.tensor(indices)], minlength=3)
    return (counts / counts.sum()).tolist()


def test_a_balanced_draw_gives_every_class_an_equal_share():
    indices = drawn(BalancedSampler(IMBALANCED, seed=0), epoch=0)
    assert len(indices) == len(IMBALANCED)  # an epoch is as long as the training set
    assert shares(indices) == pytest.approx([1 / 3] * 3, abs=0.05)  # shuffled: 0.9, 0.09, 0.01


def test_a_multilabel_sample_is_drawn_by_its_rarest_label():
    # label 0 on 900 samples, label 1 on 100 (10 of them with label 0 too), 50 with no label
    targets = torch.zeros(1040, 2)
    targets[:900, 0] = 1
    targets[890:990, 1] = 1
    weights = balanced_weights(targets)
    assert weights[0] == pytest.approx(1 / 890)  # label 0 only
    assert weights[895] == weights[950] == pytest.approx(1 / 100)  # rarest: label 1
    assert weights[1000] == pytest.approx(1 / 50)  # no label: a group of its own
    indices = torch.tensor(drawn(BalancedSampler(targets, seed=0), epoch=0))
    with_label_1 = targets[indices, 1].mean()
    assert with_label_1 == pytest.approx(1 / 3, abs=0.05)  # shuffled: 100 / 1040


def test_each_epoch_draws_anew_from_its_seed_and_epoch_alone():
    sampler = BalancedSampler(IMBALANCED, seed=3)
    first = drawn(sampler, 0)
    assert list(sampler) == first  # the same epoch again: the same draw
    assert drawn(sampler, 1) != first
    assert drawn(BalancedSampler(IMBALANCED, seed=3), 0) == first  # a resumed run draws the same
    assert drawn(BalancedSampler(IMBALANCED, seed=4), 0) != first


def test_under_ddp_lightning_hands_each_process_its_own_part_of_the_draw(monkeypatch):
    """Lightning's own data connector (use_distributed_sampler) wraps the sampler for DDP with
    two processes: each gets half of the epoch's draw, together all of it, a new one each epoch."""
    loader = DataLoader(
        TensorDataset(torch.arange(len(IMBALANCED))),
        batch_size=10,
        sampler=BalancedSampler(IMBALANCED),
    )
    parts: dict[int, list[list[int]]] = {}
    monkeypatch.setattr(rank_zero_only, "rank", 0)  # set_global_rank sets it process-wide
    for rank in (0, 1):
        trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False)
        trainer.strategy.cluster_environment.set_global_rank(rank)
        prepared = trainer._data_connector._prepare_dataloader(
            loader, shuffle=True, mode=RunningStage.TRAINING
        )
        parts[rank] = []
        for epoch in (0, 1):
            prepared.sampler.set_epoch(epoch)  # what the fit loop calls (forwarded to ours)
            parts[rank].append([int(i) for (batch,) in prepared for i in batch])
    reference = BalancedSampler(IMBALANCED)
    for epoch in (0, 1):
        first, second = parts[0][epoch], parts[1][epoch]
        assert len(first) == len(second) == len(IMBALANCED) // 2
        assert first != second
        assert sorted(first + second) == sorted(drawn(reference, epoch))
        assert shares(first) == pytest.approx([1 / 3] * 3, abs=0.07)
    assert parts[0][0] != parts[0][1]


@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_the_data_modules_training_loader_draws_balanced_batches(train_cfg, pipeline, monkeypatch):
    dm = instantiate(train_cfg("data.sampler=balanced", f"data.pipeline={pipeline}").data)
    dm.setup("fit")
    # an imbalanced subset of the training digits: 120 of class 0, 12 of 1, 4 of 2
    source = dm.train_set if pipeline == "batched" else dm.train_set.source
    counts = [(0, 120), (1, 12), (2, 4)]
    index = torch.cat([(source.targets == c).nonzero()[:n, 0] for c, n in counts])
    subset = TensorImageDataset(source.images[index], source.targets[index])
    if pipeline == "per_sample":
        subset = TransformedDataset(subset, dm.train_set.transform)
    dm.train_set = subset
    monkeypatch.setattr(dm, "train_targets", lambda: source.targets[index])
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(5):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        images = torch.cat([images for images, _ in batches])
        assert images.shape == (136, 3, 32, 32)  # an epoch: as many samples as the subset
        assert images.dtype == (torch.uint8 if pipeline == "batched" else torch.float32)
        epochs.append(torch.cat([targets for _, targets in batches]))
    assert not torch.equal(epochs[0], epochs[1])
    drawn_counts = torch.bincount(torch.cat(epochs), minlength=3)
    assert (drawn_counts / drawn_counts.sum()).tolist() == pytest.approx([1 / 3] * 3, abs=0.08)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data.sampler=weighted"], "error: data.sampler='weighted' is not known: use null or "),
        (
            ["data=digits_multilabel", "model.class_weights=auto"],
            "error: model.class_weights=auto applies to multi-class data: for multi-label data "
            "set model.pos_weight=auto",
        ),
        (["model.class_weights=inverse"], "error: model.class_weights='inverse': use a list, auto"),
    ],
)
def test_a_wrong_imbalance_setting_is_refused_in_one_line(tmp_path, args, expected):
    result = run_in_process("src/train.py", *QUIET, f"paths.log_dir={tmp_path}", *args)
    assert result.returncode == 2  # a user error
    (line,) = error_lines(result)
    assert line.startswith(expected)


def test_inverse_frequency_weights_average_one():
    weights = inverse_frequency_weights(IMBALANCED, 3)
    assert weights.mean() == pytest.approx(1.0)
    assert (weights[1] / weights[0], weights[2] / weights[0]) == pytest.approx((10, 90))


@pytest.fixture(scope="module")
def balanced_run(tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """Two short epochs with data.sampler=balanced and model.class_weights=auto, recording what
    it drew: its folder and its training targets."""
    out = tmp_path_factory.mktemp("balanced")
    overrides = [
        *FAST,
        *QUIET,
        "logger=none",
        "data.sampler=balanced",
        "data.batch_size=16",
        "model.class_weights=auto",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "+callbacks.drawn._target_=tests.test_sampling.DrawnSamples",
        f"+callbacks.drawn.folder={out / 'drawn'}",
    ]
    cfg = compose_config("train.yaml", out, overrides)
    train(cfg)
    return out, instantiate(cfg.data).train_targets()


def test_a_run_trains_on_the_balanced_draw_of_each_epoch(balanced_run):
    out, targets = balanced_run
    record = json.loads((out / "drawn" / "rank0.json").read_text())
    sampler = BalancedSampler(targets, seed=42)  # the run's seed
    for epoch in ("0", "1"):
        expected = drawn(sampler, int(epoch))
        assert record["indices"][epoch] == expected
        trained = record["targets"][epoch]
        assert len(trained) == 3 * 16  # three batches of 16
        assert trained == targets[torch.tensor(expected[: len(trained)])].tolist()
    assert record["indices"]["0"] != record["indices"]["1"]


def test_class_weights_auto_are_saved_in_the_checkpoint_and_reloaded(balanced_run):
    out, targets = balanced_run
    counts = torch.bincount(targets, minlength=10).double()
    expected = (1 / counts) / (1 / counts).mean()
    assert not torch.allclose(
        expected, torch.ones(10).double(), atol=1e-3
    )  # digits: 124 to 128 a class
    checkpoint = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert checkpoint["hyper_parameters"]["class_weights"] == "auto"
    saved = checkpoint["state_dict"]["criterion.weight"]
    assert saved.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    model = classifier_from_checkpoint(checkpoint)  # as eval and predict rebuild it
    assert model.criterion.weight.tolist() == pytest.approx(expected.tolist(), rel=1e-5)


@pytest.mark.slow
def test_a_ddp_run_gives_each_process_a_different_part_of_each_epochs_draw(tmp_path):
    """Two CPU processes (gloo), as trainer=ddp_cpu starts them, with data.sampler=balanced."""
    args = [
        *QUIET,
        f"paths.log_dir={tmp_path}",
        "trainer=ddp_cpu",
        "data.sampler=balanced",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "test=false",
        "+callbacks.drawn._target_=tests.test_sampling.DrawnSamples",
        f"+callbacks.drawn.folder={tmp_path / 'drawn'}",
    ]
    result = run_script("src/train.py", *args, timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(run_folders(tmp_path)) == 1
    records = [json.loads((tmp_path / "drawn" / f"rank{r}.json").read_text()) for r in (0, 1)]
    targets = instantiate(compose_config("train.yaml", tmp_path / "x").data).train_targets()
    sampler = BalancedSampler(targets, seed=42)
    for epoch in ("0", "1"):
        first, second = (record["indices"][epoch] for record in records)
        assert len(first) == len(second) == (len(targets) + 1) // 2
        assert first != second
        # together the whole draw (DDP repeats one sample to even out an odd count)
        draw, handed = Counter(drawn(sampler, int(epoch))), Counter(first + second)
        assert not draw - handed and (handed - draw).total() == len(targets) % 2
        for record in records:  # each process trained on its own part: 4 batches of 32
            trained = record["targets"][epoch]
            assert trained == targets[torch.tensor(record["indices"][epoch][:128])].tolist()
    assert records[0]["indices"]["0"] != records[0]["indices"]["1"]


@pytest.mark.usefixtures("tiny_cifar10")  # a tiny archive in tmp_path / "data"
@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_cifar10_lists_its_training_targets_for_the_sampler(train_cfg, tmp_path, pipeline):
    overrides = [
        *cifar_overrides(tmp_path / "data"),
        "data.sampler=balanced",
        f"data.pipeline={pipeline}",
    ]
    before = instantiate(train_cfg(*overrides).data).train_targets()  # read from the files
    dm = instantiate(train_cfg(*overrides).data)
    dm.setup("fit")
    labels = [int(target) for _, target in dm.train_set]
    assert before.tolist() == dm.train_targets().tolist() == labels
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, BalancedSampler) and len(loader.sampler) == 30
    assert sum(len(batch[1]) for batch in loader) == 30
