"""The README and docs/ cannot drift from the configs: every `python src/train.py`, `src/eval.py`
and `src/predict.py` command they show (in code blocks and inline code, also after `torchrun`,
`srun`, `sbatch scripts/slurm/train.sbatch` and `make train ARGS=...`) composes with Hydra's
compose API as the entry point would compose it, and passes the checks every entry point makes
before any work; and every link between the pages leads somewhere."""

import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import src.cli.resolvers  # noqa: F401  (registers the resolvers the configs use)
from src import PROJECT_ROOT
from src.cli.trainer_args import check_trainer_config
from src.data.augmentation import parse_augmentation
from src.eval import allow_data_overrides

CONFIG_DIR = PROJECT_ROOT / "configs"
DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
CONFIG_NAMES = {"train": "train.yaml", "eval": "eval.yaml", "predict": "predict.yaml"}

# The commands as written: `python src/train.py ...`, `srun python src/train.py ...`,
# `torchrun --nnodes=2 ... src/train.py ...`, the SLURM script (it runs src/train.py with the
# arguments given and `resume=auto`) and the Makefile's train target (ARGS go to src/train.py).
ENTRY_POINT = re.compile(r"(?:\bpython\s+|\btorchrun\s(?:[^`]*?\s)?)src/(train|eval|predict)\.py\b")
SBATCH = re.compile(r"\bsbatch\s+scripts/slurm/train\.sbatch\b")
MAKE_TRAIN = re.compile(r"\bmake train ARGS=\"([^\"]*)\"")
# What a reader fills in, and what stands in for it here: composition checks keys, options and
# values, not that a checkpoint or a folder exists.
PLACEHOLDER = re.compile(r"<[^<>`]*>")  # <run>, <timestamp>, <its best.ckpt>
STAND_IN = "PLACEHOLDER"
ELISIONS = ("...", "…")  # a lone `...`: "the rest of the command, as above"
# Commands the docs show failing, and the part of the error composition gives them.
EXPECTED_FAILURES = {("train", "model=resnet5"): "Could not find 'model/resnet5'"}


@dataclass(frozen=True)
class Command:
    """One command of the docs, reduced to what its entry point composes."""

    entry: str  # train, eval or predict
    overrides: tuple[str, ...]
    multirun: bool

    @property
    def text(self) -> str:
        flags = ["-m"] if self.multirun else []
        return " ".join([f"src/{self.entry}.py", *flags, *self.overrides])


def code_lines(text: str) -> list[tuple[int, str]]:
    """Where a command may be written: each line of the fenced code blocks (continuation lines
    joined) and each inline code span (joined across line breaks), with its line number."""
    found, offset = [], 0
    parts = re.split(r"(^```[^\n]*\n.*?^```)", text, flags=re.M | re.S)
    for part in parts:
        start = text.count("\n", 0, offset) + 1
        if part.startswith("```"):
            body = re.sub(r"\\\n\s*", " ", part)  # `\` at a line's end continues the command
            found += [(start + i, line) for i, line in enumerate(body.splitlines()[1:-1], 1)]
        else:
            for span in re.finditer(r"`([^`]+)`", part):
                line = start + part.count("\n", 0, span.start())
                found.append((line, span.group(1).replace("\n", " ")))
        offset += len(part)
    return found


def overrides_of(arguments: str) -> tuple[list[str], bool]:
    """The overrides and whether it is a multirun, from the arguments after the script."""
    arguments = re.sub(r"(^|\s)#.*$", "", arguments)  # a comment after the command
    arguments = PLACEHOLDER.sub(STAND_IN, arguments)
    overrides, multirun = [], False
    tokens = iter(shlex.split(arguments))
    for token in tokens:
        if token in ("-m", "--multirun"):
            multirun = True
        elif token in ("--cfg", "-c"):
            next(tokens)  # job, hydra or all: print the config, run nothing
        elif token in ("--help", "-h", "--hydra-help", "--info") or token in ELISIONS:
            continue
        elif token.startswith("-"):
            raise ValueError(f"{token} is not a flag of the entry points")
        else:
            overrides.append(token)
    return overrides, multirun


def commands_in(text: str) -> list[tuple[int, Command]]:
    """Every command of a page with its line, as its entry point receives it."""
    found = []
    for line, code in code_lines(text):
        code = code.strip().removeprefix("$ ")
        calls = [(m.group(1), code[m.end() :], []) for m in ENTRY_POINT.finditer(code)]
        calls += [("train", code[m.end() :], ["resume=auto"]) for m in SBATCH.finditer(code)]
        calls += [("train", m.group(1), []) for m in MAKE_TRAIN.finditer(code)]
        for entry, arguments, added in calls:
            overrides, multirun = overrides_of(arguments)
            if entry == "eval":  # src/eval.py adds `+` to data.KEY=VALUE itself
                overrides = allow_data_overrides(overrides)
            found.append((line, Command(entry, tuple(overrides + added), multirun)))
    return found


def documented_commands() -> dict[Command, list[str]]:
    """Each distinct command of the README and docs/, with where it is written."""
    commands: dict[Command, list[str]] = {}
    for page in DOCS:
        name = page.relative_to(PROJECT_ROOT)
        try:
            for line, command in commands_in(page.read_text()):
                commands.setdefault(command, []).append(f"{name}:{line}")
        except ValueError as exc:  # a command no shell would pass on
            raise ValueError(f"{name}: {exc}") from exc
    return commands


COMMANDS = documented_commands()
PARSER = OverridesParser.create()


def first_job(overrides: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """A multirun's first job (the first value of each sweep, the low end of an interval), and
    the values each swept key takes."""
    job, swept = [], {}
    for override in PARSER.parse_overrides(list(overrides)):
        if not override.is_sweep_override():
            job.append(override.input_line)
            continue
        if override.is_interval_sweep():
            values = [str(override.value().start)]
        else:
            values = list(override.sweep_string_iterator())
        swept[override.key_or_group] = values
        job.append(f"{override.get_key_element()}={values[0]}")
    return job, swept


def job_overrides(command: Command) -> list[str]:
    """The overrides its entry point composes: a multirun's first job, else the command's own."""
    return first_job(command.overrides)[0] if command.multirun else list(command.overrides)


def swept_values(command: Command) -> dict[str, list[str]]:
    """The values each swept key of a multirun takes; none for a single run."""
    return first_job(command.overrides)[1] if command.multirun else {}


def check_composed(entry: str, overrides: list[str], swept: dict[str, list[str]]) -> None:
    """Compose as the entry point would and make the checks it makes before any work."""
    config_loader = GlobalHydra.instance().config_loader()
    for key, values in swept.items():  # a sweep over a group: every option must exist
        options = config_loader.get_group_options(key)
        if options:
            assert set(values) <= set(options), f"{key}: {sorted(set(values) - set(options))}"
    cfg = compose(CONFIG_NAMES[entry], overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    check_trainer_config(cfg.get("trainer"))  # what report_user_errors checks first
    augment = OmegaConf.select(cfg, "data.augment")
    if entry == "train" and augment is not None:
        parse_augmentation(OmegaConf.to_container(augment, resolve=True))


def clashes(values: dict[str, str], taken: dict[str, str]) -> bool:
    """Whether two sets of value overrides (key -> override) set a key to different values, or
    one sets a key inside another's."""
    for key, line in values.items():
        for other, other_line in taken.items():
            nested = key.startswith(other + ".") or other.startswith(key + ".")
            if nested or (key == other and line != other_line):
                return True
    return False


@functools.cache
def is_config_group(key: str) -> bool:
    """Whether `key` names a config group (`model`, `hydra/launcher`) rather than a value."""
    return bool(GlobalHydra.instance().config_loader().get_group_options(key))


def shared_compositions(commands: list[Command]) -> list[tuple[str, list[str], list[Command]]]:
    """Commands that can be checked by one composition: the same entry point and the same config
    group choices, additions and deletions, and values for different keys (none a prefix of
    another). Hydra applies such value overrides one by one to the composed config, so their
    union composes exactly when each command does; a union that fails is composed again command
    by command, to name the one to blame. Composing is the slow part of this test (a fifth of a
    second each); sharing saves about 40% of them."""
    shared: dict[tuple[str, tuple[str, ...]], list[tuple[dict[str, str], list[Command]]]] = {}
    for command in commands:
        choices, changes, values = [], [], {}
        for override in PARSER.parse_overrides(job_overrides(command)):
            key = override.key_or_group
            plain = not (override.is_add() or override.is_delete() or override.is_force_add())
            if plain and is_config_group(key):
                choices.append(override.input_line)  # an option of a group: order is no matter
            elif plain and override.package is None:
                values[key] = override.input_line
            else:
                changes.append(override.input_line)  # additions and deletions, in their order
        bins = shared.setdefault((command.entry, (*sorted(choices), *changes)), [])
        for taken, members in bins:
            if not clashes(values, taken):
                taken.update(values)
                members.append(command)
                break
        else:
            bins.append((dict(values), [command]))
    return [
        (entry, [*structure, *taken.values()], members)
        for (entry, structure), bins in shared.items()
        for taken, members in bins
    ]


@pytest.fixture(scope="module")
def composed() -> dict[Command, Exception | None]:
    """Every documented command composed, in one Hydra initialisation: its error or None."""
    results: dict[Command, Exception | None] = {}

    def attempt(entry: str, overrides: list[str], swept: dict[str, list[str]]) -> Exception | None:
        try:
            check_composed(entry, overrides, swept)
        except Exception as exc:  # reported by the test of the command
            return exc
        return None

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        for entry, overrides, members in shared_compositions(list(COMMANDS)):
            swept: dict[str, list[str]] = {}
            for command in members:
                for key, values in swept_values(command).items():
                    swept.setdefault(key, []).extend(values)
            error = attempt(entry, overrides, swept)
            for command in members:
                if error is None or len(members) == 1:
                    results[command] = error
                else:  # which of them is to blame
                    results[command] = attempt(entry, job_overrides(command), swept_values(command))
    HydraConfig.instance().cfg = None
    return results


@pytest.mark.parametrize("command", list(COMMANDS), ids=[c.text for c in COMMANDS])
def test_every_documented_command_composes(composed, command):
    error = composed[command]
    where = ", ".join(COMMANDS[command])
    expected = EXPECTED_FAILURES.get((command.entry, " ".join(command.overrides)))
    if expected is not None:
        assert error is not None and expected in str(error), f"{where}: should fail: {expected}"
    else:
        assert error is None, f"{where}: python {command.text}: {type(error).__name__}: {error}"


def test_the_docs_show_commands_of_every_entry_point_and_page():
    assert {c.entry for c in COMMANDS} == set(CONFIG_NAMES)
    assert sum(c.multirun for c in COMMANDS) >= 5
    pages = {where.split(":")[0] for places in COMMANDS.values() for where in places}
    topics = [
        "configuration", "image-folders", "models", "augmentation", "metrics", "sweeps",
        "resume-and-preemption", "gpus-and-nodes", "eval-and-predict", "from-pytorch",
    ]  # fmt: skip
    assert {"README.md", *(f"docs/{t}.md" for t in topics)} <= pages


def test_the_command_reader_reads_what_a_shell_would_pass():
    text = """
```bash
python src/train.py -m optimizer=adam,sgd 'optimizer.lr=tag(log,interval(1e-5,1e-2))'  # a note
torchrun --nnodes=2 --rdzv-id=x \\
    src/train.py trainer=ddp_cpu ...
$ python src/eval.py ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt data.batch_size=8
```
and `sbatch scripts/slurm/train.sbatch
trainer=gpu`, not `scripts/compare_runs.py logs/train`.
"""
    found = [command for _, command in commands_in(text)]
    assert found == [
        Command("train", ("optimizer=adam,sgd", "optimizer.lr=tag(log,interval(1e-5,1e-2))"), True),
        Command("train", ("trainer=ddp_cpu",), False),
        Command(
            "eval",
            (f"ckpt_path=logs/train/runs/{STAND_IN}/checkpoints/best.ckpt", "+data.batch_size=8"),
            False,
        ),
        Command("train", ("trainer=gpu", "resume=auto"), False),
    ]
    assert first_job(found[0].overrides) == (
        ["optimizer=adam", "optimizer.lr=1e-05"],
        {"optimizer": ["adam", "sgd"], "optimizer.lr": ["1e-05"]},
    )


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {heading_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_every_link_between_the_pages_leads_to_a_page_and_heading(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading"
