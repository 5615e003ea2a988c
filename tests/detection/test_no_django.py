"""The detection core stays free of Django and of the apps, so the edge runner can use it on a gateway."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import detection

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "plant", "alerts", "models_registry", "config", "demo")


def detection_modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages(detection.__path__, prefix="detection.")]


def test_every_detection_module_imports_without_django_or_an_app():
    modules = detection_modules()
    assert {
        "detection.baseline",
        "detection.explain",
        "detection.features",
        "detection.onnx_graphs",
        "detection.regimes",
        "detection.rules",
        "detection.runtime",
    } <= set(modules)
    code = (
        f"import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        f"assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "detection imports no Django and no Vigil app KEPT" in result.stdout
    # plant imports neither the registry nor alerts, and the registry does not import alerts (issue 12).
    assert "Apps depend one way (alerts > models_registry > plant > detection) KEPT" in result.stdout
