"""The edge agent runs on a gateway without Django: every edge module imports no Django and no app."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import edge

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "plant", "alerts", "models_registry", "config", "demo")


def test_every_edge_module_imports_without_django_or_an_app():
    modules = [i.name for i in pkgutil.walk_packages(edge.__path__, prefix="edge.")]
    assert {"edge.queue", "edge.runner"} <= set(modules)
    code = (
        f"import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        f"assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
