"""What every bench script needs: the machine it ran on, a free local port, and the PostgreSQL URL and
Django set-up of the benches that build a database. Written once here, not per script."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import sys
from pathlib import Path
from typing import Any

import psutil


def machine(**extra: Any) -> dict[str, Any]:
    """CPU model, core count, memory and Python of this machine (plus `extra`), for a result's header."""
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        **extra,
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_url(script: str) -> str:
    """DATABASE_URL, which must point at PostgreSQL; otherwise exit naming the `script` that needs it."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            f"{script} needs DATABASE_URL pointing at PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/vigil"
        )
    return url


def setup_django(database_url: str, var_dir: Path, **env: str) -> None:
    """Point Django at `database_url` with its var dir in `var_dir` (and the extra environment `env`)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["VIGIL_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.update(env)
    import django  # after the environment: settings read it when Django sets up

    django.setup()


def write_results(path: Path, result: dict[str, Any]) -> None:
    """Write a bench's result as indented JSON to `path` and say where (relative to the checkout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    root, where = Path(__file__).resolve().parent.parent, path.resolve()
    print(f"\nbench: wrote {where.relative_to(root) if where.is_relative_to(root) else where}")


def percentiles(samples: list[float]) -> dict[str, float]:
    """n, p50, p95, max and mean of ``samples`` (nearest rank: every figure is a measured value)."""
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50": pick(0.5),
        "p95": pick(0.95),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }
