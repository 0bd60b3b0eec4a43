"""Start a network from the weights of another run's checkpoint or of a state_dict file.

Tensors whose names and shapes match are loaded; the head is new when the file was trained for
other classes (another number, other names or another task); everything else is reported.
"""

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from src.core.errors import ConfigError
from src.core.files import write_atomically
from src.models.checkpoint import load_torch_file
from src.models.param_groups import head_prefixes, in_head
from src.models.trusted_config import refuse_untrusted

# keys under which training scripts commonly keep the weights (Lightning, torchvision's reference
# scripts, timm's train.py, hand-written loops)
WEIGHT_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "module")
# prefixes that wrapping adds to names: DDP, torch.compile, the LightningModule's `net`
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "net.")


@dataclass
class InitReport:
    """What loading did to each tensor of the network: loaded, new (kept as initialised) or
    skipped (in the file, not used), with the reason."""

    source: Path
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, shape, status, why

    def count(self, status: str) -> int:
        return sum(row[2] == status for row in self.rows)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("loaded", "new", "skipped"))
        return f"init_from {self.source}: {counts} tensors"

    def table(self) -> Table:
        """Every new and skipped tensor, and the loaded ones in one line."""
        table = Table(title=self.summary(), title_justify="left")
        for column in ("tensor", "shape", "status", "why"):
            table.add_column(column)
        for row in self.rows:
            if row[2] != "loaded":
                table.add_row(*row)
        table.add_row(f"({self.count('loaded')} more)", "", "loaded", "name and shape match")
        return table

    def print(self) -> None:
        Console().print(self.table())

    def write_csv(self, path: Path) -> None:
        text = io.StringIO()
        csv.writer(text).writerows([("tensor", "shape", "status", "why"), *self.rows])
        write_atomically(path, lambda temporary: temporary.write_text(text.getvalue()))


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"model.init_from={path} is not a file: point it at a checkpoint")
    advice = "pass a .ckpt of a run or a file of torch.save(model.state_dict())"
    return load_torch_file(path, "model.init_from", what="checkpoint or state_dict", advice=advice)


def weights_of(content: Any, path: Path) -> tuple[dict[str, Tensor], Mapping[str, Any]]:
    """The tensors of a loaded file and the hyperparameters it names (empty for plain files)."""
    hparams = content.get("hyper_parameters", {}) if isinstance(content, Mapping) else {}
    refuse_untrusted(hparams, f"model.init_from={path}", "hyper_parameters")
    if not isinstance(hparams, Mapping):
        raise ConfigError(
            f"model.init_from={path} is damaged: its hyper_parameters are not a mapping: pass "
            "another checkpoint of the run, or a file of torch.save(model.state_dict())"
        )
    for key in WEIGHT_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping):
        raise ConfigError(f"model.init_from={path} holds no state_dict: pass a checkpoint")
    tensors = {k: v for k, v in content.items() if isinstance(v, Tensor)}
    if hparams:  # a run's checkpoint: the network's tensors, not the module's metric states
        tensors = {k: v for k, v in tensors.items() if k.startswith("net.")}
    return tensors, hparams


def _strip_wrappers(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name.removeprefix(prefix), True
    return name


def align_names(source: dict[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The file's tensors renamed to the network's names: wrapper prefixes dropped, then the
    prefix that makes most names agree added or removed (a torchvision state_dict's `layer1...`
    is our wrapped net's `model.layer1...`)."""
    stripped = {_strip_wrappers(k): v for k, v in source.items()}
    votes: dict[tuple[str, str], int] = {("", ""): sum(k in target for k in stripped)}
    for name in target:
        for key in stripped:
            if name != key and name.endswith("." + key):
                pair = (name[: len(name) - len(key)], "")
                votes[pair] = votes.get(pair, 0) + 1
            elif name != key and key.endswith("." + name):
                pair = ("", key[: len(key) - len(name)])
                votes[pair] = votes.get(pair, 0) + 1
    add, drop = max(votes, key=votes.__getitem__)
    return {add + k.removeprefix(drop): v for k, v in stripped.items() if k.startswith(drop)}


def _same_classes(hparams: Mapping[str, Any], model: nn.Module) -> bool:
    """Whether a run's checkpoint was trained for the same classes and task as `model`."""
    if not hparams:
        return True  # a plain state_dict: the shapes decide
    ours = model.hparams
    return (
        hparams.get("task") == ours.task
        and list(hparams.get("class_names") or []) == list(ours.class_names)
        and hparams.get("num_classes") == ours.num_classes
    )


def load_initial_weights(model: nn.Module, path: str | Path) -> InitReport:
    """Load the matching tensors of the file `path` into `model.net` (non-strict) and report."""
    path = Path(path)
    source, hparams = weights_of(_read(path), path)
    net: nn.Module = model.net
    target = net.state_dict()
    renamed = align_names(source, target)
    new_head = not _same_classes(hparams, model)
    head = head_prefixes(net) if new_head else ()
    report = InitReport(path)
    loaded: dict[str, Tensor] = {}
    for name, tensor in target.items():
        shape = "x".join(map(str, tensor.shape)) or "scalar"
        found = renamed.get(name)
        if new_head and in_head(name, head):
            report.rows.append((name, shape, "new", "a new head: the file's classes differ"))
        elif found is None:
            report.rows.append((name, shape, "new", "not in the file"))
        elif found.shape != tensor.shape:
            theirs = "x".join(map(str, found.shape))
            report.rows.append((name, shape, "new", f"the file's is {theirs}"))
        else:
            loaded[name] = found
            report.rows.append((name, shape, "loaded", "name and shape match"))
    for name, tensor in renamed.items():
        if name not in target:
            shape = "x".join(map(str, tensor.shape)) or "scalar"
            report.rows.append((name, shape, "skipped", "no such tensor in the network"))
    if not any(name in loaded for name, p in net.named_parameters()):
        raise ConfigError(
            f"model.init_from={path}: none of its {len(source)} tensors matches the network "
            f"{type(net).__name__} by name and shape: pass weights of the same architecture"
        )
    net.load_state_dict({**target, **loaded})
    return report
