"""The synthetic detection table of the detector portfolio: ``python -m tests.detection.detector_table``.

Each detector is trained by ``train_anomaly`` on 24 h of clean synthetic data (tests/detection/synthetic.py),
then scored on 4 clean 8 h series (false alarms) and on a 4 h series per change (change at 2 h). A cell:
windows above the open threshold after the change (in its last 30 min) / time in alert (open after 3 windows
above, clear after 6 below); the role that dominates the explanation of the worst window, and the branch
that won it. tests/models_registry/test_training_detectors.py asserts the same facts.
"""

from __future__ import annotations

import numpy as np

from detection import runtime
from detection.explain import dominant_roles, explain
from detection.rules import active_mask, alert_episodes
from models_registry.training import train_anomaly
from tests.detection import synthetic as syn


def main() -> None:
    train = syn.windows(24 * 3600, seed=1)
    models = {
        d: train_anomaly(train.X, train.names, params={"detector": d})
        for d in ("pca", "univariate", "combined")
    }

    def scores(model, X):
        return runtime.run_batch(runtime.reference_session(model.onnx_bytes), X, model.output_spec)

    def alerting(model, s):
        return active_mask(len(s), alert_episodes(s, model.open_threshold, model.clear_threshold, 3, 6))

    clean = [syn.windows(8 * 3600, seed=seed) for seed in (11, 12, 13, 14)]
    print("| data | " + " | ".join(models) + " |\n|---|---|---|---|")
    cells = []
    for model in models.values():
        above = np.mean([np.mean(scores(model, w.X) > model.open_threshold) for w in clean])
        in_alert = np.mean([np.mean(alerting(model, scores(model, w.X))) for w in clean])
        cells.append(f"{above:.2%} / {in_alert:.2%}")
    print("| clean, 4 x 8 h | " + " | ".join(cells) + " |")
    n, change_s = 4 * 3600, 2 * 3600
    worst_error = 0.0
    for change in syn.CHANGES:
        w = syn.windows(n, seed=21, change=change, change_s=change_s)
        after = w.ends > syn.ORIGIN + change_s + syn.WINDOW_S
        last = w.ends > syn.ORIGIN + n - 1800
        cells = []
        for model in models.values():
            s = scores(model, w.X)
            flagged = s > model.open_threshold
            i = int(np.flatnonzero(after)[np.argmax(s[after])])
            e = explain(model.onnx_bytes, w.X[i], model.background, model.feature_names, model.output_spec)
            worst_error = max(worst_error, e["additivity_error"])
            via = f" via {e['detector']}" if "detector" in e else ""
            cells.append(
                f"{flagged[after].mean():.0%} ({flagged[last].mean():.0%}) / "
                f"{alerting(model, s)[after].mean():.0%}; top {dominant_roles(e)[0]}{via}"
            )
        print(f"| {change} ({syn.CHANGED_ROLE[change]}) | " + " | ".join(cells) + " |")
    print(f"largest additivity error |sum(phi) + base - onnxruntime output|: {worst_error:.1e}")


if __name__ == "__main__":
    main()
