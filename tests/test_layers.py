"""The import graph is one-directional, as the folder names say (checked on every module):

    ui → server.workbench → {server.documents, storage}
    server.gateway → {server.documents, storage}
    storage imports nothing of ours; server never imports ui.

And every module stays small enough to read in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.harness import REPO

PACKAGES = ("server", "ui", "storage")
# A module this long has become two things; split it by what each half owns.
MAX_MODULE_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of our packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The modules `path` imports, anywhere in it (function-level and TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from storage import messages` imports the module storage.messages.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


ALL = modules()
GRAPH = {name: imports_of(name, path) for name, path in ALL.items()}

# (importer prefix, forbidden prefix, why)
RULES = [
    ("server", "ui", "the UI is composed on top of the server in ui.app"),
    ("storage", "server", "storage is the bottom layer"),
    ("storage", "ui", "storage is the bottom layer"),
    ("storage", "tests", "storage is the bottom layer"),
    ("server", "tests", "the product never imports its tests"),
    ("ui", "tests", "the product never imports its tests"),
    ("server.documents", "storage", "server.documents is pure: PDF → text → prompt"),
    ("server.documents", "server.workbench", "server.documents is pure: PDF → text → prompt"),
    ("server.documents", "server.gateway", "server.documents is pure: PDF → text → prompt"),
    ("server.gateway", "server.workbench", "the gateway serves /v1; the workbench is a client"),
    ("server.engine", "server.gateway", "engine plans are read by launch.sh, before any app"),
    ("server.engine", "storage", "engine plans are read by launch.sh, before any app"),
]


@pytest.mark.parametrize(
    ("importer", "forbidden", "why"), RULES, ids=[f"{a}-not-{b}" for a, b, _ in RULES]
)
def test_layers_import_only_downwards(importer, forbidden, why):
    offending = sorted(
        f"{name} imports {module}"
        for name, imported in GRAPH.items()
        if within(name, importer)
        for module in imported
        if within(module, forbidden)
    )
    assert not offending, f"{why}:\n" + "\n".join(offending)


def test_the_ui_reaches_storage_only_through_the_workbench():
    offending = sorted(
        f"{name} imports {module}"
        for name, imported in GRAPH.items()
        if within(name, "ui")
        for module in imported
        if within(module, "storage")
    )
    assert not offending, "ui → server.workbench → storage:\n" + "\n".join(offending)


def test_the_rules_see_the_imports_they_forbid(tmp_path):
    # The checks above would pass vacuously if imports_of missed imports.
    assert "server.workbench" in GRAPH["ui.formatting"]
    assert "storage.messages" in GRAPH["server.workbench"]
    assert "server.app" in GRAPH["ui.app"]
    module = tmp_path / "extract.py"
    module.write_text(
        "from . import render\nfrom ..workbench import library\ndef f():\n    import ui.app\n"
    )
    assert imports_of("server.documents.extract", module) >= {
        "server.documents.render",
        "server.workbench.library",
        "ui.app",
    }


def test_test_modules_share_code_through_helper_modules_only():
    offending = sorted(
        f"{path.name} imports {module}"
        for path in sorted((REPO / "tests").glob("*.py"))
        for module in imports_of(f"tests.{path.stem}", path)
        if within(module, "tests") and module.split(".")[1].startswith(("test_", "conftest"))
    )
    assert not offending, "move what is shared to tests/helpers.py:\n" + "\n".join(offending)


def test_tests_reach_the_engine_install_through_fixtures():
    # The fast subset (-m "not engine") runs where the engine is not installed: a test that
    # runs the engine's python takes the `engine_python` fixture, which marks it `engine`.
    offending = sorted(
        path.name
        for path in sorted((REPO / "tests").glob("test_*.py"))
        if path != Path(__file__) and "ENGINE_PYTHON" in path.read_text(encoding="utf-8")
    )
    assert not offending, offending


def test_no_module_is_over_the_size_limit():
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for path in [
            *ALL.values(),
            *sorted((REPO / "tests").glob("*.py")),
            *sorted((REPO / "bench").glob("*.py")),
        ]
    }
    over = {path: lines for path, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them): {over}"
