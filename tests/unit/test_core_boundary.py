"""`core/` is the domain: it imports no framework or infrastructure library (STYLE.md "The house")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
FORBIDDEN = (
    "grpc",
    "google.protobuf",
    "sqlalchemy",
    "quickbooks",
    "intuitlib",
    "injector",
    "requests",
    "psycopg",
    "alembic",
    "adapters",
    "qbsync",
)


def forbidden_imports(source: str) -> list[str]:
    """The modules a source imports that core must not depend on (also inside functions or
    `if TYPE_CHECKING:` blocks, and through `importlib.import_module("...")`)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
        ):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
                found.append(name)
    return found


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules_to_check() -> None:
    assert {p.name for p in core_files()} >= {"domain.py", "sync_engine.py", "service.py", "ports.py"}


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(CORE.parent)))
def test_core_imports_no_infrastructure(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import grpc",
        "import sqlalchemy.orm as orm",
        "from google.protobuf import timestamp_pb2",
        "from quickbooks.objects import Customer",
        "from intuitlib.client import AuthClient",
        "import injector",
        "def f():\n    import requests\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from psycopg import Connection\n",
        "import alembic.op",
        "import importlib\nimportlib.import_module('sqlalchemy')",
        "from adapters.quickbooks.fake import FakeQuickBooks",
    ],
)
def test_the_check_catches_a_forbidden_import(source: str) -> None:
    assert forbidden_imports(source)


@pytest.mark.parametrize(
    "source",
    ["import decimal", "from core.money import ZERO", "from . import domain", "import requests_like_name_ok"],
)
def test_the_check_allows_the_standard_library_and_core(source: str) -> None:
    assert forbidden_imports(source) == []
