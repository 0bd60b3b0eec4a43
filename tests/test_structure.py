"""Data flows one way: each package imports only the packages it is allowed to, no package's
modules import each other in a circle, and the README's layout is the tree."""

import ast
import re
from pathlib import Path

import pytest

from src import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
# The src packages each package may import (besides itself, src's PROJECT_ROOT and src.compat):
# a new arrow is a decision made here, not an accident. core imports nothing of src; cli and
# tracking are siblings above it that never import each other; the entry points (src/*.py) may
# import everything.
ALLOWED = {
    "core": set(),
    "cli": {"core"},
    "tracking": {"core"},
    "data": {"core"},
    "models": {"core", "tracking"},
    "callbacks": {"core", "cli", "tracking"},
    "sweepers": {"core", "cli"},
}
# What every package but core may import besides: src.compat (the private names of libraries)
# and src's PROJECT_ROOT.
ROOT_MODULES = {"compat", "PROJECT_ROOT"}


def imported_modules(file: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (`from a import b` counts as
    a and as a.b, which may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def packages() -> list[str]:
    return sorted(p.parent.name for p in SRC.glob("*/__init__.py"))


def test_every_package_has_its_rule():
    assert packages() == sorted(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_packages_it_may(package):
    allowed = ALLOWED[package] | {package} | (ROOT_MODULES if package != "core" else set())
    for file in (SRC / package).rglob("*.py"):
        for name in imported_modules(file):
            parts = name.split(".")
            if parts[0] == "src" and len(parts) > 1 and parts[1] not in allowed:
                where = file.relative_to(PROJECT_ROOT)
                pytest.fail(f"{where} imports {name}, which ALLOWED[{package!r}] does not allow")


MAX_LINES = 300  # a module is read at once; a longer one holds more than one job: split it


def test_no_module_under_src_is_longer_than_300_lines():
    long = {
        str(f.relative_to(PROJECT_ROOT)): n
        for f in sorted(SRC.rglob("*.py"))
        if (n := len(f.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these along a seam into modules with one job each: {long}"


def import_cycles(package: Path, root: Path) -> list[list[str]]:
    """Circles of imports among the modules under `package` (a folder under `root`), imports
    inside functions included; each circle once, from its first module by name."""
    modules = {
        ".".join(f.relative_to(root).with_suffix("").parts): f for f in package.rglob("*.py")
    }
    graph = {m: sorted(imported_modules(f) & set(modules) - {m}) for m, f in modules.items()}
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for after in graph[node]:
                if after == start:
                    cycles.append(path)
                elif after > start and after not in path:
                    stack.append((after, [*path, after]))
    return cycles


def test_the_cycle_finder_sees_a_circle_closed_inside_a_function(tmp_path):
    package = tmp_path / "src" / "loop"
    package.mkdir(parents=True)
    (package / "a.py").write_text("from src.loop.b import x\n")
    (package / "b.py").write_text("def f():\n    from src.loop import a\n")
    (package / "c.py").write_text("import src.loop.a\n")
    assert import_cycles(package, tmp_path) == [["src.loop.a", "src.loop.b"]]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_modules_of_a_package_import_each_other_in_a_circle(package):
    assert import_cycles(SRC / package, PROJECT_ROOT) == []


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


NAMEDTUPLE_API = {"_asdict", "_replace", "_fields", "_make"}  # public, underscored by design


def private_library_names(file: Path) -> list[str]:
    """Where a file touches a private name of a library: `x._name` (not on self, cls or
    super()), getattr/setattr/hasattr(x, "_name"), x["_name"], or an import of or from a
    `_private` module or of a `_private` name."""
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        where = f"{file.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value
            own = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            own |= isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super"
            if not own and node.attr not in NAMEDTUPLE_API:
                found.append(f"{where} {ast.unparse(node)}")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = str(node.slice.value)  # a private key of a library's state; not Hydra's _target_
            if is_private(key) and not key.endswith("_"):
                found.append(f"{where} {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in PRIVATE_BY_NAME:
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and is_private(str(name.value)):
                found.append(f"{where} {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in ("src", "tests", "scripts", "__future__"):
                continue
            names = node.module.split(".") + [alias.name for alias in node.names]
            if any(is_private(name) for name in names):
                found.append(f"{where} from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(is_private(part) for part in alias.name.split(".")):
                    found.append(f"{where} import {alias.name}")
    return found


PRIVATE_BY_NAME = ("getattr", "setattr", "hasattr", "delattr")


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_private_names_of_libraries_are_used_only_through_src_compat():
    """A library may change a private name in any release: src/compat.py holds every one we use,
    each checked against the installed library by tests/test_compat.py."""
    files = [
        f for d in ("src", "hydra_plugins", "scripts") for f in (PROJECT_ROOT / d).rglob("*.py")
    ]
    found = [hit for f in files if f != SRC / "compat.py" for hit in private_library_names(f)]
    assert not found
    assert private_library_names(SRC / "compat.py")  # the check sees them where they are
