"""The packages that run on a gateway without Django (the detection core, the protocol clients, the edge
agent) import no Django and no Vigil app — checked by importing every module in a fresh interpreter — and
the import-linter contracts that say so (and that the apps depend one way) hold."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("django", "plant", "alerts", "models_registry", "config", "demo")
# package -> (modules it must have, what it may not import beyond the apps)
PACKAGES = {
    "detection": (
        {
            "detection.baseline",
            "detection.explain",
            "detection.features",
            "detection.onnx_graphs",
            "detection.regimes",
            "detection.rules",
            "detection.runtime",
            "detection.bundle",
        },
        (),
    ),
    "connectivity": (
        {"connectivity.points", "connectivity.protocols", "connectivity.mapping_csv"},
        ("detection",),
    ),
    "edge": ({"edge.queue", "edge.runner", "edge.agent", "edge.decide", "edge.updates"}, ()),
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_imports_without_django_or_an_app(package: str):
    root = importlib.import_module(package)
    modules = [info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    expected, also_forbidden = PACKAGES[package]
    assert expected <= set(modules)
    forbidden = APPS + also_forbidden
    code = (
        f"import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})\n"
        f"assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in (
        "detection imports no Django and no Vigil app",
        "Layers: notify, handoff > alerts > models_registry > plant > detection",
        "connectivity imports no Django and no Vigil app",
        "edge imports no Django and no Vigil app",
    ):
        assert f"{contract} KEPT" in result.stdout
