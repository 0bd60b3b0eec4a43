"""Fine-tuning: parameter groups, freezing, starting from a file's weights, gradual unfreezing."""

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from torch import nn

from src.cli.instantiate import instantiate_callbacks
from src.core.errors import ConfigError
from src.models.classifier import ImageClassifier
from src.models.init_from import load_initial_weights
from src.train import train
from tests.conftest import FAST, ONE_EPOCH, SMALL_MULTILABEL, compose_config
from tests.helpers import optimizer_of

# a couple of batches of each stage, so a test trains for real but fast
SHORT_EPOCH = [*ONE_EPOCH, "trainer.limit_train_batches=3", "callbacks.early_stopping.patience=5"]


def build(cfg) -> ImageClassifier:
    return instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )


def fit(cfg, model: ImageClassifier, *callbacks: Callback) -> L.Trainer:
    """Fit `model` on the config's data with its trainer and callbacks (and `callbacks`)."""
    every = [*instantiate_callbacks(cfg.callbacks), *callbacks]
    trainer = instantiate(cfg.trainer, callbacks=every, logger=False)
    trainer.fit(model, datamodule=instantiate(cfg.data))
    return trainer


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_backbone_lr_scale_gives_the_backbone_a_tenth_of_the_heads_lr(train_cfg):
    cfg = train_cfg("optimizer=adamw", "optimizer.lr=0.002", "model.backbone_lr_scale=0.1")
    model = build(cfg)
    groups = optimizer_of(model).param_groups
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"head", "head/no_decay", "backbone", "backbone/no_decay"}
    assert by_name["head"]["lr"] == pytest.approx(0.002)
    assert by_name["backbone"]["lr"] == pytest.approx(0.0002)
    assert by_name["backbone/no_decay"]["lr"] == pytest.approx(0.0002)
    # the head is the classifier, everything else the backbone
    names = {id(p): n for n, p in model.net.named_parameters()}
    for group in groups:
        head = group["name"].startswith("head")
        assert all(names[id(p)].startswith("classifier.") == head for p in group["params"])
    # no weight decay on norm layers and biases (1-d tensors), the optimizer's on the others
    for group in groups:
        one_dim = {p.ndim <= 1 for p in group["params"]}
        if group["name"].endswith("no_decay"):
            assert group["weight_decay"] == 0.0 and one_dim == {True}
        else:
            assert group["weight_decay"] == pytest.approx(cfg.optimizer.weight_decay)
            assert one_dim == {False}
    covered = sum(len(g["params"]) for g in groups)
    assert covered == len(list(model.net.parameters()))


def test_the_trainer_uses_the_groups_and_logs_the_heads_lr(train_cfg):
    cfg = train_cfg(
        "optimizer=sgd", "optimizer.lr=0.05", "model.backbone_lr_scale=0.1", *SHORT_EPOCH
    )
    metrics = train(cfg)
    assert metrics["train/lr"] == pytest.approx(0.05)  # the head's, the first group


def test_decay_norm_and_bias_keeps_one_group(train_cfg):
    cfg = train_cfg("optimizer=adamw", "optimizer.decay_norm_and_bias=true")
    groups = optimizer_of(build(cfg)).param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == pytest.approx(0.01)


def test_freeze_until_freezes_exactly_the_named_stages_and_their_batchnorm(train_cfg):
    # SmallCNN features: 0 conv, 1 bn, 2 relu, 3 pool | 4 conv, 5 bn, ... ; freeze the first stage
    cfg = train_cfg("model.freeze_until=features.3", "optimizer.lr=0.01", *SHORT_EPOCH)
    model = build(cfg)
    frozen = {n for n, p in model.net.named_parameters() if not p.requires_grad}
    assert frozen == {"features.0.weight", "features.1.weight", "features.1.bias"}
    before = weights(model.net)
    fit(cfg, model)
    after = weights(model.net)
    for name in ("features.0.weight", "features.1.weight", "features.1.running_mean"):
        assert torch.equal(after[name], before[name]), name  # weights and statistics kept
    for name in ("features.4.weight", "features.5.running_mean", "classifier.4.weight"):
        assert not torch.equal(after[name], before[name]), name  # the rest trained


def test_backbone_lr_scale_zero_freezes_the_backbone_and_its_statistics(train_cfg):
    model = build(train_cfg("model.backbone_lr_scale=0"))
    trainable = {n for n, p in model.net.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.net.named_parameters() if n.startswith("classifier")}
    model.train()
    norms = [m for m in model.net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    # under DDP the layers become SyncBatchNorm: they stay frozen as well
    model.net = nn.SyncBatchNorm.convert_sync_batchnorm(model.net)
    model.train()
    synced = [m for m in model.net.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(synced) == len(norms) and not any(m.training for m in synced)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.freeze_until=featurs", "did you mean features?"),
        ("model.freeze_until=head", "is not a module of the network"),
        ("model.backbone_lr_scale=-1", "model.backbone_lr_scale must be 0 (frozen) or more"),
    ],
)
def test_bad_freezing_settings_give_one_line(train_cfg, override, expected):
    with pytest.raises(Exception) as error:
        build(train_cfg(override))
    assert expected in str(error.value)


def test_freezing_everything_is_refused(train_cfg):
    with pytest.raises(Exception, match="every parameter is frozen"):
        build(train_cfg("model.freeze_until=classifier"))


def _checkpoint(default_run) -> Path:
    return default_run[0] / "checkpoints" / "best.ckpt"


def test_init_from_a_run_loads_the_backbone_and_gives_a_new_head(train_cfg, default_run):
    cfg = train_cfg(*SMALL_MULTILABEL)
    model = build(cfg)
    report = load_initial_weights(model, _checkpoint(default_run))
    saved = torch.load(_checkpoint(default_run), weights_only=True)["state_dict"]
    for name, tensor in model.net.state_dict().items():
        if name.startswith("features."):
            assert torch.equal(tensor, saved[f"net.{name}"]), name
    status = {row[0]: row[2] for row in report.rows}
    assert {n for n, s in status.items() if s == "loaded"} == {
        n for n in model.net.state_dict() if n.startswith("features.")
    }
    # the same shapes, but multi-label: the head starts anew
    assert {n for n, s in status.items() if s == "new"} == {
        n for n in model.net.state_dict() if n.startswith("classifier.")
    }
    assert not torch.equal(model.net.classifier[4].weight, saved["net.classifier.4.weight"])


def test_init_from_the_same_classes_loads_the_head_too(train_cfg, default_run):
    model = build(train_cfg())
    report = load_initial_weights(model, _checkpoint(default_run))
    assert report.count("new") == 0 and report.count("skipped") == 0
    assert report.count("loaded") == len(model.net.state_dict())


def test_init_from_a_plain_state_dict_with_other_prefixes(train_cfg, tmp_path):
    source = build(train_cfg())
    # as DistributedDataParallel saves it, and without our `net.` prefix
    state = {f"module.{k}": v for k, v in source.net.state_dict().items()}
    state["module.classifier.4.weight"] = torch.zeros(1000, 64)  # an ImageNet-sized head
    state["module.classifier.4.bias"] = torch.zeros(1000)
    torch.save({"model": state}, tmp_path / "weights.pth")
    model = build(train_cfg())
    report = load_initial_weights(model, tmp_path / "weights.pth")
    assert torch.equal(model.net.features[0].weight, source.net.features[0].weight)
    new = {row[0] for row in report.rows if row[2] == "new"}
    assert new == {"classifier.4.weight", "classifier.4.bias"}  # shapes differ: kept as built


def test_init_from_refuses_files_that_do_not_fit(train_cfg, tmp_path):
    model = build(train_cfg())
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="none of its 1 tensors matches the network SmallCNN"):
        load_initial_weights(model, tmp_path / "other.pt")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ConfigError, match="is not a readable checkpoint or state_dict"):
        load_initial_weights(model, tmp_path / "notes.txt")
    with pytest.raises(ConfigError, match="is not a file"):
        load_initial_weights(model, tmp_path / "absent.ckpt")


def test_init_from_in_a_run_saves_its_table_and_starts_at_epoch_zero(train_cfg, default_run):
    cfg = train_cfg(*SMALL_MULTILABEL, f"model.init_from={_checkpoint(default_run)}", *SHORT_EPOCH)
    train(cfg)
    with open(Path(cfg.paths.output_dir) / "init_from.csv") as file:
        rows = list(csv.DictReader(file))
    assert {r["status"] for r in rows} == {"loaded", "new"}
    assert [r["tensor"] for r in rows if r["status"] == "new"][0].startswith("classifier.")
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0  # a new run: its own epochs and a fresh optimizer
    assert last["hyper_parameters"]["init_from"] == str(_checkpoint(default_run))


def test_gradual_unfreezing_with_backbone_finetuning(train_cfg):
    cfg = train_cfg(
        "callbacks=[default,backbone_finetuning]",
        "callbacks.backbone_finetuning.unfreeze_backbone_at_epoch=1",
        "callbacks.backbone_finetuning.train_bn=false",
        *SHORT_EPOCH,
        "trainer.max_epochs=2",
    )
    model = build(cfg)
    first_conv = model.net.features[0].weight.detach().clone()
    seen: dict[int, bool] = {}

    class Watch(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen[trainer.current_epoch] = torch.equal(pl_module.net.features[0].weight, first_conv)

    trainer = fit(cfg, model, Watch())
    assert seen == {0: True, 1: False}  # frozen in epoch 0, trained once unfrozen
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2  # the head's, then the backbone's, added at epoch 1
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 0.1)


@pytest.mark.slow
def test_fine_tuning_from_digits_beats_scratch_on_a_multilabel_folder(tmp_path, default_run):
    """The issue's demonstration: init_from a digits run on the multi-label example folder."""
    from scripts.make_example_data import write_digits_multilabel

    folder = tmp_path / "digits_multilabel"
    write_digits_multilabel(folder)
    common = [
        *FAST,
        "data=image_folder",
        f"data.root={folder}",
        "data.labels_file=labels.csv",
        "data.classes_file=classes.txt",
        "model=cnn",  # the architecture of the digits run
        "trainer.max_epochs=3",
        "logger=csv",
    ]
    scores = {}
    for name, extra in (
        ("scratch", []),
        ("init_from", [f"model.init_from={_checkpoint(default_run)}"]),
    ):
        cfg = compose_config("train.yaml", tmp_path / name, [*common, *extra])
        scores[name] = train(cfg)["test/map"]
    print(f"multi-label example folder, test mAP after 3 epochs: {scores}")
    rows = list(csv.DictReader(open(tmp_path / "init_from" / "init_from.csv")))
    assert all(r["status"] == "loaded" for r in rows if r["tensor"].startswith("features."))
    assert all(r["status"] == "new" for r in rows if r["tensor"].startswith("classifier."))
    assert scores["init_from"] > scores["scratch"] + 0.02
