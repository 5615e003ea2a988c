"""How often the browser tests' world (bench/world.py) starts with an alert on its healthy seeded history.

Each trial seeds a fresh SQLite database exactly as `start_world` does (its SEED_SCRIPT: the demo plant, an
anomaly champion trained on fault-free history, that history scored once), with the history ending at a
different time of day (the simulator's duty cycle follows the clock), and lists the alerts it left
(`World.alerts`). A healthy world has none; an active one is a card on the board before any test injected a
fault (the CI flake of tests/e2e/test_board_live.py).

    python bench/seed_trials.py --trials 60 --spacing 577 [--assets 6] [--out results/seed_trials.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine  # noqa: E402
from bench.world import HISTORY_ENDS_AGO_S, SEED_SCRIPT, World, describe_alerts  # noqa: E402

ACTIVE = ("open", "acknowledged", "snoozed", "suppressed")  # alerts.choices.ACTIVE_STATES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--spacing", type=float, default=577.0, help="seconds between the histories' ends")
    parser.add_argument("--assets", type=int, default=6)
    parser.add_argument("--hours", type=float, default=1.0, help="seeded history, as start_world's default")
    parser.add_argument("--out", type=Path, help="one JSON line per trial")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vigil-seed-trials-"))
    template, db = workdir / "template.sqlite3", workdir / "trial.sqlite3"
    # No REDIS_URL: the seed's broadcasts must not reach anyone's Redis (they fail, logged, harmlessly).
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_")) and k != "REDIS_URL"
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"sqlite:///{template}",
            "VIGIL_VAR_DIR": str(workdir / "var"),
            "VIGIL_SCORING_ENQUEUE": "0",  # no worker here: nothing to wake
        }
    )
    world = World(base_url="", token="", passwords={}, assets={}, env=env, workdir=workdir)
    world.manage("migrate", "--noinput", "-v", "0", timeout=300)
    world.env["DATABASE_URL"] = f"sqlite:///{db}"
    started, now = time.monotonic(), time.time()
    tally: Counter[str] = Counter()
    out = args.out.open("w") if args.out else None
    print(json.dumps(machine(trials=args.trials, spacing_s=args.spacing, assets=args.assets)))
    try:
        for k in range(args.trials):
            shutil.copyfile(template, db)
            ends_ago = HISTORY_ENDS_AGO_S + (time.time() - now) + k * args.spacing
            world.shell(
                SEED_SCRIPT.format(
                    assets=args.assets,
                    credentials=str(workdir / "credentials.json"),
                    hours=args.hours,
                    ends_ago=ends_ago,
                )
            )
            alerts = world.alerts()
            active = [a for a in alerts if a["state"] in ACTIVE]
            tally["worlds"] += 1
            tally["with an alert"] += bool(alerts)
            tally["with an active alert at the start"] += bool(active)
            for a in alerts:
                tally[f"{a['category']} ({'active' if a['state'] in ACTIVE else a['state']})"] += 1
            if alerts:
                print(
                    f"trial {k} (history ends {ends_ago:.0f} s ago):\n{describe_alerts(alerts)}", flush=True
                )
            if out:
                out.write(json.dumps({"trial": k, "ends_ago_s": ends_ago, "alerts": alerts}) + "\n")
    finally:
        if out:
            out.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({**tally, "seconds": round(time.monotonic() - started)}))


if __name__ == "__main__":
    main()
