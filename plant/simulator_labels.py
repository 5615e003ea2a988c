"""Ground truth of simulated faults: one plant.Label per fault occurrence, its end following the run."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

from plant.choices import LabelKind, LabelSource
from plant.models import Asset, Label, Site
from plant.simulator import FaultOccurrence

_REFRESH_S = 30.0  # how far (simulated seconds) an open label's end may lag behind the data sent


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=dt_timezone.utc)


def record_fault_label(asset: Asset, occurrence: FaultOccurrence, until: float) -> Label:
    """Create or extend the simulator label of one occurrence so that it covers [start, min(end, until)].

    Keyed on (asset, fault type, start, source simulator), so a re-run over the same time updates, never
    duplicates.
    """
    fault = occurrence.fault
    start, end = _dt(occurrence.start), _dt(max(occurrence.start, min(occurrence.end, until)))
    label = Label.objects.filter(
        asset=asset, kind=LabelKind.FAULT, source=LabelSource.SIMULATOR, fault_type=fault.kind, start=start
    ).first()
    if label is None:
        where = f"sensor {fault.sensor_role}" if fault.sensor_role else "machine"
        return Label.objects.create(
            asset=asset,
            start=start,
            end=end,
            kind=LabelKind.FAULT,
            fault_type=fault.kind,
            source=LabelSource.SIMULATOR,
            note=(
                f"Injected by the simulator ({where}, severity {fault.severity:g},"
                f" planned end {_dt(occurrence.end):%H:%M:%S})."
            ),
        )
    if label.end < end:
        Label.objects.filter(pk=label.pk, end__lt=end).update(end=end)
        label.end = end
    return label


class LabelRecorder:
    """Writes labels for the occurrences a run sent data for: at their start, every ~30 s and at their end."""

    def __init__(self, site: Site) -> None:
        self.assets = {asset.tag: asset for asset in Asset.objects.filter(site=site)}
        self._recorded: dict[tuple[str, str, float], float] = {}

    def record(self, occurrences: list[FaultOccurrence], until: float, force: bool = False) -> int:
        """Bring the labels of `occurrences` up to `until`; returns how many rows were written."""
        written = 0
        for occ in occurrences:
            asset = self.assets.get(occ.fault.asset_tag)
            if asset is None or occ.start > until:
                continue
            key = (occ.fault.asset_tag, occ.fault.kind, occ.start)
            covered = min(occ.end, until)
            last = self._recorded.get(key)
            if last is not None and last >= covered:
                continue
            if force or last is None or covered >= occ.end or covered - last >= _REFRESH_S:
                record_fault_label(asset, occ, until)
                self._recorded[key] = covered
                written += 1
        return written
