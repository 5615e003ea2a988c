"""Offline evaluation of Vigil's production path on the public datasets (``manage.py evaluate NAME``).

Each dataset has a module here exposing ``add_arguments(parser)`` and ``run(options, progress) -> Evaluation``.
They score data with the same feature windows, ONNX models (through onnxruntime), thresholds and hysteresis
that the live product uses, and report beside the published numbers from the dataset's card.
``report.write`` stores every result as JSON and a markdown table under ``docs/evaluation/``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module; a module is imported only when its evaluation is asked for (some train models).
EVALUATIONS = {
    "skab": "models_registry.evaluation.skab",
    "cmapss": "models_registry.evaluation.cmapss",
    "nab": "models_registry.evaluation.nab",
    "simfleet": "models_registry.evaluation.simfleet",
    "ims": "models_registry.evaluation.ims",
}


def evaluation_module(name: str) -> ModuleType:
    return importlib.import_module(EVALUATIONS[name])
