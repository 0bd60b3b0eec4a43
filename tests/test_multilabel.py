"""Multi-label classification end to end on the embedded multi-label digits."""

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from src.core.errors import ConfigError
from src.core.metrics import metric_mode
from src.data.digits import load_digit_images
from src.data.splits import stratified_split
from src.eval import evaluate
from src.train import train
from tests.conftest import FAST, compose_config
from tests.conftest import SMALL_MULTILABEL as SMALL
from tests.helpers import tensorboard_events, tensorboard_scalars


def test_canvases_are_seeded_and_never_reuse_a_training_digit(train_cfg):
    first = instantiate(train_cfg(*SMALL).data).canvases()
    again = instantiate(train_cfg(*SMALL).data).canvases()
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    (train_images, train_targets), (val_images, _), (test_images, _) = first
    assert train_images.shape == (1500, 3, 32, 32) and train_targets.shape == (1500, 10)
    empty = (train_targets.sum(dim=1) == 0).float().mean()
    assert 0 < empty < 0.06  # allowed but rare

    digits, labels = load_digit_images(16)
    train_pool = stratified_split(labels.numpy(), (0.15, 0.15), 42)[0]
    seen = {digits[i, 0].numpy().tobytes() for i in train_pool}
    for images in (val_images, test_images):
        cells = images[:, 0].unfold(1, 16, 16).unfold(2, 16, 16).reshape(-1, 16, 16)
        for cell in cells[cells.flatten(1).amax(1) > 0]:
            assert cell.numpy().tobytes() not in seen


def test_targets_match_the_digits_drawn(train_cfg):
    (images, targets), _, _ = instantiate(train_cfg(*SMALL).data).canvases()
    cells = images[:, 0].unfold(1, 16, 16).unfold(2, 16, 16).reshape(len(images), 4, -1)
    occupied = (cells.amax(dim=2) > 0).sum(dim=1)
    assert torch.all(targets.sum(dim=1) <= occupied)  # two cells may hold the same digit
    assert torch.all((targets.sum(dim=1) == 0) == (occupied == 0))


def test_training_logs_the_multilabel_metrics(multilabel_run):
    out, metrics = multilabel_run
    # chance: scores that know nothing rank each label's positives at its prevalence
    cfg = compose_config("train.yaml", out / "chance", [*FAST, *SMALL])
    test_targets = instantiate(cfg.data).canvases()[2][1].float()
    chance = test_targets.mean(dim=0).mean().item()
    assert metrics["test/map"] > chance + 0.5, (metrics["test/map"], chance)
    for name in ["f1", "f1_micro", "hamming", "exact_match"]:
        assert f"test/{name}" in metrics and f"val/{name}" in metrics
    for digit in range(10):
        assert f"test/per_class/f1/{digit}" in metrics and f"test/per_class/ap/{digit}" in metrics
    scalars = tensorboard_scalars(out)
    assert len(scalars["val/map"]) == 3
    highest = [max(scalars["val/map"][: i + 1]) for i in range(3)]
    assert scalars["val/map_best"] == pytest.approx(highest)
    assert tensorboard_events(out).Images("test/per_class_ap")  # the AP bars of each label


def test_hamming_distance_is_a_distance_its_best_is_the_lowest(multilabel_run):
    out, _ = multilabel_run
    scalars = tensorboard_scalars(out)
    assert metric_mode("val/hamming") == "min" and metric_mode("val/exact_match") == "max"
    lowest = [min(scalars["val/hamming"][: i + 1]) for i in range(3)]
    assert scalars["val/hamming_best"] == pytest.approx(lowest)
    highest = [max(scalars["val/exact_match"][: i + 1]) for i in range(3)]
    assert scalars["val/exact_match_best"] == pytest.approx(highest)


def test_best_checkpoint_follows_val_map_and_keeps_the_auto_pos_weight(multilabel_run):
    out, metrics = multilabel_run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["run_config"]["monitor"] == "val/map"
    assert checkpoint["run_config"]["optimized_metric"] == "val/map_best"
    callback = next(
        v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")
    )
    assert callback["best_model_score"] == pytest.approx(metrics["val/map_best"])

    targets = instantiate(compose_config("train.yaml", out / "x", SMALL).data).train_targets()
    expected = (len(targets) - targets.sum(0)) / targets.sum(0)
    assert torch.allclose(checkpoint["state_dict"]["criterion.pos_weight"], expected)
    assert checkpoint["hyper_parameters"]["pos_weight"] == "auto"


def test_eval_reproduces_multilabel_test_metrics(multilabel_run, tmp_path):
    out, metrics = multilabel_run
    ckpt = out / "checkpoints" / "best.ckpt"
    cfg = compose_config("eval.yaml", tmp_path, [f"ckpt_path={ckpt}", "extras.print_config=false"])
    evaluated = evaluate(cfg)
    for name in ["test/map", "test/f1", "test/exact_match", "test/per_class/ap/7"]:
        assert evaluated[name] == pytest.approx(metrics[name], abs=1e-6), name


def test_multi_hot_targets_with_crossentropy_are_refused(train_cfg):
    cfg = train_cfg()
    model = instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )
    batch = (torch.zeros(2, 3, 32, 32), torch.zeros(2, 10))
    with pytest.raises(ConfigError, match="set data.task=multilabel"):
        model.training_step(batch, 0)


def test_multi_hot_targets_after_the_first_batch_are_refused_before_a_checkpoint(
    train_cfg, tmp_path
):
    """A custom data set whose first training batch holds one label an image (rows that sum to 1,
    like mixed targets) and whose later ones hold two, validated on class indices (which the
    validation step takes): refused before validation, no checkpoint written."""
    cfg = train_cfg()
    model = instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )
    targets = torch.zeros(12, 10)
    targets[:, 0] = 1.0
    targets[4:, 1] = 1.0  # batches of 4: the first one-hot, the next two multi-hot
    data = TensorDataset(torch.randn(12, 3, 32, 32), targets)
    loader = DataLoader(data, batch_size=4)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)],
    )
    seen: list[int] = []
    model.on_train_batch_end = lambda outputs, batch, batch_idx: seen.append(batch_idx)
    val = TensorDataset(data.tensors[0][:4], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="set data.task=multilabel"):
        trainer.fit(model, loader, val_dataloaders=DataLoader(val, batch_size=4))
    assert seen == [0, 1, 2]  # trained on, then refused before validation
    assert not list(tmp_path.rglob("*.ckpt"))


def test_multilabel_data_with_a_multiclass_task_is_refused(train_cfg):
    with pytest.raises(Exception, match="data.task='multiclass' does not fit"):
        instantiate(train_cfg(*SMALL, "data.task=multiclass").data)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.pos_weight=[1,2]", "model.pos_weight needs 10 non-negative numbers"),
        ("model.threshold=1.5", "model.threshold must lie in (0, 1)"),
        (
            "model.class_weights=[1,1,1,1,1,1,1,1,1,1]",
            "model.class_weights and model.label_smoothing apply to multi-class",
        ),
    ],
)
def test_multilabel_settings_are_checked(train_cfg, override, message):
    cfg = train_cfg(*SMALL, override)
    with pytest.raises(Exception) as error:
        instantiate(cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False)
    assert message in str(error.value)


@pytest.mark.slow
def test_default_cnn_reaches_097_val_map_on_digits_multilabel(train_cfg):
    metrics = train(train_cfg("data=digits_multilabel"))
    assert metrics["val/map_best"] >= 0.97


@pytest.mark.slow
def test_resnet50_runs_an_epoch_of_digits_multilabel_and_evaluates_the_same(train_cfg, tmp_path):
    cfg = train_cfg(*SMALL, "model=resnet50", "trainer.max_epochs=1")
    metrics = train(cfg)
    best = f"ckpt_path={cfg.paths.output_dir}/checkpoints/best.ckpt"
    evaluated = evaluate(compose_config("eval.yaml", tmp_path / "eval", [best]))
    for name in ["test/map", "test/f1", "test/hamming"]:
        assert evaluated[name] == pytest.approx(metrics[name], abs=1e-5), name
