"""The docs say what the code does (in the style of sqlite-utils' tests/test_docs.py).

Every list is read from the code, so a settings field, an error or a module added later
without its line in the docs fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from server.settings import Settings
from tests.harness import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
API_DOC = (REPO / "docs" / "API.md").read_text(encoding="utf-8")
ERRORS = REPO / "server" / "gateway" / "errors.py"
PACKAGES = ("server", "ui", "storage")


def section(markdown: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", markdown, re.MULTILINE)
    assert match, f"no heading {heading!r}"
    level = len(match.group(1))
    rest = markdown[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    """The cells of the markdown table rows in `text` (header and rule rows included)."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.strip().startswith("|")
    ]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- settings ---------------------------------------------------------------------------------


def env_names() -> list[str]:
    """Every settings field's environment variable."""
    names = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.append(str(choices[0]) if choices else f"WORKBENCH_{name.upper()}")
    return names


@pytest.mark.parametrize("variable", env_names())
def test_every_setting_is_in_the_readme_configuration_table(variable):
    documented = {
        name for row in table_rows(section(README, "Configuration")) for name in code_spans(row[0])
    }
    assert variable in documented


# --- errors -----------------------------------------------------------------------------------


def _const(node: ast.AST | None):
    return node.value if isinstance(node, ast.Constant) else None


def error_triples() -> set[tuple[int, str, str]]:
    """(status, type, code) of every error `server/gateway/errors.py` can build."""
    functions = {
        node.name: node
        for node in ast.parse(ERRORS.read_text()).body
        if isinstance(node, ast.FunctionDef)
    }
    builders = {}  # constructor → (status, type, index and name of its code parameter)
    triples = set()
    for name, function in functions.items():
        params = [a.arg for a in function.args.args]
        defaults = dict(
            zip(
                params[len(params) - len(function.args.defaults) :],
                function.args.defaults,
                strict=True,
            )
        )
        for call in ast.walk(function):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "ApiError":
                status, type_ = _const(call.args[0]), _const(call.args[2])
                code_node = call.args[3]
                if isinstance(code_node, ast.Name) and code_node.id in params:
                    builders[name] = (status, type_, params.index(code_node.id), code_node.id)
                    code = _const(defaults.get(code_node.id))
                else:
                    code = _const(code_node)
                if code is not None:
                    triples.add((status, type_, code))
    # Constructors that call another with a code of their own.
    for function in functions.values():
        for call in ast.walk(function):
            callee = getattr(call.func, "id", None) if isinstance(call, ast.Call) else None
            if callee in builders:
                status, type_, index, keyword = builders[callee]
                given = [k.value for k in call.keywords if k.arg == keyword]
                if len(call.args) > index:
                    given.append(call.args[index])
                triples.update((status, type_, _const(g)) for g in given if _const(g))
    return triples


def documented_errors() -> set[tuple[int, str, str]]:
    rows = table_rows(section(API_DOC, "Every error this server returns"))
    return {
        (int(row[0]), code_spans(row[1])[0], code)
        for row in rows
        if row[0].isdigit()
        for code in code_spans(row[2])
    }


def test_errors_are_read_from_the_code():
    triples = error_triples()
    assert (429, "rate_limit_error", "rate_limit_exceeded") in triples  # a direct ApiError
    assert (400, "invalid_request_error", "invalid_json") in triples  # through invalid_request
    assert (500, "internal_server_error", "engine_error") in triples  # through internal_error


@pytest.mark.parametrize("error", sorted(error_triples()), ids=lambda e: "-".join(map(str, e)))
def test_every_error_is_in_the_api_doc_error_table(error):
    assert error in documented_errors()


def test_the_api_doc_lists_no_error_the_code_cannot_build():
    assert documented_errors() <= error_triples()


def test_errors_are_built_only_in_errors_py():
    offending = []
    for path in sorted((REPO / "server").rglob("*.py")):
        if path == ERRORS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if name == "ApiError":
                offending.append(f"{where} builds an ApiError")
            receiver = getattr(node.func, "value", None)
            if getattr(receiver, "id", None) == "errors" and any(
                k.arg == "code" for k in node.keywords
            ):
                offending.append(f"{where} picks an error code")
    assert not offending, "add a constructor to server/gateway/errors.py:\n" + "\n".join(offending)


# --- layout -----------------------------------------------------------------------------------


def layout_paths() -> list[str]:
    return [path for row in table_rows(section(README, "Layout")) for path in code_spans(row[0])]


def modules() -> list[str]:
    """Every module and package of ours, as the README names them (`dir/`, `file.py`)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if path.name.startswith(("__", ".")) or "__pycache__" in path.parts:
                continue
            if path.is_dir() and (path / "__init__.py").is_file():
                found.append(f"{path.relative_to(REPO)}/")
            elif path.suffix == ".py":
                found.append(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("module", modules())
def test_every_module_is_in_the_readme_layout_table(module):
    # A row for a package covers what is inside it; `server/` holds several layers, so its
    # modules and packages each need a row of their own.
    listed = set(layout_paths()) - {"server/"}
    parts = Path(module).parts
    parents = [f"{Path(*parts[:i])}/" for i in range(1, len(parts))]
    assert module in listed or any(parent in listed for parent in parents), (
        f"{module} is not in the README's layout table"
    )


def test_the_readme_layout_table_names_only_what_exists():
    missing = [path for path in layout_paths() if not (REPO / path).exists()]
    assert not missing
