"""The protocol clients' shared vocabulary, and the rule that they import no Django and no app."""

from __future__ import annotations

import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import connectivity
from connectivity.points import ConnectionStatus, PointError, backoff_delays, finite

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "detection", "plant", "alerts", "models_registry", "config", "demo")


def test_every_connectivity_module_imports_without_django_or_an_app():
    modules = [i.name for i in pkgutil.walk_packages(connectivity.__path__, prefix="connectivity.")]
    assert "connectivity.points" in modules
    code = (
        f"import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        f"assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_backoff_doubles_to_its_cap_with_bounded_jitter():
    delays = backoff_delays(first=1.0, cap=8.0, jitter=0.2)
    got = [next(delays) for _ in range(7)]
    for nominal, delay in zip([1, 2, 4, 8, 8, 8, 8], got, strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2


def test_only_finite_numbers_are_values():
    assert finite(3) == 3.0 and finite(-2.5) == -2.5
    for bad in (math.nan, math.inf, -math.inf, True, "3", None, [1]):
        assert finite(bad) is None


def test_status_keeps_the_last_errors_and_names_their_source():
    status = ConnectionStatus()
    for i in range(ConnectionStatus.MAX_RECENT + 5):
        status.error(PointError("not a number", source=f"plant/p{i}"), at=float(i))
    assert status.errors == ConnectionStatus.MAX_RECENT + 5
    assert len(status.recent_errors) == ConnectionStatus.MAX_RECENT
    assert status.last_error == f"plant/p{ConnectionStatus.MAX_RECENT + 4}: not a number"
