"""Data flows one way: no package imports one above it, and the README's layout is the tree."""

import ast
import re
from pathlib import Path

import pytest

from src import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
ENTRY_POINTS = ("src.train", "src.eval", "src.predict")
# What each package may not import (any module under these names).
FORBIDDEN = {
    "cli": ("src.data", "src.models", "src.callbacks", "src.sweepers", *ENTRY_POINTS),
    "tracking": ("src.data", "src.models", "src.callbacks", "src.sweepers", *ENTRY_POINTS),
    "data": ("src.models", "src.callbacks", "src.sweepers", *ENTRY_POINTS),
    "models": ("src.data", "src.callbacks", "src.sweepers", *ENTRY_POINTS),
    "callbacks": ("src.sweepers", *ENTRY_POINTS),
    "sweepers": ("src.callbacks", *ENTRY_POINTS),
}


def imported_modules(file: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def packages() -> list[str]:
    return sorted(p.parent.name for p in SRC.glob("*/__init__.py"))


def test_every_package_has_its_rule():
    assert packages() == sorted(FORBIDDEN)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_upward(package):
    for file in (SRC / package).rglob("*.py"):
        for name in imported_modules(file):
            upward = [f for f in FORBIDDEN[package] if name == f or name.startswith(f + ".")]
            assert not upward, f"{file.relative_to(PROJECT_ROOT)} imports {name}"


def test_the_hydra_plugin_shim_imports_the_template_only_when_a_sweep_runs():
    shim = PROJECT_ROOT / "hydra_plugins" / "template_sweepers" / "__init__.py"
    assert not any(name.split(".")[0] == "src" for name in imported_modules(shim))


def readme_layout() -> dict[str, str]:
    """The README's layout block (under Development): path -> what it holds."""
    text = (PROJECT_ROOT / "README.md").read_text()
    block = text.split("## Development", 1)[1].split("```", 2)[1]
    rows = re.findall(r"^(\S+/)\s+(.+)$", block, re.M)
    return dict(rows)


def test_the_readme_layout_names_every_folder_and_only_folders_that_exist():
    layout = readme_layout()
    for path in layout:
        assert (PROJECT_ROOT / path).is_dir(), f"the README names {path}, which does not exist"
    folders = {f"src/{name}/" for name in packages()} | {"src/", "configs/", "scripts/", "tests/"}
    folders |= {"hydra_plugins/"}
    assert folders <= set(layout), sorted(folders - set(layout))
