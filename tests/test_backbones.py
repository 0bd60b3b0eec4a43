"""Any torchvision or timm network by name: a head of num_classes outputs wherever the family keeps
it, weights by name or offline in one line, and a short run on digits whose checkpoint evaluates
and predicts."""

import csv
import logging
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from torch import nn
from torchvision.models import WeightsEnum, get_model, get_model_weights

from scripts.make_example_data import save_png
from src.core.errors import ConfigError
from src.data.digits import load_digit_images
from src.eval import evaluate
from src.models.nets.timm_net import TimmNet
from src.models.nets.torchvision_net import TorchvisionNet, classification_models
from src.predict import predict
from src.train import train
from tests.conftest import FAST, ONE_EPOCH, compose_config

# A family, its overrides and where its head lives: quick ones, and heavier ones marked slow.
QUICK_FAMILIES = [
    ("resnet18", ["model.net.small_input_stem=true"], "model.fc"),
    ("efficientnet_b0", [], "model.classifier.1"),
    ("mobilenet_v3_small", [], "model.classifier.3"),
    ("squeezenet1_1", [], "model.classifier.1"),  # a 1x1 convolution, not a Linear
    ("shufflenet_v2_x0_5", [], "model.fc"),
]
HEAVY_FAMILIES = [
    ("convnext_tiny", [], "model.classifier.2"),
    ("vit_b_16", ["+model.net.image_size=32"], "model.heads.head"),  # 2x2 patches of 16 pixels
    ("swin_t", [], "model.head"),
    ("densenet121", [], "model.classifier"),
]
SLOW = pytest.mark.slow
FAMILIES = [*QUICK_FAMILIES, *(pytest.param(*f, marks=SLOW) for f in HEAVY_FAMILIES)]
# A run and its evaluation and prediction take ~10 s of CPU time: one family in the fast suite.
TRAINED_FAMILIES = [
    pytest.param(*f, marks=() if f[0] == "squeezenet1_1" else SLOW)
    for f in QUICK_FAMILIES + HEAVY_FAMILIES
]

# One epoch of two training batches and one validation and test batch, which, unlike Lightning's
# fast_dev_run, writes checkpoints.
SHORT_RUN = [*ONE_EPOCH, "data.batch_size=8", "logger=csv"]


def kwargs_of(overrides: list[str]) -> dict[str, object]:
    """The net's constructor arguments in a family's overrides."""
    pairs = (o.removeprefix("+model.net.").removeprefix("model.net.").split("=") for o in overrides)
    return {k: {"true": True}.get(v, int(v) if v.isdigit() else v) for k, v in pairs}


def head_of(net: nn.Module) -> nn.Module:
    (prefix,) = net.head_prefixes
    return net.get_submodule(prefix)


def outputs(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


@pytest.mark.parametrize(("name", "overrides", "head"), FAMILIES)
def test_each_family_gets_a_head_of_num_classes_named_in_head_prefixes(name, overrides, head):
    net = TorchvisionNet(name, num_classes=7, **kwargs_of(overrides))
    assert net.num_classes == 7 and net.head_prefixes == (head,)
    assert outputs(net.get_submodule(head)) == 7
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert all(n.startswith("model.") for n, _ in net.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", classification_models())
def test_every_torchvision_classification_model_finds_its_head(name):
    try:  # without memory or initialisation where the family allows it (regnets do not)
        with torch.device("meta"):
            net = TorchvisionNet(name, num_classes=7)
        x = torch.empty(2, 3, 224, 224, device="meta")
    except NotImplementedError:
        net, x = TorchvisionNet(name, num_classes=7), torch.randn(2, 3, 64, 64)
    assert outputs(head_of(net)) == 7
    assert net.eval()(x).shape == (2, 7)  # the head found is the layer that gives the logits


def test_pretrained_weights_keep_the_backbone_and_replace_the_head(monkeypatch):
    pretrained = get_model("efficientnet_b0").state_dict()  # stands in for the ImageNet weights
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **_: pretrained)
    net = TorchvisionNet("efficientnet_b0", num_classes=5, weights="DEFAULT")
    assert torch.equal(net.model.features[0][0].weight, pretrained["features.0.0.weight"])
    assert torch.equal(net.model.features[7][0].block[1][0].weight, pretrained[
        "features.7.0.block.1.0.weight"
    ])  # fmt: skip
    assert outputs(head_of(net)) == 5 and net.head_prefixes == ("model.classifier.1",)


def test_pretrained_weights_keep_their_stem_unless_the_small_stem_is_asked_for(monkeypatch, caplog):
    pretrained = get_model("resnet18").state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, **_: pretrained)
    kept = TorchvisionNet("resnet18", num_classes=5, weights="IMAGENET1K_V1")
    assert torch.equal(kept.model.conv1.weight, pretrained["conv1.weight"])
    assert isinstance(kept.model.maxpool, nn.MaxPool2d)
    with caplog.at_level(logging.WARNING):
        small = TorchvisionNet("resnet18", num_classes=5, weights="DEFAULT", small_input_stem=True)
    assert small.model.conv1.kernel_size == (3, 3) and small.model.conv1.stride == (1, 1)
    assert isinstance(small.model.maxpool, nn.Identity)
    assert torch.equal(small.model.layer1[0].conv1.weight, pretrained["layer1.0.conv1.weight"])
    assert "replaces the pretrained first conv of resnet18" in caplog.text


def test_weights_offline_give_one_line_naming_the_file_and_its_folder(
    monkeypatch, tmp_path, offline
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: it must download
    with pytest.raises(ConfigError) as error:
        TorchvisionNet("mobilenet_v3_small", num_classes=10, weights="DEFAULT")
    message = str(error.value)
    assert "could not download the mobilenet_v3_small weights IMAGENET1K_V1" in message
    assert "network is unreachable" in message
    url = get_model_weights("mobilenet_v3_small").DEFAULT.url
    assert f"place {url.rsplit('/', 1)[-1]} (from {url})" in message
    assert f"in {tmp_path}/hub/checkpoints/" in message
    assert "model.net.weights=null" in message and "\n" not in message


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: TorchvisionNet("resnet17", 3),
            "model.net.name='resnet17' is not a torchvision classification model: use one of "
            "resnet18,",
        ),
        (
            lambda: TorchvisionNet("resnet50", 3, weights="imagenet"),
            "is not a weight set of resnet50: use one of IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT "
            "or null",
        ),
        (
            lambda: TorchvisionNet("efficientnet_b0", 3, small_input_stem=True),
            "needs a ResNet-like stem (conv1 + maxpool), which efficientnet_b0 has not",
        ),
        (
            lambda: TorchvisionNet("vit_b_16", 3, patch=8),
            "torchvision's vit_b_16 refused its arguments",
        ),
        (lambda: TimmNet("resnet_18", 3), "is not a timm model: use one of resnet18"),
        (
            lambda: TimmNet("resnet18", 3, weights="imagenet"),
            "is not a timm weight set of resnet18: use DEFAULT, one of a1_in1k, a2_in1k",
        ),
        (lambda: TimmNet("test_resnet", 3, weights="missing/model.pth"), "no such file"),
    ],
)
def test_bad_names_and_weights_give_one_line(build, expected):
    with pytest.raises(ConfigError) as error:
        build()
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_full_weight_enum_names_are_accepted_too(monkeypatch):
    monkeypatch.setattr(
        WeightsEnum, "get_state_dict", lambda self, **_: get_model("resnet18").state_dict()
    )
    net = TorchvisionNet("resnet18", 4, weights="ResNet18_Weights.IMAGENET1K_V1")
    assert outputs(head_of(net)) == 4


def test_timm_models_get_a_head_of_num_classes_named_in_head_prefixes():
    net = TimmNet("resnet18", num_classes=7, small_input_stem=True)
    assert net.head_prefixes == ("model.fc",) and net.model.fc.out_features == 7
    assert net.model.conv1.stride == (1, 1) and isinstance(net.model.maxpool, nn.Identity)
    vit = TimmNet("test_vit", num_classes=3, img_size=32)
    assert vit.head_prefixes == ("model.head",) and vit(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_timm_weights_offline_give_one_line_and_a_local_file_loads(monkeypatch, tmp_path):
    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub (simulated). Check your connection.")

    monkeypatch.setattr("timm.models._hub.hf_hub_download", unreachable)
    with pytest.raises(ConfigError) as error:
        TimmNet("test_resnet", num_classes=3, weights="DEFAULT")
    message = str(error.value)
    assert "could not download timm's test_resnet.r160_in1k weights (not in the cache" in message
    assert "model.safetensors from https://huggingface.co/timm/test_resnet.r160_in1k" in message
    assert "model.net.weights=/path/to/model.safetensors" in message and "\n" not in message

    from safetensors.torch import save_file

    pretrained = TimmNet("test_resnet", num_classes=1000).model.state_dict()  # the file's weights
    save_file(pretrained, tmp_path / "model.safetensors")
    net = TimmNet("test_resnet", num_classes=3, weights=str(tmp_path / "model.safetensors"))
    assert torch.equal(net.model.conv1[0].weight, pretrained["conv1.0.weight"])
    assert torch.equal(net.model.layer4[0].conv2.weight, pretrained["layer4.0.conv2.weight"])
    assert net.model.fc.out_features == 3
    with pytest.raises(
        ConfigError, match="does not fit timm's test_convnext .* pass a weight file"
    ):
        TimmNet("test_convnext", num_classes=3, weights=str(tmp_path / "model.safetensors"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Four digit images in a folder, to predict."""
    folder = tmp_path_factory.mktemp("images")
    pixels, _ = load_digit_images(32)
    for i in range(4):
        save_png(pixels[i].numpy(), folder / f"{i}.png")
    return folder


def train_evaluate_predict(tmp_path: Path, images: Path, overrides: list[str]) -> None:
    """Train briefly, then evaluate and predict with the best checkpoint, checking each."""
    cfg = compose_config("train.yaml", tmp_path / "train", [*FAST, *SHORT_RUN, *overrides])
    metrics = train(cfg)
    best = tmp_path / "train" / "checkpoints" / "best.ckpt"
    assert best.is_file()
    eval_overrides = [*FAST, f"ckpt_path={best}", "trainer.limit_test_batches=1", "logger=csv"]
    evaluated = evaluate(compose_config("eval.yaml", tmp_path / "eval", eval_overrides))
    assert evaluated["test/acc"] == metrics["test/acc"]  # the same network and weights
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)
    written = predict(
        compose_config(
            "predict.yaml", tmp_path / "predict", [*FAST, f"ckpt_path={best}", f"input={images}"]
        )
    )
    rows = list(csv.DictReader(open(written)))
    assert sorted(Path(r["path"]).name for r in rows) == ["0.png", "1.png", "2.png", "3.png"]
    assert all(r["class_1"] in [str(d) for d in range(10)] for r in rows)
    assert all(1 >= float(r["prob_1"]) >= float(r["prob_2"]) >= 0 for r in rows)


@pytest.mark.parametrize(("name", "overrides", "head"), TRAINED_FAMILIES)
def test_a_torchvision_family_trains_on_digits_and_its_checkpoint_evaluates_and_predicts(
    tmp_path, images, name, overrides, head
):
    train_evaluate_predict(
        tmp_path, images, ["model=torchvision", f"model.net.name={name}", *overrides]
    )


@pytest.mark.parametrize("name", ["test_resnet", pytest.param("resnet18", marks=SLOW)])
def test_a_timm_model_trains_on_digits_and_its_checkpoint_evaluates_and_predicts(
    tmp_path, images, name
):
    train_evaluate_predict(tmp_path, images, ["model=timm", f"model.net.name={name}"])


def test_model_resnet50_is_the_torchvision_net(tmp_path):
    cfg = compose_config("train.yaml", tmp_path, [*FAST, "model=resnet50"])
    assert cfg.model.net._target_ == "src.models.nets.torchvision_net.TorchvisionNet"
    assert cfg.model.net.name == "resnet50" and cfg.model.net.small_input_stem is False
    assert "freeze_backbone" not in cfg.model.net
    recipe = compose_config("train.yaml", tmp_path, [*FAST, "experiment=cifar10_resnet50"])
    assert recipe.model.net.small_input_stem is True
