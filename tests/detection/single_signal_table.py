"""The single-signal detector table: ``python -m tests.detection.single_signal_table``.

The ``temp`` sensor of tests/detection/synthetic.py alone (a one-sensor asset) at the product's 60 s / 10 s
windows; each detector trained by ``train_anomaly`` on the first 4 h, scored from 4 h to 8 h, the change at
6 h; seeds 1-6 x {clean, level shift, variance change, drift}; alerts by the production rules (M = 3,
N = 6). A cell: hits / misses / false alerts and hits - misses - 0.11 x false alerts (NAB's standard
weights without the sigmoid); a hit is an alert opened within 1 h of the change, a false alert one opened
before it or on a clean series. docs/evaluation/nab-single-signal.md records what it was used for.
"""

from __future__ import annotations

import numpy as np

from detection import runtime
from detection.features import build_windows
from detection.rules import alert_episodes
from models_registry.training import train_anomaly
from tests.detection import synthetic as syn

HOUR = 3600
CHANGES = (None, "level_shift", "variance", "drift")


def cell(detector: str, rule: str) -> tuple[int, int, int, float]:
    hits = misses = false_alerts = 0
    for seed in range(1, 7):
        for change in CHANGES:
            readings = syn.series(8 * HOUR, seed, change, 6 * HOUR)
            windows = build_windows(
                {"temp": readings["temp"]}, ["temp"], window_s=syn.WINDOW_S, step_s=syn.STEP_S
            )
            ends = windows.ends - windows.ends[0] + syn.WINDOW_S
            train = ends <= 4 * HOUR
            params = {"detector": detector, "open_rule": rule}
            if rule == "episodes":
                params |= {"window_s": syn.WINDOW_S, "step_s": syn.STEP_S}
            model = train_anomaly(windows.X[train], windows.names, params=params)
            session = runtime.reference_session(model.onnx_bytes)
            scores = runtime.run_batch(session, windows.X[~train], model.output_spec)
            live = ends[~train]
            episodes = alert_episodes(scores, model.open_threshold, model.clear_threshold, 3, 6)
            opened = np.array([live[e.opened] for e in episodes])
            if change is None:
                false_alerts += len(opened)
                continue
            false_alerts += int((opened < 6 * HOUR).sum())
            hit = bool(((opened >= 6 * HOUR) & (opened <= 7 * HOUR)).any())
            hits, misses = hits + hit, misses + (not hit)
    return hits, misses, false_alerts, hits - misses - 0.11 * false_alerts


def main() -> None:
    detectors = ("pca", "univariate", "combined")
    print("| rule | " + " | ".join(detectors) + " |\n|---|---|---|---|")
    for rule in ("quantile", "episodes"):
        cells = [cell(d, rule) for d in detectors]
        print(f"| {rule} | " + " | ".join(f"{h} / {m} / {f}; {s:.1f}" for h, m, f, s in cells) + " |")


if __name__ == "__main__":
    main()
