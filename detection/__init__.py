"""Vigil's detection core: the numeric rules every caller shares, with no Django anywhere in it.

Pure NumPy (and onnx / onnxruntime for models), so the live scorer, the backtest, the evaluations, retraining
and the edge runner on a gateway all run the same code. Modules:

* ``features`` — readings of an asset's sensors turned into named feature windows (one implementation,
  ``build_windows_many``; ``build_windows`` is its one-asset case).
* ``rules`` — the alert rule engine: ``step`` (state + scored windows → transitions: open after M windows
  above, close after N below, resume after maintenance / snooze, severity); ``alert_episodes`` folds it
  over a score series, ``alerts.services.lifecycle`` persists its transitions.
* ``regimes`` — per-operating-regime standardisation of readings, applied before the windows.
* ``baseline`` — per-asset baseline arithmetic (a window's features minus its asset's operating point).
* ``detectors`` — the anomaly detector portfolio behind one interface (PCA T²+Q, per-feature robust z,
  their calibrated max): fit on normal windows, score, export to ONNX.
* ``onnx_graphs`` — the hand-built ONNX graphs (quadratic forms and their max) and their parser.
* ``pipeline`` — the scoring pipeline of one version: regime step, windows, complete rows, per-asset
  baseline, one model batch (the live scorer, the backtest, the edge runner and retraining's hold-out).
* ``runtime`` — onnxruntime sessions, batch scoring, output selection, ``LoadedModel``.
* ``explain`` — SHAP values of the exact ONNX artifact that scored a window.

The import-linter contract in ``.importlinter`` and ``tests/test_django_free_packages.py`` keep Django and the
apps (plant, alerts, models_registry, config) out of this package.
"""
