"""IMS bearings run to failure: how long before the end-of-test failure each failing bearing alerts, and
how much of the time the healthy ones spend in alert, under one shared model per test.

Every test the data folder holds (``plant.datasets.ims.available``) is evaluated on its own: its four
bearings are the assets of one fleet (``models_registry.evaluation.fleet``: the scorer's windows, the
product's trainer, ONNX scores, per-asset robust normalisation and thresholds, the lifecycle's alert
rules). Each bearing's calibration is the start of its test, the rest is scored, and the report reads per
bearing the first alert, its lead time before the test's last snapshot (the failure), whether an alert is
in force at the end and since when, and the share of the scored time spent in alert.

A test the IMS readme does not describe is evaluated with its failure unknown: its bearings are neither
failing nor healthy, it is not judged against the targets and no method is chosen on it. A test file found
in the folder that cannot be used (malformed, too short, a layout the rig cannot have) is set aside with its
reason in the report and the others are evaluated; one asked for by ``--subset`` stops the command instead.

Every setting was fixed before the first run and none was changed after seeing a result; the notes of the
report say how each was chosen.

The package, imported one way (each module only from the ones listed after it):

- this module: the command's options and ``run``, which hands each framing its options;
- ``bearing``: the default framing, each bearing an asset of a fleet, every candidate method and the one
  chosen leaving the test out; writes ims.json / .md;
- ``machine``: ``--framing machine`` (protocol pre-registered in docs/evaluation/ims-machine.md), each test
  rig ONE asset whose roles are its bearings' channels, a bearing in alert when the machine is and the
  window's explanation names it among its dominant bearings; writes ims-machine-framing.json / .md;
- ``results``: what both framings read from alerts (``bearing_result``), the targets (``test_summary``)
  and the report parts they share;
- ``data``: the settings, the tests read as fleets of bearings and the options checked (``load_setup``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from models_registry.evaluation.fleet import NORMALISATIONS
from models_registry.evaluation.ims import bearing, machine
from models_registry.evaluation.ims.data import CALIBRATION_SNAPSHOTS, DETECTORS, PROPOSED
from models_registry.evaluation.report import Evaluation

FRAMINGS = (bearing.FRAMING, machine.FRAMING)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--framing",
        choices=FRAMINGS,
        default=FRAMINGS[0],
        help="bearing (default): each bearing an asset of a fleet, the methods compared and chosen leave one "
        "test out. machine: each test rig one asset whose roles are its bearings' channels, a bearing in "
        "alert when the machine is and its explanation names the bearing (docs/evaluation/ims-machine.md); "
        "writes ims-machine-framing.json / .md.",
    )
    parser.add_argument(
        "--subset",
        action="append",
        metavar="TEST",
        help="Evaluate only this test (repeatable: --subset test1 --subset test2); default every test the "
        "data folder holds.",
    )
    parser.add_argument(
        "--calibration-snapshots",
        type=int,
        default=CALIBRATION_SNAPSHOTS,
        help="Snapshots at the start of each test that calibrate the bearings and train the model (200).",
    )
    parser.add_argument(
        "--detectors",
        nargs="+",
        choices=DETECTORS,
        default=list(DETECTORS),
        help=f"Detectors to run (default all; the targets are judged on {PROPOSED}).",
    )
    parser.add_argument(
        "--normalisation",
        choices=NORMALISATIONS[1:],
        help="Run only this per-asset step (per_asset_adaptive: detection.adaptive; per_asset_pooled: "
        "detection.baseline.pool) instead of every candidate with the leave-one-test-out choice.",
    )
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Run only the chosen step with (or without) the peer step: each bearing relative to the "
        "median change of the test's bearings at the same time (detection.baseline.peer_relative).",
    )


def run(options: dict[str, Any], progress: Callable[[str], None]) -> Evaluation:
    """The framing the options ask for (``bearing`` by default, ``machine``); see the module docstring."""
    if options.get("framing") == machine.FRAMING:
        return machine.run(options, progress)
    return bearing.run(options, progress)
