"""Every Lightning Trainer argument is a plain `trainer.NAME=value` override, kept in step with the
installed Lightning; a misspelt key or a value of the wrong type is one line, exit 2, no folder."""

import csv
from datetime import timedelta
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import pytest
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from omegaconf import OmegaConf

from scripts.sync_trainer_config import BEGIN, CONFIG, split, synced_text
from src.cli.trainer_args import PASSED_BY_CODE, accepts, trainer_arguments, type_name
from tests.helpers import error_lines, run_folders, run_in_process

REGENERATE = "run python scripts/sync_trainer_config.py to rewrite its generated block"


def config_keys(text: str) -> dict[str, object]:
    """The Trainer arguments a YAML text sets (no `_target_`, `_convert_`), with their values."""
    loaded = OmegaConf.to_container(OmegaConf.create(text)) if text.strip() else {}
    return {k: v for k, v in loaded.items() if not (k.startswith("_") and k.endswith("_"))}


def test_the_config_holds_every_trainer_argument_at_lightnings_default():
    text = CONFIG.read_text()
    hand_written, generated = split(text)
    keys = config_keys(text)
    expected = trainer_arguments()
    missing, unknown = sorted(set(expected) - set(keys)), sorted(set(keys) - set(expected))
    assert not missing and not unknown, (
        f"{CONFIG} and Lightning {pl.__version__}'s Trainer differ: missing {missing}, "
        f"not arguments {unknown}; {REGENERATE}"
    )
    wrong = {
        name: (value, expected[name].default)
        for name, value in config_keys(generated).items()
        if value != expected[name].default or type(value) is not type(expected[name].default)
    }
    assert not wrong, f"generated defaults differ from Lightning's (file, Lightning): {wrong}; " + (
        REGENERATE
    )
    assert generated and not set(config_keys(hand_written)) & set(config_keys(generated))
    assert not set(PASSED_BY_CODE) & set(keys)  # the entry points pass these


def test_the_sync_script_restores_a_dropped_argument_and_a_changed_default():
    text = CONFIG.read_text()
    head, block = split(text)
    stale = block.replace("\nmax_steps: -1\n", "\n").replace("barebones: false", "barebones: true")
    assert stale != block
    assert synced_text(head + stale) == text == synced_text(text)
    assert synced_text(head) == text  # a file without the block gets one
    assert text.count(BEGIN) == 1


@pytest.mark.parametrize(
    ("annotation", "value", "fits"),
    [
        (int | None, 3, True),
        (int | None, "abc", False),
        (int | None, None, True),
        (int, True, False),  # a bool is no int here
        (int | float | None, 4, True),  # an int where a float is allowed
        (int | float | None, 0.25, True),
        (int | float | None, "half", False),
        (bool | Literal["warn"] | None, "warn", True),
        (bool | Literal["warn"] | None, "always", False),
        (Literal[64, 32, 16] | Literal["bf16-mixed"] | None, 16, True),
        (Literal[64, 32, 16] | Literal["bf16-mixed"] | None, True, False),
        (str | timedelta | dict[str, int] | None, {"hours": 1}, True),
        (str | timedelta | dict[str, int] | None, {"hours": "one"}, False),
        (str | timedelta | None, {"_target_": "datetime.timedelta", "hours": 1}, True),
        (list[int] | str | int, [0, 1], True),
        (list[int] | str | int, [0, "a"], False),
    ],
)
def test_a_value_fits_the_type_the_signature_names(annotation, value, fits):
    assert accepts(annotation, value) is fits


def test_plugins_take_target_nodes():
    plugins = trainer_arguments()["plugins"].annotation  # src/train.py adds atomic saving
    environment = {"_target_": "lightning.pytorch.plugins.environments.SLURMEnvironment"}
    assert accepts(plugins, None) and accepts(plugins, environment)
    assert accepts(plugins, [environment]) and not accepts(plugins, "slurm")


def test_types_read_as_config_values():
    arguments = trainer_arguments()
    assert type_name(arguments["max_epochs"].annotation) == "int or null"
    assert type_name(arguments["deterministic"].annotation) == "bool, 'warn' or null"
    assert type_name(arguments["limit_train_batches"].annotation) == "int, float or null"
    assert type_name(arguments["max_time"].annotation) == (
        "str, timedelta, dict of str to int or null (a class as a _target_ node)"
    )


def test_plain_overrides_reach_the_trainer(train_cfg):
    cfg = train_cfg(
        "trainer.limit_train_batches=4",
        "trainer.gradient_clip_algorithm=value",
        "trainer.max_time={minutes:5}",
        "trainer.num_sanity_val_steps=0",
    )
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.limit_train_batches == 4
    assert trainer.gradient_clip_algorithm == "value"
    assert trainer.num_sanity_val_steps == 0
    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
    assert [t._duration for t in timers] == [300.0]  # a dict, as Lightning takes it
    fast = instantiate(train_cfg("trainer.fast_dev_run=true").trainer, logger=False)
    assert fast.fast_dev_run is True and fast.limit_train_batches == 1


def test_a_fast_dev_run_override_runs_one_batch(tmp_path):
    result = run_in_process(
        "src/train.py",
        f"paths.log_dir={tmp_path}",
        "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "extras.print_config=false",
        "~callbacks.rich_progress_bar",
        "~callbacks.rich_model_summary",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = run_folders(tmp_path)
    with open(run / "per_class.csv") as file:
        tested = sum(int(row["support"]) for row in csv.DictReader(file))
    assert tested == 16  # one test batch, not the whole split
    assert not (run / "checkpoints").exists()  # fast_dev_run saves none


def assert_refused(result, *expected: str, log_dir: Path, task: str) -> None:
    """Exit 2, one `error:` line holding every expected text, no traceback, no run folder."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert all(text in line for text in expected), line
    assert run_folders(log_dir, task) == [] and not (log_dir / task).exists()


# (arguments, what the one line says)
MISSPELT_OR_MISTYPED = [
    (
        ["trainer.max_epoch=3"],
        ["trainer.max_epoch is not an argument", "did you mean trainer.max_epochs (int or null)?"],
    ),
    (
        ["trainer.max_epochs=abc"],
        ["trainer.max_epochs=abc", "Trainer takes for max_epochs: it takes int or null"],
    ),
]


@pytest.mark.parametrize(("args", "expected"), MISSPELT_OR_MISTYPED, ids=lambda v: str(v[0]))
def test_train_refuses_a_misspelt_or_mistyped_trainer_key(tmp_path, args, expected):
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}", *args)
    assert_refused(result, *expected, log_dir=tmp_path, task="train")


@pytest.mark.parametrize("script", ["src/eval.py", "src/predict.py"])
@pytest.mark.parametrize(("args", "expected"), MISSPELT_OR_MISTYPED, ids=lambda v: str(v[0]))
def test_eval_and_predict_refuse_them_the_same_way(tmp_path, script, args, expected):
    result = run_in_process(script, f"paths.log_dir={tmp_path}", *args)
    task = Path(script).stem
    assert_refused(result, *expected, log_dir=tmp_path, task=task)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["data.batch_szie=3"],
            "data.batch_szie is not a key of data: did you mean data.batch_size?",
        ),
        (["model.net.hiden_dim=8"], "did you mean model.net.hidden_dim?"),
        (["optimizer.weight_decy=0.1"], "did you mean optimizer.weight_decay?"),
        (
            ["max_epochs=3"],
            "max_epochs is not a key of the config: did you mean trainer.max_epochs?",
        ),
        (["+trainer.limit_train_batch=2"], "did you mean trainer.limit_train_batches (int, float"),
        (["trainer.precision=17"], "trainer.precision=17 is not a value"),
        (["trainer.accumulate_grad_batches=0.5"], "it takes int"),
        (["trainer.logger=false"], "trainer.logger is not a config key: the logger group sets it"),
        (["trainer.callbacks=[]"], "trainer.callbacks is not a config key: the callbacks group"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_misspelt_keys_of_any_group_name_the_closest_one(tmp_path, args, expected):
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}", *args)
    assert_refused(result, expected, log_dir=tmp_path, task="train")
