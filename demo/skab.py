"""The SKAB part of ``make demo DATA=skab``: load the normal data, make sure a SKAB champion exists.

Following the SKAB protocol, the model learns normal behaviour only: the fault-free first part (every row
before the first ``anomaly = 1``) of each valve run except the one the demo replays, so the replayed run
stays unseen. The anomaly-free run is NOT used: it was recorded at another operating point (flow ~125
l/min and vibration ~0.21 g against ~32 l/min and ~0.027 g in every valve run), and with it in the normal
data the valve faults (flow down ~1.5 l/min, flow variability up 2-3x) score far below the open threshold
(median fault window at 0.1-0.2x of it on valve1/3), while without it the replayed fault opens an alert
30-100 s after its start and the minutes before it stay quiet (checked on valve1/3 and valve1/12).
``DEFAULT_RUN`` has the widest margin: its pre-fault windows peak at ~0.5x the open threshold.

Training uses every active asset of the testbed type, so any other testbed asset (the replayed run loaded in
full, the anomaly-free run, earlier live replays) is set inactive for the duration of the training and
restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from models_registry.choices import ModelKind
from models_registry.services import current_champion, promote, train_and_register
from plant.datasets import skab
from plant.datasets.common import LoadResult, Progress, Unit, store_units
from alerts.models import ScoringDue

DEFAULT_RUN = "valve1/12"
# The trainer's defaults (99.5 % hold-out quantile): the valve faults are subtle, a higher quantile (as the
# pump demo uses) puts the threshold above them.
TRAINING_PARAMS: dict = {}
TRAINING_SUBSETS = ("valve1", "valve2")


def normal_units(replayed: str, *, base: Path | str | None = None) -> list[Unit]:
    """The fault-free prefix of every valve run but ``replayed`` (pure)."""
    replay_ref = skab.list_files([replayed], base=base)[0].ref
    units = []
    for file in skab.list_files(TRAINING_SUBSETS, base=base):
        if file.ref == replay_ref:
            continue
        run = skab.read_run(file.path)
        if run.anomaly is not None:
            faults = np.flatnonzero(run.anomaly == 1)
            keep = int(faults[0]) if len(faults) else len(run)
            run = skab.SkabRun(
                run.ts[:keep], {k: v[:keep] for k, v in run.values.items()}, run.anomaly[:keep]
            )
        units.append(skab.to_unit(file, run, limited=True))  # labels after the prefix: left as stored
    return units


def load_normal_data(
    replayed: str = DEFAULT_RUN, *, progress: Progress | None = None, base: Path | str | None = None
) -> list[LoadResult]:
    """Load the training data of ``ensure_champion`` (idempotent)."""
    units = normal_units(replayed, base=base)
    return store_units(skab.SITE, units, progress=progress)


def ensure_champion(
    replayed: str = DEFAULT_RUN, *, log: Callable[[str], None] = print, progress: Progress | None = None
):
    """A SKAB anomaly champion that never saw ``replayed``; trains and promotes one when there is none.

    Returns the new champion, or None when the testbed already has one (idempotent).
    """
    testbed = skab.ensure_asset_type()
    if current_champion(testbed, ModelKind.ANOMALY) is not None:
        return None
    results = load_normal_data(replayed, progress=progress)
    log(
        f"loaded SKAB normal data: {len(results)} runs, {sum(r.accepted for r in results)} new readings"
        f" (the fault-free start of every valve run except {replayed})"
    )
    assets = [result.asset for result in results]
    # Training data from 2020: scoring it would only raise in-sample alerts on history nobody watches.
    ScoringDue.objects.filter(asset__in=assets).update(due=False)
    version = train_and_register(
        testbed,
        ModelKind.ANOMALY,
        name="skab-testbed-anomaly",
        seed=0,
        params=TRAINING_PARAMS,
        asset_ids=[asset.pk for asset in assets],
    )
    promote(version, reason=f"SKAB demo bootstrap (normal data; {replayed} held out)")
    log(
        f"trained and promoted {version} on SKAB normal data"
        f" (open {version.open_threshold:.3g}, clear {version.clear_threshold:.3g})"
    )
    return version
