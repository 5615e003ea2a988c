"""Training data from the database: readings of every active asset of a type → labelled feature windows.

The ORM is read once here (one range query per sensor over the (sensor, ts) index, plus the labels);
everything after that is NumPy, through detection.features — the same feature code the scorer and the edge
runner use.
"""

from __future__ import annotations

from collections.abc import Collection

from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

import numpy as np
from django.db.models import Max, Min

from detection import features
from detection.features import Windows
from detection.pipeline import RAW_READINGS, Pipeline
from models_registry.choices import ModelKind, WindowLabel
from plant.choices import LabelKind
from plant.models import Asset, AssetType, Label, Reading, Sensor, no_sensor_for
from plant.series import load_series, role_sensors

# Readings further apart than this (or than a window) start a new stretch: training windows are built per
# stretch, so a stray reading years before the rest (a ts=0 from a gateway without a clock) costs no empty
# windows in between and moves no window; the window count is that of the data, not of the calendar span.
STRETCH_GAP_S = 86400.0


class TrainingDataError(Exception):
    """The data cannot train a model (no readings, no windows); the message says what is missing."""


# A LabelEvent's ``source`` in words: the comparison's verdicts and the training report's label counts.
VERDICT_LABELS = {
    "confirmed_fault": "Confirmed fault",
    "missed_failure": "Reported missed failure",
    "manual_fault": "Fault (labelled by hand)",
    "false_alarm": "False alarm",
    "manual_normal": "Normal (labelled by hand)",
    "not_actionable": "Not actionable",
    "excluded": "Faulty sensor's readings (left out)",
    "": "No verdict",
}


def source_words(source: str) -> str:
    return VERDICT_LABELS.get(source, source.replace("_", " "))


def fault_type_words(fault_type: str, asset_type: AssetType) -> str:
    """A label's fault type in words. A verdict's label says "<what raised the alert>:<role>"
    (alerts.services.feedback.fault_type_of: "anomaly:bearing_temp", "sensor:flow"): the role by the asset
    type's name for it ("bearing temperature"), a sensor's fault as one ("flow sensor"); any other type as
    written, in words ("bearing_wear" → "bearing wear")."""
    raised_by, _, role = fault_type.partition(":")
    if not role or (raised_by != "sensor" and raised_by not in ModelKind.values):
        return reason_words(fault_type)
    name = asset_type.roles.filter(key=role).values_list("label", flat=True).first() or reason_words(role)
    if not name[:2].isupper():  # "Bearing temperature" mid-sentence, but "RPM" as it is
        name = name[:1].lower() + name[1:]
    return f"{name} sensor" if raised_by == "sensor" else name


def reason_words(reason: str) -> str:
    """A false alarm's reason key or a label's fault type in words ("normal_operating_change" → "normal
    operating change", "bearing_wear" → "bearing wear")."""
    return reason.replace("_", " ")


@dataclass(frozen=True)
class LabelEvent:
    """One label on an asset's time range (positive: a fault), as training and retraining read it."""

    label_id: int
    asset_id: int
    start_s: float
    end_s: float
    positive: bool
    source: (
        str  # confirmed_fault, not_actionable, missed_failure, false_alarm, manual_fault, manual_normal...
    )
    reason: str = ""  # why a range is normal (the false-alarm reason)
    excluded: bool = False  # a faulty sensor's readings (LabelKind.EXCLUDED): its windows are left out


@dataclass
class TrainingData:
    """Feature windows of all assets of one type, with a WindowLabel per window and the labels behind them."""

    X: np.ndarray
    labels: np.ndarray
    ends: np.ndarray
    asset_ids: np.ndarray
    feature_names: list[str]
    roles: list[str]
    start: datetime
    end: datetime
    assets: list[str] = field(default_factory=list)
    label_rows: dict[str, int] = field(default_factory=dict)
    events: list[LabelEvent] = field(default_factory=list)
    # Active assets left out because they have no sensor for a role of the set: tag -> missing roles.
    excluded: dict[str, list[str]] = field(default_factory=dict)

    def excluded_text(self) -> str:
        """The excluded assets in words ("" when none), for the command's output and the provenance."""
        return "; ".join(no_sensor_for(tag, missing) for tag, missing in self.excluded.items())

    def counts(self) -> dict[str, int]:
        return label_counts(self.labels)


def label_counts(labels: np.ndarray) -> dict[str, int]:
    """How many windows of each class (fault / normal / unlabelled) `labels` holds."""
    return {
        "fault": int(np.count_nonzero(labels == WindowLabel.FAULT)),
        "normal": int(np.count_nonzero(labels == WindowLabel.NORMAL)),
        "unlabelled": int(np.count_nonzero(labels == WindowLabel.UNLABELLED)),
    }


def asset_windows_between(
    asset: Asset, roles: list[str], start: datetime, end: datetime, pipeline: Pipeline | None = None
) -> Windows:
    """The asset's production feature windows over [start, end], built as the scorer builds them: through
    the version's ``pipeline`` windows step (its regime step, if any; default: raw readings), from its
    sensors by ``role_sensors``, each role's declared sample period for the gap rules. A role the asset has
    no sensor for is absent (NaN columns; the windows complete for the roles it has are kept), the
    scorer's rule for optional sensors."""

    sensor_roles, periods = role_sensors(asset, roles)
    return (pipeline or RAW_READINGS).asset_windows(
        load_series(sensor_roles, start, end),
        roles,
        window_s=float(asset.asset_type.window_s),
        step_s=float(asset.asset_type.step_s),
        start_s=start.timestamp(),
        end_s=end.timestamp(),
        sample_period_s=periods,
        absent_roles=[role for role in roles if role not in periods],
    )


def label_windows(
    ends: np.ndarray,
    asset_ids: np.ndarray,
    window_s: float,
    events: list[LabelEvent],
    *,
    guard_windows: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per window (end − window_s, end] of asset `asset_ids[i]`: its WindowLabel and the index of the event
    that gave it (-1: none). FAULT where it overlaps a positive event of its asset, else NORMAL where it
    overlaps a normal one, else UNLABELLED — or GUARD when within `guard_windows` windows of a positive,
    where a fault builds up or fades without anyone having labelled it."""
    classes = np.full(len(ends), WindowLabel.UNLABELLED, dtype=np.int8)
    event_of = np.full(len(ends), -1, dtype=np.int64)
    starts = ends - window_s
    guard = guard_windows * window_s
    for positive in (False, True):  # positives last, so they override
        for index, event in enumerate(events):
            if event.positive != positive or event.excluded:
                continue
            mine = asset_ids == event.asset_id
            if positive and guard:
                near = mine & (event.start_s - guard < ends) & (event.end_s + guard > starts)
                classes[near & (classes == WindowLabel.UNLABELLED)] = WindowLabel.GUARD
            overlap = mine & (event.start_s < ends) & (event.end_s > starts)
            classes[overlap] = WindowLabel.FAULT if positive else WindowLabel.NORMAL
            event_of[overlap] = index
    for event in events:  # last: a window with a faulty sensor's readings says nothing of the machine
        if event.excluded:
            overlap = (asset_ids == event.asset_id) & (event.start_s < ends) & (event.end_s > starts)
            classes[overlap], event_of[overlap] = WindowLabel.GUARD, -1
    return classes, event_of


def _stretch_windows(
    asset: Asset, series: dict[str, tuple], roles: list[str], start_s: float, end_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ends float64, X float32) of the windows in [start_s, end_s] that lie wholly within a stretch of the
    asset's readings (from its first reading to its last; stretches split at gaps over STRETCH_GAP_S), one
    build_windows call per stretch, each role's sample period inferred from all its readings as one call
    would. Raises TrainingDataError, naming the span and the limit, when the readings would make more
    than detection.features.MAX_WINDOWS windows, before building any."""
    window_s, step_s = float(asset.asset_type.window_s), float(asset.asset_type.step_s)
    periods = {role: features._period(role, ts, None) for role, (ts, _, _) in series.items()}
    stamps = np.unique(np.concatenate([ts for ts, _, _ in series.values()]))
    breaks = np.flatnonzero(np.diff(stamps) > max(STRETCH_GAP_S, window_s))
    stretches = [
        (max(start_s, stamps[lo]), min(end_s, stamps[hi]))
        for lo, hi in zip(np.r_[0, breaks + 1].tolist(), np.r_[breaks, len(stamps) - 1].tolist())
    ]
    count = sum(max(0, int((hi - lo - window_s) // step_s) + 1) for lo, hi in stretches)
    if count > features.MAX_WINDOWS:
        first, last = (datetime.fromtimestamp(stamps[i], tz=dt_timezone.utc) for i in (0, -1))
        raise TrainingDataError(
            f"the readings of {asset.tag} from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC make "
            f"about {count:,} feature windows, more than the {features.MAX_WINDOWS:,} a training run may "
            "build; choose a later start (or an earlier end)"
        )
    ends, X = [], []
    for lo, hi in stretches:
        part = {
            role: tuple(column[(ts > lo) & (ts <= hi)] for column in (ts, values, quality))
            for role, (ts, values, quality) in series.items()
        }
        windows = features.build_windows(
            part, roles, window_s=window_s, step_s=step_s, start_s=lo, end_s=hi, sample_period_s=periods
        )
        ends.append(np.asarray(windows.ends, dtype=np.float64))
        X.append(np.asarray(windows.X, dtype=np.float32))
    return np.concatenate(ends), np.concatenate(X)


def training_role_set(
    asset_type: AssetType, role_keys: dict[int, set[str]], tags: dict[int, str], roles: Collection[str] | None
) -> tuple[list[str], dict[int, list[str]]]:
    """The roles a model is trained on and the assets left out (asset id -> the roles of the set it has no
    sensor for), given each candidate asset's sensor roles.

    ``roles`` given: that set (in the type's order); every asset lacking one of them is left out. Default:
    assets without a sensor for a required role are left out, and the set is the roles every remaining
    asset has, i.e. what one model can score on all of them. TrainingDataError names the problem (an
    unknown role, no asset left, no role shared)."""
    type_roles = list(asset_type.roles.order_by("key").values_list("key", "required"))
    if not type_roles:
        raise TrainingDataError(f"asset type {asset_type.slug!r} has no sensor roles")
    keys = [key for key, _ in type_roles]
    if roles is not None:
        unknown = sorted(set(roles) - set(keys))
        if unknown or not roles:
            raise TrainingDataError(
                f"asset type {asset_type.slug!r} has no role {', '.join(unknown) or '(none given)'}; "
                f"its roles are {', '.join(keys)}"
            )
        chosen = [key for key in keys if key in set(roles)]
    else:
        chosen = [key for key, required in type_roles if required]
    excluded = {
        pk: [key for key in chosen if key not in have]
        for pk, have in role_keys.items()
        if not have >= set(chosen)
    }
    kept = [pk for pk in role_keys if pk not in excluded]
    if not kept:
        raise TrainingDataError(
            f"no active asset of type {asset_type.slug!r} has a sensor for every role of the set "
            f"{', '.join(chosen)}: "
            + "; ".join(no_sensor_for(tags[pk], missing) for pk, missing in excluded.items())
        )
    if roles is None:
        chosen = [key for key in keys if all(key in role_keys[pk] for pk in kept)]
        if not chosen:
            raise TrainingDataError(
                f"the active assets of type {asset_type.slug!r} share no sensor role; choose the roles "
                "(train_model --roles) and the assets that have them are used"
            )
    return chosen, excluded


def load_training_windows(
    asset_type: AssetType,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    asset_ids: Collection[int] | None = None,
    roles: Collection[str] | None = None,
) -> TrainingData:
    """Windows and labels for every active asset of the type over [start, end] (default: all readings), built
    where the readings are (``_stretch_windows``); ``asset_ids`` narrows it to those assets (e.g. to hold a
    run out of training). The features are those of the role set ``training_role_set`` picks (``roles``, by
    default the roles every asset with its required ones has); assets without a sensor for one of them
    are left out and listed in ``TrainingData.excluded``."""

    chosen = Asset.objects.filter(asset_type=asset_type, is_active=True)
    if asset_ids is not None:
        chosen = chosen.filter(pk__in=list(asset_ids))
    assets = list(chosen.order_by("pk"))
    if not assets:
        if not asset_type.roles.exists():
            raise TrainingDataError(f"asset type {asset_type.slug!r} has no sensor roles")
        raise TrainingDataError(f"asset type {asset_type.slug!r} has no active assets")
    sensors_by_asset: dict[int, dict[int, str]] = {asset.pk: {} for asset in assets}
    for sensor_id, asset_id, role in (
        Sensor.objects.filter(asset__in=assets).order_by("pk").values_list("pk", "asset_id", "role__key")
    ):
        roles_taken = sensors_by_asset[asset_id]
        if role not in roles_taken.values():  # one sensor per role; a spare sensor does not double a feature
            roles_taken[sensor_id] = role
    roles, left_out = training_role_set(
        asset_type,
        {pk: set(mapping.values()) for pk, mapping in sensors_by_asset.items()},
        {asset.pk: asset.tag for asset in assets},
        roles,
    )
    excluded = {asset.tag: left_out[asset.pk] for asset in assets if asset.pk in left_out}
    assets = [asset for asset in assets if asset.pk not in left_out]
    sensors_by_asset = {
        asset.pk: {sid: role for sid, role in sensors_by_asset[asset.pk].items() if role in roles}
        for asset in assets
    }
    all_sensors = [sensor_id for mapping in sensors_by_asset.values() for sensor_id in mapping]
    span = Reading.objects.filter(sensor_id__in=all_sensors)
    if start is not None:
        span = span.filter(ts__gte=start)
    if end is not None:
        span = span.filter(ts__lte=end)
    bounds = span.aggregate(first=Min("ts"), last=Max("ts"))
    if bounds["first"] is None:
        where = f" between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}" if start and end else ""
        raise TrainingDataError(f"no readings for assets of type {asset_type.slug!r}{where}")
    start = start or bounds["first"]
    end = end or bounds["last"]

    label_rows = list(
        Label.objects.filter(asset__in=assets, start__lte=end, end__gte=start)
        .order_by("start", "pk")
        .values_list("pk", "asset_id", "start", "end", "kind", "source")
    )
    events = [
        LabelEvent(
            pk,
            asset_id,
            lo.timestamp(),
            hi.timestamp(),
            kind == LabelKind.FAULT,
            source,
            excluded=kind == LabelKind.EXCLUDED,
        )
        for pk, asset_id, lo, hi, kind, source in label_rows
    ]
    names = features.feature_names(roles)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    silent: list[str] = []
    for asset in assets:
        series = load_series(sensors_by_asset.get(asset.pk, {}), start, end)
        quiet = [role for role in roles if role not in series]
        if quiet:  # a sensor without a reading in the range: no window of this asset can be complete
            silent.append(
                f"{asset.tag} has no readings of role{'s' if len(quiet) > 1 else ''} {', '.join(quiet)}"
            )
            continue
        ends, X = _stretch_windows(asset, series, roles, start.timestamp(), end.timestamp())
        if len(ends) == 0:
            continue
        mine = np.full(len(ends), asset.pk, dtype=np.int64)
        parts.append((X, ends, label_windows(ends, mine, asset_type.window_s, events)[0], asset.pk))
    if not parts:
        if silent:
            raise TrainingDataError(
                f"no asset of type {asset_type.slug!r} has readings of every role of the set "
                f"{', '.join(roles)} in the range: {'; '.join(silent)}"
            )
        raise TrainingDataError(
            f"the readings of type {asset_type.slug!r} span less than one {asset_type.window_s} s window"
        )
    return TrainingData(
        X=np.concatenate([part[0] for part in parts]),
        ends=np.concatenate([part[1] for part in parts]),
        labels=np.concatenate([part[2] for part in parts]),
        asset_ids=np.concatenate([np.full(len(part[1]), part[3], dtype=np.int64) for part in parts]),
        feature_names=names,
        roles=roles,
        start=start,
        end=end,
        assets=[asset.tag for asset in assets if any(part[3] == asset.pk for part in parts)],
        label_rows={
            "fault": sum(1 for event in events if event.positive),
            "normal": sum(1 for event in events if not event.positive and not event.excluded),
        },
        events=events,
        excluded=excluded,
    )
