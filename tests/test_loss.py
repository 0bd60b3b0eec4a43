"""The loss of each task on its own: CrossEntropy with class weights, label smoothing and the soft
targets of MixUp/CutMix (in float32 under mixed precision), BCEWithLogits with weights of
positives, weights found from the data, and multi-hot targets refused for a multi-class model."""

import pytest
import torch
import torch.nn.functional as F

from src.core.errors import ConfigError
from src.models.loss import ClassificationLoss

WEIGHTS = [1, 2, 1, 1, 1, 1, 1, 1, 1, 3.0]


def test_soft_targets_take_class_weights_and_label_smoothing():
    loss = ClassificationLoss("multiclass", 10, class_weights=WEIGHTS, label_smoothing=0.1)
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    soft = torch.rand(8, 10, generator=torch.Generator().manual_seed(1)).softmax(dim=1)
    weight, smoothed = torch.tensor(WEIGHTS), soft * 0.9 + 0.1 / 10
    # averaged by the targets' summed class weight, as PyTorch averages class-index targets
    expected = -(weight * smoothed * logits.log_softmax(dim=1)).sum() / (soft @ weight).sum()
    assert torch.allclose(loss(logits, soft, mixed=True), expected, atol=1e-5)


@pytest.mark.parametrize("weights", [WEIGHTS, [5.0] * 10, None])
def test_one_hot_float_targets_give_the_loss_of_their_class_indices(weights):
    """When mixing switches off (mixup_off_epoch) or draws an unmixed batch, the loss keeps its
    scale: with class weights, PyTorch's mean over probability targets divides by the batch size,
    its mean over class indices by their summed weight."""
    loss = ClassificationLoss("multiclass", 10, class_weights=weights, label_smoothing=0.1)
    logits, labels = torch.randn(8, 10), torch.tensor([0, 1, 9, 9, 2, 1, 9, 0])
    soft = loss(logits, F.one_hot(labels, 10).float(), mixed=True)
    assert torch.allclose(soft, loss(logits, labels), atol=1e-6)
    expected = F.cross_entropy(
        logits,
        labels,
        weight=None if weights is None else torch.tensor(weights),
        label_smoothing=0.1,
    )
    assert torch.allclose(loss(logits, labels), expected)


def test_the_soft_target_loss_stays_float32_under_bf16_autocast():
    """MixUp/CutMix targets and their class-weight normaliser are not rounded to bf16 under
    mixed precision (bf16 rounds by ~4e-3): the loss equals the float32 one of the same logits."""
    loss = ClassificationLoss("multiclass", 10, class_weights=WEIGHTS, label_smoothing=0.1)
    layer = torch.nn.Linear(16, 10)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    soft = torch.rand(8, 10, generator=torch.Generator().manual_seed(1)).softmax(dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        value = loss(logits, soft, mixed=True)
    assert logits.dtype == torch.bfloat16  # the network did run in bf16
    smoothed = soft * 0.9 + 0.1 / 10
    log_p = logits.float().log_softmax(dim=1)
    weight = torch.tensor(WEIGHTS)
    expected = -(weight * smoothed * log_p).sum() / (soft @ weight).sum()
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_multilabel_takes_bce_with_the_weights_of_positives():
    loss = ClassificationLoss("multilabel", 3, pos_weight=[1.0, 2.0, 4.0])
    logits, targets = torch.randn(5, 3), torch.randint(0, 2, (5, 3))
    expected = F.binary_cross_entropy_with_logits(
        logits, targets.float(), pos_weight=torch.tensor([1.0, 2.0, 4.0])
    )
    assert torch.allclose(loss(logits, targets, mixed=True), expected)
    assert torch.allclose(loss(logits, targets), expected)


def test_auto_weights_are_found_from_the_training_targets_and_kept_in_the_state():
    multiclass = ClassificationLoss("multiclass", 3, class_weights="auto")
    assert torch.equal(multiclass.weight, torch.ones(3))  # until fitted
    multiclass.fit_to(torch.tensor([0, 0, 0, 1, 1, 2]))
    assert multiclass.weight.tolist() == pytest.approx([6 / 11, 9 / 11, 18 / 11])
    multilabel = ClassificationLoss("multilabel", 2, pos_weight="auto")
    multilabel.fit_to(torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]]))
    assert multilabel.pos_weight.tolist() == pytest.approx([1 / 3, 3.0])  # negatives / positives
    assert set(multilabel.state_dict()) == {"pos_weight"}  # no class weights: no key
    assert set(multiclass.state_dict()) == {"weight", "pos_weight"}
    fixed = ClassificationLoss("multilabel", 2, pos_weight=[2.0, 2.0])
    fixed.fit_to(torch.tensor([[1, 0], [0, 1]]))
    assert fixed.pos_weight.tolist() == [2.0, 2.0]  # only "auto" follows the data


def test_multi_hot_targets_are_refused_by_a_multiclass_loss():
    loss = ClassificationLoss("multiclass", 4)
    logits = torch.randn(2, 4)
    with pytest.raises(ConfigError, match="set data.task=multilabel"):
        loss(logits, torch.tensor([[1, 1, 0, 0], [0, 1, 0, 0]]), mixed=True)  # integers
    with pytest.raises(ConfigError, match="set data.task=multilabel"):
        loss(logits, torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]]))  # unmixed: indices only


def test_multi_hot_rows_are_counted_and_refused_when_asked():
    loss = ClassificationLoss("multiclass", 4)
    logits = torch.randn(2, 4)
    loss(logits, torch.tensor([[0.5, 0.5, 0, 0], [0, 1.0, 0, 0]]), mixed=True)  # probabilities
    loss.refuse_multi_hot()  # nothing counted: nothing refused
    loss(logits, torch.tensor([[1.0, 1.0, 0, 0], [0, 1.0, 0, 0]]), mixed=True)  # one multi-hot
    loss(logits, torch.tensor([[0.5, 0.5, 0, 0], [0, 1.0, 0, 0]]), mixed=True)
    with pytest.raises(ConfigError, match="set data.task=multilabel"):
        loss.refuse_multi_hot()
    loss.refuse_multi_hot()  # the count starts anew
