"""A checkpoint from a stranger is data: eval, predict, resume and init_from build only what the
allow-list names (src/models/trusted_config.py), and a damaged one is refused in one line."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from src import PROJECT_ROOT
from src.core.errors import ConfigError
from src.models.trusted_config import refuse_untrusted
from src.train import train
from tests.conftest import FAST, LEAN, ONE_EPOCH, compose_config
from tests.helpers import error_lines, run_in_process

TINY_RUN = [*LEAN, *ONE_EPOCH]


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """The last.ckpt of one short training run of the default config."""
    out = tmp_path_factory.mktemp("trusted_run")
    train(compose_config("train.yaml", out, [*TINY_RUN, "logger=none", "test=false"]))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "one.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    return path


def craft(real: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the real checkpoint with `edit` applied to its dict, saved as crafted.ckpt."""
    checkpoint = copy.deepcopy(torch.load(real, map_location="cpu", weights_only=True))
    edit(checkpoint)
    path = folder / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path


def makedirs(folder: Path, partial: bool = False) -> dict[str, Any]:
    """A config that, built, would create `folder`."""
    return {
        "_target_": "os.makedirs",
        "name": str(folder),
        **({"_partial_": True} if partial else {}),
    }


def _data(c: dict[str, Any]) -> dict[str, Any]:
    return c["run_config"]["data"]


# (where the crafted `_target_` sits, the edit putting it there given the folder it would make,
# the key path and target the refusal names)
CRAFTED = {
    "data": (lambda c, d: c["run_config"].update(data=makedirs(d)), "data._target_=os.makedirs"),
    "a transform, nested": (
        lambda c, d: _data(c).update(
            eval_transforms=[
                {"_target_": "torchvision.transforms.v2.Compose", "transforms": [makedirs(d)]}
            ]
        ),
        "data.eval_transforms[0].transforms[0]._target_=os.makedirs",
    ),
    "torchvision Lambda": (
        lambda c, d: _data(c).update(
            eval_transforms=[
                {"_target_": "torchvision.transforms.v2.Lambda", "lambd": makedirs(d, True)}
            ]
        ),
        "data.eval_transforms[0]._target_=torchvision.transforms.v2.Lambda",
    ),
    "hydra get_method": (
        lambda c, d: c["run_config"].update(
            data={"_target_": "hydra.utils.get_method", "path": "os.makedirs"}
        ),
        "data._target_=hydra.utils.get_method with path=os.makedirs",
    ),
    "an interpolation": (
        lambda c, d: _data(c).update(mean="${oc.env:HOME}"),
        "data.mean='${oc.env:HOME}'",
    ),
    "net": (
        lambda c, d: c["hyper_parameters"].update(net=makedirs(d)),
        "hyper_parameters.net._target_=os.makedirs",
    ),
    "optimizer": (
        lambda c, d: c["hyper_parameters"]["optimizer"].update(lr=makedirs(d)),
        "hyper_parameters.optimizer.lr._target_=os.makedirs",
    ),
    "scheduler": (
        lambda c, d: c["hyper_parameters"].update(scheduler=makedirs(d)),
        "hyper_parameters.scheduler._target_=os.makedirs",
    ),
}
HYPER_PARAMETERS = ("net", "optimizer", "scheduler")


def command(entry: str, ckpt: Path, tmp_path: Path, image: Path) -> list[str]:
    logs = f"paths.log_dir={tmp_path / 'logs'}"
    if entry == "eval":
        return ["src/eval.py", f"ckpt_path={ckpt}", logs, *FAST]
    if entry == "predict":
        return ["src/predict.py", f"ckpt_path={ckpt}", f"input={image}", logs, *FAST]
    if entry == "resume":
        return ["src/train.py", f"ckpt_path={ckpt}", logs, *TINY_RUN]
    return ["src/train.py", f"model.init_from={ckpt}", logs, *TINY_RUN]


def assert_one_line(result, *expected: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = error_lines(result)
    for text in expected:
        assert text in line, line
    return line


# init_from reads only the file's hyper_parameters (and weights)
CASES = [
    (where, entry)
    for where in CRAFTED
    for entry in ("eval", "predict", "resume", "init_from")
    if entry != "init_from" or where in HYPER_PARAMETERS
]


@pytest.mark.parametrize(("where", "entry"), CASES)
def test_a_crafted_target_is_refused_in_one_line_and_never_runs(
    where, entry, real_checkpoint, image, tmp_path
):
    made = tmp_path / "made_by_the_checkpoint"
    edit, named = CRAFTED[where]
    ckpt = craft(real_checkpoint, tmp_path, lambda c: edit(c, made))
    result = run_in_process(*command(entry, ckpt, tmp_path, image))
    key = "model.init_from" if entry == "init_from" else "ckpt_path"
    assert_one_line(result, f"{key}={ckpt} names {named}", "refusing to build it")
    assert not made.exists()


DAMAGED = {
    "run_config without data": (lambda c: c["run_config"].pop("data"), "data is missing"),
    "data.mean a string": (lambda c: _data(c).update(mean="0.5"), "data.mean is not three"),
    "net not a mapping": (
        lambda c: c["hyper_parameters"].update(net="resnet"),
        "hyper_parameters.net is not a mapping",
    ),
    "an unknown setting": (
        lambda c: c["hyper_parameters"].update(dropout=0.5),
        "hyper_parameters.dropout is not a setting",
    ),
}


@pytest.mark.parametrize("entry", ["eval", "predict"])
@pytest.mark.parametrize("what", list(DAMAGED))
def test_a_damaged_run_config_is_one_line_naming_the_key(
    what, entry, real_checkpoint, image, tmp_path
):
    edit, named = DAMAGED[what]
    ckpt = craft(real_checkpoint, tmp_path, edit)
    result = run_in_process(*command(entry, ckpt, tmp_path, image))
    assert_one_line(result, f"ckpt_path={ckpt} is damaged or incomplete: {named}", "src/train.py")


def test_the_real_checkpoint_still_evaluates_and_predicts(real_checkpoint, image, tmp_path):
    evaluated = run_in_process(*command("eval", real_checkpoint, tmp_path, image))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    predicted = run_in_process(*command("predict", real_checkpoint, tmp_path, image))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (written,) = (tmp_path / "logs" / "predict" / "runs").glob("*/predictions.csv")
    assert len(written.read_text().splitlines()) == 2  # the header and the one image


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (PROJECT_ROOT / "configs" / group).glob("*.yaml"))


BUILT_IN = [
    *(f"model={m}" for m in options("model")),
    *(f"data={d}" for d in options("data")),
    *(f"augment={a}" for a in options("augment")),
    *(f"optimizer={o}" for o in options("optimizer")),
    *(f"scheduler={s}" for s in options("scheduler")),
]


@pytest.mark.parametrize("override", BUILT_IN)
def test_every_built_in_config_passes_the_allow_list(override, tmp_path):
    extra = ["data.root=anywhere"] if override == "data=image_folder" else []
    cfg = compose_config("train.yaml", tmp_path, [override, *extra])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for section in ("data", "model", "optimizer", "scheduler"):
        refuse_untrusted(resolved.get(section), "the built-in config", section)


def test_hydra_look_ups_by_name_pass_for_dtypes_and_allowed_classes_only():
    dtype = {"_target_": "hydra.utils.get_object", "path": "torch.float32"}
    sgd = {"_target_": "hydra.utils.get_class", "_args_": ["torch.optim.SGD"]}
    refuse_untrusted({"dtype": dtype, "optimizer": sgd}, "a file")
    with pytest.raises(ConfigError, match=r"_target_=hydra.utils.get_method with path=os.system"):
        refuse_untrusted(
            [{"_target_": "hydra.utils.get_method", "_args_": ["os.system"]}], "a file"
        )
