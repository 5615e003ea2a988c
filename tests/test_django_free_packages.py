"""The packages that run on a gateway without Django (the detection core, the protocol clients, the edge
agent) import no Django and no Vigil app — checked by importing every module in a fresh interpreter — and
the import-linter contracts that say so (and that the apps depend one way) hold."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from detection.explain import explain
from tests.models_registry.test_explain import hand_tree_ensemble

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


def installed_with(requirements: Path) -> set[str]:
    """The distributions ``pip install -r requirements`` installs: those it names and, from the installed
    metadata, everything they require (extras left out), by canonical name."""
    wanted = [
        re.split(r"[=<>~!\[; ]", line.split("#", 1)[0].strip(), maxsplit=1)[0]
        for line in requirements.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    found: set[str] = set()
    while wanted:
        name = canonicalize_name(wanted.pop())
        if name in found:
            continue
        found.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.append(requirement.name)
    return found


def test_the_edge_agent_and_its_protocol_clients_import_with_only_what_edge_requirements_installs(tmp_path):
    # A gateway installs edge/requirements.txt and nothing else: every module the agent runs (its own, the
    # detection core's, and each protocol client it may be configured with) must import there, and it explains
    # a tree (RUL) model's alert as the server does (shap's TreeExplainer, imported when a tree is explained).
    # Top-level modules of other distributions are refused, as on the gateway; optional imports may fall back.
    trees = tmp_path / "trees.onnx"
    trees.write_bytes(hand_tree_ensemble())
    background = np.random.default_rng(3).uniform(0, 1, size=(30, 3))
    x = np.array([0.9, 0.1, 0.8])
    names = ["a__mean", "b__mean", "c__mean"]
    spec = {"name": "score", "index": None}
    installed = installed_with(ROOT / "edge" / "requirements.txt")
    allowed = sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(canonicalize_name(d) in installed for d in dists)
    )
    code = f"""
import importlib, importlib.abc, pkgutil, sys
ALLOWED = set({allowed!r}) | set(sys.stdlib_module_names) | {{"edge", "detection", "connectivity"}}

class Gateway(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if path is None and name not in ALLOWED and not name.startswith("_"):
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed on a gateway)", name=name)
        return None

sys.meta_path.insert(0, Gateway())
import connectivity, connectivity.protocols as protocols, detection, edge
for package in (edge, detection, connectivity):
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        importlib.import_module(info.name)
for name in protocols.PROTOCOLS:
    protocols.module(name)
assert "shap" not in sys.modules, "shap is loaded by a tree explanation, not on import"

import json
from pathlib import Path
from detection.explain import explain
result = explain(
    Path({str(trees)!r}).read_bytes(), {x.tolist()!r}, {background.tolist()!r}, {names!r}, {spec!r}
)
print(json.dumps(result))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    on_gateway = json.loads(result.stdout.splitlines()[-1])
    on_server = explain(trees.read_bytes(), x, background, names, spec)
    assert on_gateway["method"] == "tree_shap_onnx" and on_gateway["additivity_ok"]
    assert (
        on_gateway["features"] == on_server["features"]
        and on_gateway["base_value"] == on_server["base_value"]
    )
