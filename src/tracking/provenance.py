"""What code a run ran: the project's git commit, whether its tree was dirty (the diff saved
beside), the untracked files, and the versions of Python and the libraries that shape training.

Written once per run (rank 0) to the run folder as provenance.json and git_diff.patch, and put
into every checkpoint; compare_runs shows it with --columns commit. Without git, or outside a
git checkout, the commit and the tree's state are null: a run never fails for want of them.
"""

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from src import PROJECT_ROOT
from src.core.files import write_atomically

PROVENANCE_FILE = "provenance.json"
DIFF_FILE = "git_diff.patch"
# The checkpoint key (plain values: torch.load(weights_only=True) reads it)
PROVENANCE_KEY = "provenance"
PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "torchmetrics", "timm", "optuna")


def _git(folder: Path, *args: str) -> str | None:
    """git's output in folder, or None where git is missing or fails (not a checkout)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # no index lock in a tree being worked in
    try:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=60, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def collect_provenance(folder: Path = PROJECT_ROOT) -> tuple[dict[str, Any], str]:
    """The provenance of the code in folder, and the diff of its uncommitted changes to tracked
    files ("" for a clean tree or no checkout)."""
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain") if commit else None
    diff = (_git(folder, "diff", "HEAD") or "") if status else ""
    info = {
        "commit": commit.strip() if commit else None,
        "dirty": bool(status) if status is not None else None,
        "untracked": [line[3:] for line in (status or "").splitlines() if line.startswith("??")],
        "python": platform.python_version(),
        "packages": {package: _version(package) for package in PACKAGES},
    }
    return info, diff


def record_provenance(run_dir: Path, folder: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Write the provenance of the code in folder to run_dir (provenance.json, and
    git_diff.patch for a dirty tree); return it."""
    info, diff = collect_provenance(folder)
    text = json.dumps(info, indent=2) + "\n"
    write_atomically(run_dir / PROVENANCE_FILE, lambda path: path.write_text(text))
    if diff:
        write_atomically(run_dir / DIFF_FILE, lambda path: path.write_text(diff))
    else:  # a run continued in its folder (resume=auto) from a clean tree
        (run_dir / DIFF_FILE).unlink(missing_ok=True)
    return info


def read_provenance(run_dir: Path) -> dict[str, Any]:
    """A run folder's provenance as flat columns (commit, dirty, python, torch, ...); {} if
    it has none."""
    try:
        info = json.loads((run_dir / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    packages = info.pop("packages", None) or {}
    info.pop("untracked", None)
    return {**info, **packages}
