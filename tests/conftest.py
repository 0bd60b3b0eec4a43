"""Fixtures that compose the real configs with Hydra's compose API, writing into tmp_path, and
the trained runs several test modules read (trained once per session)."""

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

import src.cli.resolvers  # noqa: F401  (registers the resolvers the configs use)
from src import PROJECT_ROOT
from src.train import train

CONFIG_DIR = PROJECT_ROOT / "configs"

# Under pytest-xdist (pyproject's -n auto) the workers share the cores: each worker, and the runs
# its tests start, takes its share of torch's threads instead of all of them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = max(1, len(os.sched_getaffinity(0)) // _WORKERS)
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The override profiles tests run with; a module adds the few overrides of its own to one of
# them (e.g. [*LEAN, "trainer.max_epochs=3"]).
# Composed configs: no config printing, CPU only (whatever accelerator the machine has).
FAST = ["extras.print_config=false", "trainer.accelerator=cpu"]
# Commands whose output a test reads: no config tree, progress bar or model summary in the way.
# No accelerator, which would join a sweep's job names: add FAST where a run must be on the CPU.
QUIET = [
    "extras.print_config=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary",
    "trainer.enable_progress_bar=false",
]
# Short runs of a small network without figures: quicker steps, the same behaviour.
LEAN = [
    *FAST,
    *QUIET,
    "~callbacks.augmented_images",
    "~callbacks.test_figures",
    "model.net.channels=[8,8,16]",
    "model.net.hidden_dim=32",
    "data.batch_size=32",
]
# One epoch of two training batches, one validation and one test batch (unlike Lightning's
# fast_dev_run, it writes checkpoints); add it to a profile above.
ONE_EPOCH = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]
# Deterministic lean epochs of STEPS_PER_EPOCH steps: runs a test stops, resumes or compares
# epoch by epoch (max_epochs is the test's own).
STEPS_PER_EPOCH = 5
LEAN_SHORT = [
    *LEAN,
    "~callbacks.loss_chart",
    f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
]
# A smaller multi-label digits data set (canvases per split).
SMALL_MULTILABEL = [
    "data=digits_multilabel",
    "data.train_size=1500",
    "data.val_size=300",
    "data.test_size=300",
]


def compose_config(
    config_name: str, output_dir: Path, overrides: list[str] | None = None
) -> DictConfig:
    """Compose configs/<config_name> as `python src/<entry>.py` would, writing to output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name, overrides=overrides or [], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.paths.work_dir = os.getcwd()
        del cfg.hydra
    return cfg


def compose_with_hydra(*overrides: str) -> DictConfig:
    """train.yaml with its hydra node, as the sweepers and launchers receive it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train.yaml", overrides=list(overrides), return_hydra_config=True)


@pytest.fixture
def train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose train.yaml with overrides (plus FAST) into a fresh folder under tmp_path."""
    count = 0

    def make(*overrides: str, fast: bool = True) -> DictConfig:
        nonlocal count
        count += 1
        out = tmp_path / f"run{count}"
        return compose_config("train.yaml", out, (FAST if fast else []) + list(overrides))

    return make


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


@pytest.fixture(autouse=True)
def _process_stays_rank_zero():
    """A test that plays another rank (Lightning's set_global_rank sets the process-wide
    rank_zero_only.rank) must not leave it: later runs would then write no logs, no reports."""
    yield
    leaked = rank_zero_only.rank
    rank_zero_only.rank = 0
    assert leaked == 0, f"the test left rank_zero_only.rank = {leaked}; restore it"


def trained_once(tmp_path_factory, name: str, overrides: list[str]) -> tuple[Path, dict]:
    """Train train.yaml with overrides once for the whole test session: under pytest-xdist the
    workers share the session's base folder, and a lock makes a second worker wait for the first
    one's run and read it. The run's folder and returned metrics; tests only read the folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # .../pytest-N/, above each worker's popen-gwK/
    out, metrics = root / name, root / f"{name}.json"
    with FileLock(root / f"{name}.lock"):
        if not metrics.exists():
            result = train(compose_config("train.yaml", out, overrides))
            metrics.write_text(json.dumps({key: float(value) for key, value in result.items()}))
    return out, json.loads(metrics.read_text())


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """What `make train` does: the default config, with CSV beside TensorBoard. Its folder and
    returned metrics."""
    return trained_once(tmp_path_factory, "default_run", [*FAST, "logger=tensorboard_csv"])


@pytest.fixture(scope="session")
def multilabel_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """Three epochs of multi-label digits with pos_weight=auto: its folder and metrics."""
    overrides = [*FAST, *SMALL_MULTILABEL, "trainer.max_epochs=3", "model.pos_weight=auto"]
    return trained_once(tmp_path_factory, "multilabel_run", overrides)


def write_two_digit_folder(root: Path, counts: dict[str, tuple[int, int]]) -> Path:
    """root/<class>/<n>.png: for each class name, (digit, count) of the embedded digits as 16x16
    PNGs, a real two-class (binary) image folder."""
    from PIL import Image

    from src.data.digits import load_digit_images

    images, labels = load_digit_images(16)
    for name, (digit, count) in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in (labels == digit).nonzero().flatten()[:count].tolist():
            Image.fromarray(images[i].numpy().transpose(1, 2, 0)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def binary_folder(tmp_path_factory) -> Path:
    """150 images of the digit 1 in one/ and 50 of 0 in zero/: class 1 (zero, by sorted name,
    the positive class) is the minority, a quarter of the images."""
    root = tmp_path_factory.mktemp("binary") / "images"
    return write_two_digit_folder(root, {"one": (1, 150), "zero": (0, 50)})


def binary_overrides(root: Path) -> list[str]:
    """data=image_folder on a two-class folder as a binary task, read at 16x16 with no manifest."""
    return [
        "data=image_folder",
        f"data.root={root}",
        "data.task=binary",
        "data.manifest_dir=null",
        "data.num_workers=0",
        "data.image_size=16",
    ]


@pytest.fixture
def offline(monkeypatch):
    """Downloads fail as they do without internet, whether or not this machine has it."""
    import urllib.request
    from urllib.error import URLError

    import torch.hub

    def refuse(*args, **kwargs):
        raise URLError("network is unreachable (simulated by the test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)


# The modules that take longest, started first so that no worker is left with one of them at the
# end while the others idle: pytest-xdist (with pyproject's --no-loadscope-reorder) hands whole
# modules out in collection order, the first two to one worker each, the next two the same way.
LONGEST_FIRST = (
    "test_training.py",  # trains default_run, which test_finetuning waits for on the other worker
    "test_optuna_search.py",
    "test_sweeps.py",
    "test_finetuning.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the items of LONGEST_FIRST's modules to the front, in that order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
