"""No project import hides in a function body: import-linter sees only module-level imports' cycles when a
function-local import dodges one, so the only place allowed is AppConfig.ready() (where Django requires
model imports to wait until the registry is ready)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("detection", "plant", "alerts", "models_registry", "config", "demo")


def _project_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] in PACKAGES for alias in node.names)
    return False


def local_project_imports(source: str) -> list[tuple[str, int]]:
    """(function name, line) of every project import inside a function body, AppConfig.ready() excepted."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "ready":
            found.update((node.name, sub.lineno) for sub in ast.walk(node) if _project_import(sub))
    return sorted(found, key=lambda item: item[1])


def test_the_scan_finds_a_function_local_import_and_allows_ready():
    source = "def f():\n    from plant.models import Asset\n\nclass C:\n    def ready(self):\n        import alerts\n"
    assert local_project_imports(source) == [("f", 2)]


def test_production_code_imports_the_project_at_module_level_only():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for function, line in local_project_imports(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line} in {function}()")
    assert not offenders, "function-local project imports (a hidden cycle?):\n" + "\n".join(offenders)
