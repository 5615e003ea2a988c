"""Registry services: register, validate-then-promote, shadow, roll back, retire, and train-and-register.

Every status move is a conditional update plus a ModelStatusChange row, inside one transaction; the
partial unique index on (asset_type, kind) WHERE status = 'champion' is the final guard against two
champions, so the old champion is always demoted before the new one is promoted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max

from detection import runtime
from detection.baseline import MIN_PEERS, MODES, PEER_MODES, PER_ASSET, ROBUST_MODES, is_robust
from detection.pipeline import Pipeline
from models_registry import baseline as baselines
from models_registry import training
from models_registry.choices import ModelKind, ModelStatus, WindowLabel
from models_registry.models import RUL_UNIT_S, AssetBaseline, ModelStatusChange, ModelVersion
from models_registry.training import TrainedModel, TrainingError, jsonable
from models_registry.training_data import (
    LabelEvent,
    TrainingData,
    TrainingDataError,
    label_counts,
    load_training_windows,
)
from detection.thresholds import ThresholdRule, asset_thresholds
from models_registry.validation import ModelRejected, ValidationReport, validate_version
from plant.access import sees_all_sites_of
from plant.models import Asset, AssetType, Site

logger = logging.getLogger(__name__)

MIN_TRAINING_WINDOWS = 50  # ~8 minutes of one asset at the default 10 s step: less is no baseline
# How promote and rollback word the retirement they cause (a rollback recognises a replaced champion by it).
REPLACED_BY = "replaced by"
ROLLED_BACK = "rolled back"
__all__ = [
    "ModelRejected",
    "RegistryError",
    "TrainingError",
    "check_may_move_versions",
    "may_move_versions",
    "promote",
    "register_artifact",
    "register_trained",
    "retire",
    "rollback",
    "rollback_refusal",
    "type_and_kind",
    "shadow",
    "train_and_register",
    "training_provenance",
]


class RegistryError(Exception):
    """A status move that is not allowed in the current state (already champion, nothing to roll back...)."""


User = AbstractBaseUser


# --- registering ------------------------------------------------------------------------------------------


def register_artifact(
    *,
    name: str,
    kind: str,
    asset_type: AssetType,
    onnx_bytes: bytes,
    feature_spec: list[str],
    output_spec: dict[str, Any],
    open_threshold: float,
    clear_threshold: float,
    background: list[list[float]] | np.ndarray,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    actor: User | None = None,
    reason: str = "registered",
) -> ModelVersion:
    """Store an ONNX artifact as the next version of `name`, status candidate, with its sha256."""
    background_rows = np.asarray(background, dtype=np.float64).tolist() if len(background) else []
    sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    for attempt in range(3):
        next_version = (ModelVersion.objects.filter(name=name).aggregate(top=Max("version"))["top"] or 0) + 1
        version = ModelVersion(
            name=name,
            version=next_version,
            kind=kind,
            asset_type=asset_type,
            sha256=sha256,
            feature_spec=list(feature_spec),
            output_spec=dict(output_spec or {}),
            open_threshold=float(open_threshold),
            clear_threshold=float(clear_threshold),
            background=background_rows,
            provenance=provenance or {},
            metrics=metrics or {},
            created_by=actor if actor is not None and actor.is_authenticated else None,
        )
        version.onnx_file.save("model.onnx", ContentFile(onnx_bytes), save=False)
        try:
            with transaction.atomic():
                version.save()
                ModelStatusChange.objects.create(
                    version=version,
                    from_status="",
                    to_status=ModelStatus.CANDIDATE,
                    actor=version.created_by,
                    reason=reason,
                )
        except IntegrityError:
            # Another registration took this version number between our read and our insert.
            version.onnx_file.delete(save=False)
            if attempt == 2:
                raise
            continue
        return version
    raise AssertionError("unreachable")


def training_provenance(
    asset_type: AssetType, data: TrainingData, *, seed: int, **extra: Any
) -> dict[str, Any]:
    """What a training run used — range, assets, roles, window geometry, seed — plus the caller's `extra`
    (window counts, the retrain report); the one provenance of train_model and retraining alike."""
    return {
        "data_range": {"start": data.start.isoformat(), "end": data.end.isoformat()},
        "asset_type": asset_type.slug,
        "assets": data.assets,
        "roles": data.roles,
        # Assets left out for want of a sensor of the role set (tag -> roles), said rather than skipped.
        **({"excluded_assets": data.excluded} if data.excluded else {}),
        "window_s": asset_type.window_s,
        "step_s": asset_type.step_s,
        "seed": seed,
        **extra,
    }


def register_trained(
    trained: TrainedModel,
    *,
    name: str,
    asset_type: AssetType,
    provenance: dict[str, Any],
    actor: User | None = None,
    baseline_info: dict[str, Any] | None = None,
    asset_thresholds: dict[int, Any] | None = None,
) -> ModelVersion:
    """Register the output of models_registry.training as a candidate version. With `baseline_info` (from
    baseline_training_windows) the version is marked as fed per-asset baselined windows of that mode, so
    the scorer and explanations apply the same step; `asset_thresholds` (asset id -> AssetThresholds from
    its training hold-out, ``asset_holdout_thresholds``) are stored with the version, each tied to the
    calibration the asset's windows were standardised with."""
    if baseline_info is not None:
        provenance = {**provenance, "baseline": baseline_info}
        trained.output_spec = {**trained.output_spec, "baseline": baseline_info.get("mode", PER_ASSET)}
        if baseline_info.get("peers"):
            trained.output_spec["peers"] = baseline_info["peers"]
    provenance = {
        **provenance,
        "params": getattr(trained, "params", None) or {},
        "library_versions": getattr(trained, "library_versions", None) or {},
    }
    with transaction.atomic():
        version = register_artifact(
            name=name,
            kind=trained.kind,
            asset_type=asset_type,
            onnx_bytes=trained.onnx_bytes,
            feature_spec=list(trained.feature_names),
            output_spec=trained.output_spec,
            open_threshold=trained.open_threshold,
            clear_threshold=trained.clear_threshold,
            background=np.asarray(trained.background)[:100],
            provenance=provenance,
            metrics=jsonable(trained.metrics),
            actor=actor,
            reason="trained",
        )
        calibrations = (baseline_info or {}).get("calibration_ids", {})
        for asset_id, found in (asset_thresholds or {}).items():
            row = AssetBaseline.objects.filter(pk=calibrations.get(asset_id)).first()
            baselines.store_thresholds(asset_id, version, found, row, actor=actor)
    return version


# --- status moves -----------------------------------------------------------------------------------------


def may_move_versions(user: Any, asset_type: AssetType | int) -> bool:
    """Whether `user` may change which versions of `asset_type` run (promote, shadow, roll back, retire).

    A move changes what every site with assets of that type runs, so besides the registry's change
    permission (engineers) the user must be a member of every such site; superusers always may.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if not user.has_perm("models_registry.change_modelversion"):  # always true for a superuser
        return False
    return sees_all_sites_of(user, Site.objects.filter(assets__asset_type=asset_type))


def check_may_move_versions(actor: User | None, asset_type: AssetType | int) -> None:
    """Raise PermissionDenied unless `actor` may move versions of `asset_type`; no actor means an operator
    (management commands, seeding), who is trusted."""
    if actor is not None and not may_move_versions(actor, asset_type):
        raise PermissionDenied(
            "changing the running version of an asset type needs an engineer who is a member of every "
            "site with assets of that type"
        )


def _move(version: ModelVersion, to_status: str, *, actor: User | None, reason: str) -> None:
    """Compare-and-set the status and write the history row; the caller holds the transaction."""
    from_status = version.status
    changed = ModelVersion.objects.filter(pk=version.pk, status=from_status).update(status=to_status)
    if changed != 1:
        raise RegistryError(f"{version} changed status concurrently; reload and try again")
    version.status = to_status
    ModelStatusChange.objects.create(
        version=version,
        from_status=from_status,
        to_status=to_status,
        actor=actor if actor is not None and actor.is_authenticated else None,
        reason=reason[:300],
    )


def _locked(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.select_for_update().get(pk=version.pk)


def promote(
    version: ModelVersion, *, actor: User | None = None, reason: str = "", shadow: bool = False
) -> ValidationReport:
    """Validate `version`, then make it the champion of its (asset type, kind) — or a shadow.

    Raises ModelRejected (naming the failed check) before anything changes, so the current champion
    keeps running; RegistryError when the move makes no sense (already champion, champion → shadow);
    PermissionDenied when `actor` may not move versions of the type (see may_move_versions).
    The old champion, if any, is retired in the same transaction, before the new one is promoted.
    """
    check_may_move_versions(actor, version.asset_type_id)
    report = validate_version(version)
    target = ModelStatus.SHADOW if shadow else ModelStatus.CHAMPION
    try:
        with transaction.atomic():
            current = _locked(version)
            if current.status == target:
                raise RegistryError(f"{current} is already {current.get_status_display().lower()}")
            if shadow and current.status == ModelStatus.CHAMPION:
                raise RegistryError(
                    f"{current} is the champion; promote or roll back to another version first"
                )
            if not shadow:
                champions = ModelVersion.objects.select_for_update().filter(
                    asset_type_id=current.asset_type_id, kind=current.kind, status=ModelStatus.CHAMPION
                )
                for old in champions:
                    _move(
                        old,
                        ModelStatus.RETIRED,
                        actor=actor,
                        reason=f"{REPLACED_BY} {current}: {reason}".strip(),
                    )
            _move(current, target, actor=actor, reason=reason)
    except IntegrityError:
        # Two promotions raced past each other's locks; the partial unique index refused the second one.
        raise RegistryError(
            f"another version of {type_and_kind(version.asset_type, version.kind)} became champion concurrently; "
            "try again"
        ) from None
    version.status = target
    logger.info("model %s → %s by %s (%s)", version, target, actor or "the system", reason)
    return report


def shadow(version: ModelVersion, *, actor: User | None = None, reason: str = "") -> ValidationReport:
    """Validate and run `version` in shadow: it scores alongside the champion but raises no alerts."""
    return promote(version, actor=actor, reason=reason, shadow=True)


def current_champion(asset_type: AssetType, kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(asset_type=asset_type, kind=kind, status=ModelStatus.CHAMPION).first()


def previous_champion(
    asset_type: AssetType, kind: str, *, exclude: ModelVersion | None
) -> ModelVersion | None:
    """The champion a rollback of `exclude` (the current champion) would bring back, or None.

    The history is replayed as a stack: a version that becomes champion is pushed, a champion rolled back
    is popped (the version it goes back to is then on top again). So after v1 → v2 and a rollback to v1,
    the target is the champion v1 replaced, never v2, which was just rolled back away from.
    """
    stack: list[ModelVersion] = []
    for change in (
        ModelStatusChange.objects.filter(version__asset_type=asset_type, version__kind=kind)
        .select_related("version")
        .order_by("at", "id")
    ):
        if change.to_status == ModelStatus.CHAMPION and (not stack or stack[-1] != change.version):
            stack.append(change.version)
        elif (
            change.from_status == ModelStatus.CHAMPION
            and change.reason.startswith(f"{ROLLED_BACK}:")
            and stack
            and stack[-1] == change.version
        ):
            stack.pop()
    while stack and stack[-1] == exclude:
        stack.pop()
    return stack[-1] if stack else None


def type_and_kind(asset_type: AssetType, kind: str) -> str:
    """An asset type and model kind as people read them ("Centrifugal pump / Anomaly detector"), for the
    messages the compare page, the console and the command line share."""
    label = ModelKind(kind).label if kind in ModelKind.values else kind
    return f"{asset_type.name} / {label}"


def rollback_refusal(champion: ModelVersion, previous: ModelVersion | None) -> str:
    """Why the champion cannot be rolled back to `previous` (previous_champion), or "" when it can.

    A rollback undoes the last change of champion, so its target is the version that change retired: a
    version retired on purpose (`retire`, e.g. a bad model taken out of use) or quarantined after a
    run-time failure is not brought back by a rollback; an engineer promotes it explicitly if they mean to.
    """
    label = type_and_kind(champion.asset_type, champion.kind)
    if previous is None:
        return f"{label} has no previous champion to roll back to ({champion} was its first champion)"
    if previous.quarantined_at is not None:
        return f"the previous champion {previous} is quarantined after a run-time failure"
    last = previous.history.order_by("-at", "-id").first()
    replaced = (
        previous.status == ModelStatus.RETIRED
        and last is not None
        and last.from_status == ModelStatus.CHAMPION
        and last.reason.startswith(f"{REPLACED_BY} {champion}:")
    )
    if not replaced:
        return f"the previous champion {previous} was retired on purpose, not replaced by {champion}"
    return ""


def rollback(
    asset_type: AssetType, kind: str, *, actor: User | None = None, reason: str = ""
) -> ModelVersion:
    """Retire the current champion and bring back the previous one (validated first), in one transaction.

    RegistryError when there is nothing a rollback may bring back (see rollback_refusal)."""
    check_may_move_versions(actor, asset_type)
    champion = current_champion(asset_type, kind)
    label = type_and_kind(asset_type, kind)
    if champion is None:
        raise RegistryError(f"{label} has no champion to roll back")
    previous = previous_champion(asset_type, kind, exclude=champion)
    if refusal := rollback_refusal(champion, previous):
        raise RegistryError(refusal)
    assert previous is not None
    validate_version(previous)  # a damaged previous artifact must not replace a working champion
    with transaction.atomic():
        locked_champions = list(
            ModelVersion.objects.select_for_update().filter(
                asset_type=asset_type, kind=kind, status=ModelStatus.CHAMPION
            )
        )
        if [item.pk for item in locked_champions] != [champion.pk]:
            raise RegistryError(f"the champion of {label} changed concurrently; reload and try again")
        target = _locked(previous)
        _move(
            locked_champions[0], ModelStatus.RETIRED, actor=actor, reason=f"{ROLLED_BACK}: {reason}".strip()
        )
        _move(target, ModelStatus.CHAMPION, actor=actor, reason=f"rollback from {champion}: {reason}".strip())
    logger.info("model %s rolled back to %s by %s (%s)", champion, target, actor or "the system", reason)
    return target


def retire(version: ModelVersion, *, actor: User | None = None, reason: str = "") -> None:
    """Take a version out of use (retiring the champion leaves its asset type without one)."""
    check_may_move_versions(actor, version.asset_type_id)
    with transaction.atomic():
        current = _locked(version)
        if current.status == ModelStatus.RETIRED:
            raise RegistryError(f"{current} is already retired")
        _move(current, ModelStatus.RETIRED, actor=actor, reason=reason)
    version.status = ModelStatus.RETIRED


# --- training ---------------------------------------------------------------------------------------------


def train_and_register(
    asset_type: AssetType,
    kind: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    name: str | None = None,
    actor: User | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    baseline: str | None = None,
    asset_ids: Collection[int] | None = None,
    rul_unit_s: float = RUL_UNIT_S,
    roles: Collection[str] | None = None,
    peers: str | None = None,
) -> ModelVersion:
    """Train a model of `kind` on the readings and labels of all active assets of `asset_type` and
    register it as a candidate. The one entry point of `manage.py train_model` and `train_model_task`.

    anomaly: learns from windows not overlapping a fault label (works with no labels at all); fault
    windows, if any, plus a fifth of the normal ones, form its validation split.
    failure_classifier: fault-labelled windows are positives, all others negatives (unlabelled time is
    taken as normal operation, which is what the plant believes of it until someone says otherwise).
    rul: a run-to-failure fleet — each fault label is a failure; a window's target is the time (in units
    of `rul_unit_s` seconds, hours by default) from its end to its asset's next failure (fit_rul).

    asset_ids: only these assets of the type (default every active one), e.g. to hold a run out.

    roles: the sensor roles the model reads (its feature_spec holds only their features). Default: the
    roles every active asset with all its type's required roles has, so the model scores all of them.
    Assets without a sensor for a role of the set are left out of training and named in the provenance
    (``excluded_assets``); none left is a TrainingError naming each asset and its missing roles.

    baseline="per_asset": every asset's windows are fed minus its baseline (models_registry.baseline: its
    current one, else calibrated now from its first VIGIL_BASELINE_WINDOWS windows, as the scorer would),
    and the version's output_spec says so, so the scorer and explanations subtract the same vector. Assets
    with too little data for a baseline are left out of training and named in the provenance.

    baseline="per_asset_robust": the same with each asset's robust calibration (median / robust scale), and
    for an anomaly model the last holdout_fraction of EVERY asset's normal windows is the trainer's hold-out,
    so each asset's own thresholds are set from scores of its windows the model was not fitted on
    (detection.thresholds.asset_thresholds, the version's rule and budget; too few give the version's)
    and stored with the version (models_registry.AssetThreshold).

    baseline="per_asset_pooled": the same as "per_asset_robust" except how a calibration is made: each
    asset's own robust calibration with its scale pooled with its fleet's (detection.baseline.pooled). The
    training assets without a current pooled calibration calibrate together from their first windows and
    are pooled together and with the assets that have one (their stored own scales,
    models_registry.baseline.pool_with_fleet); existing calibrations are used as they are.

    peers="median" (with baseline="per_asset_robust" or "per_asset_pooled"): every asset's windows are fed relative to its peer
    group's median change at the same window end (detection.baseline.peer_relative; the peer group is the
    assets of the type on its site), and the version's output_spec says so, so the scorer does the same.
    For assets that share load, speed or surroundings (bearings on one shaft, pumps on one header), whose
    common changes are then not alerts; windows with fewer than MIN_PEERS peers are not used.
    """
    if kind not in ModelKind.values:
        raise TrainingError(f"unknown model kind {kind!r}; choose one of {', '.join(ModelKind.values)}")
    if start and end and start >= end:
        raise TrainingError("the training range is empty: start must be before end")
    if name:
        check_model_name(name)
    if baseline not in (None, "", *MODES):
        raise TrainingError(f"unknown baseline mode {baseline!r}; choose one of {', '.join(MODES)}")
    if peers not in (None, "", *PEER_MODES):
        raise TrainingError(f"unknown peer step {peers!r}; choose one of {', '.join(PEER_MODES)}")
    if peers and not is_robust(baseline):
        raise TrainingError(
            f"the peer step compares robust calibrations: it needs baseline {' or '.join(ROBUST_MODES)}"
        )
    try:
        data = load_training_windows(asset_type, start=start, end=end, asset_ids=asset_ids, roles=roles)
    except TrainingDataError as exc:
        raise TrainingError(str(exc)) from None
    baseline_info = baseline_training_windows(data, baseline, peers or None) if baseline else None
    robust = is_robust(baseline)

    complete = np.isfinite(data.X).all(axis=1)
    # Time order across assets, so the trainer's "last part" hold-out is the most recent data of all assets;
    # a robust version holds out the last part of each asset instead (asset_holdout_order).
    order = np.argsort(data.ends[complete], kind="stable")
    X, labels = data.X[complete][order], data.labels[complete][order]
    groups = data.asset_ids[complete][order]
    asset_found: dict[int, Any] | None = None
    if len(X) < MIN_TRAINING_WINDOWS:
        raise TrainingError(
            f"only {len(X)} complete feature windows for {asset_type.slug!r} "
            f"(need at least {MIN_TRAINING_WINDOWS}); load more readings or widen the range"
        )
    rng = np.random.default_rng(seed)
    split: dict[str, int] = {}
    extra: dict[str, Any] = {}
    if kind == ModelKind.ANOMALY:
        normal_idx = np.flatnonzero(labels != WindowLabel.FAULT)
        fault_idx = np.flatnonzero(labels == WindowLabel.FAULT)
        if len(normal_idx) < MIN_TRAINING_WINDOWS:
            raise TrainingError(
                f"only {len(normal_idx)} windows without a fault label (need {MIN_TRAINING_WINDOWS}) "
                "to learn normal behaviour"
            )
        X_val = y_val = None
        train_idx = normal_idx
        if len(fault_idx):
            shuffled = rng.permutation(normal_idx)
            held = shuffled[: max(1, len(shuffled) // 5)]
            train_idx = np.sort(shuffled[len(held) :])
            X_val = np.concatenate([X[held], X[fault_idx]])
            y_val = np.concatenate(
                [np.zeros(len(held), dtype=np.int64), np.ones(len(fault_idx), dtype=np.int64)]
            )
        split = {"train": len(train_idx), "validation": 0 if X_val is None else len(X_val)}
        fit_params = window_params(params, asset_type)
        if robust:
            train_idx, fit_params, holdout = asset_holdout_order(train_idx, groups, fit_params)
        trained = training.train_anomaly(
            X[train_idx], data.feature_names, params=fit_params, X_val=X_val, y_val=y_val
        )
        if robust:
            asset_found = asset_holdout_thresholds(trained, X[holdout], groups[holdout], asset_type)
    elif kind == ModelKind.FAILURE_CLASSIFIER:
        y = (labels == WindowLabel.FAULT).astype(np.int64)
        if not y.any():
            raise TrainingError(
                f"no fault labels on assets of type {asset_type.slug!r} in the range; "
                "a failure classifier needs labelled faults (train an anomaly model instead)"
            )
        split = {"train": len(y)}
        trained = training.train_failure_classifier(X, y, data.feature_names, params=params)
    else:
        ends, groups = data.ends[complete][order], data.asset_ids[complete][order]
        trained, fit, _ = fit_rul(
            X, ends, groups, data.events, data.feature_names, data_end_s=data.end.timestamp(),
            params=params, unit_s=rul_unit_s, what=asset_type.slug,
        )  # fmt: skip
        split = {"train": fit["rows"]}
        extra["rul"] = {key: value for key, value in fit.items() if key != "rows"}

    provenance = training_provenance(
        asset_type,
        data,
        seed=seed,
        windows={"total": len(data.X), "complete": int(complete.sum()), **split},
        label_counts={"windows": label_counts(labels), "label_rows": data.label_rows},
        **extra,
    )
    return register_trained(
        trained,
        name=name or f"{asset_type.slug}-{kind}",
        asset_type=asset_type,
        provenance=provenance,
        actor=actor,
        baseline_info=baseline_info,
        asset_thresholds=asset_found,
    )


def check_model_name(name: str) -> str:
    """``name`` if ModelVersion.name takes it (a slug of at most 80 characters: it is also the artifact's
    folder); a TrainingError saying why otherwise."""
    try:
        ModelVersion._meta.get_field("name").clean(name, None)
    except ValidationError as exc:
        raise TrainingError(f"model name {name[:90]!r}: {' '.join(exc.messages)}") from None
    return name


def window_params(params: dict[str, Any] | None, asset_type: AssetType) -> dict[str, Any] | None:
    """``params`` with the asset type's window length and step added when its threshold rule reads them
    (open_rule "episodes" states its false-alert budget in days, so it needs the windows' step)."""
    if not params or params.get("open_rule") != "episodes":
        return params
    return {"window_s": float(asset_type.window_s), "step_s": float(asset_type.step_s), **params}


def asset_holdout_order(
    train_idx: np.ndarray, groups: np.ndarray, params: dict[str, Any] | None
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Reorder the training rows (time order) so the last ``holdout_fraction`` of EVERY asset's rows come
    last, which is what the trainer holds out: returns (rows, params with that fraction, held-out rows)."""
    fraction = float({**training.ANOMALY_DEFAULTS, **(params or {})}["holdout_fraction"])
    fits, holds = [], []
    for asset_id in np.unique(groups[train_idx]):
        mine = train_idx[groups[train_idx] == asset_id]
        n_hold = max(1, int(round(len(mine) * fraction)))
        fits.append(mine[: len(mine) - n_hold])
        holds.append(mine[len(mine) - n_hold :])
    held = np.concatenate(holds)
    rows = np.concatenate([*fits, held])
    return rows, {**(params or {}), "holdout_fraction": len(held) / len(rows)}, held


def asset_holdout_thresholds(
    trained: TrainedModel, X_hold: np.ndarray, groups: np.ndarray, asset_type: AssetType
) -> dict[int, Any]:
    """asset id -> its thresholds from the model's scores of its held-out rows (already standardised by its
    calibration), by the version's rule (models_registry.baseline.thresholds_from_scores' rule)."""
    session = runtime.load_session(trained.onnx_bytes)
    scores = runtime.run_batch(session, X_hold, trained.output_spec)
    rule = ThresholdRule.from_params(trained.params)
    version = (trained.open_threshold, trained.clear_threshold)
    overlap = baselines.overlap(asset_type)
    return {
        int(asset_id): asset_thresholds(scores[groups == asset_id], rule, version, overlap=overlap)
        for asset_id in np.unique(groups)
    }


def fit_rul(
    X: np.ndarray,
    ends: np.ndarray,
    asset_ids: np.ndarray,
    events: list[LabelEvent],
    names: list[str],
    *,
    data_end_s: float,
    params: dict[str, Any] | None,
    unit_s: float,
    what: str,
    rows: np.ndarray | None = None,
) -> tuple[TrainedModel, dict[str, Any], np.ndarray]:
    """Fit a RUL model on the windows (of `rows`, default all) whose remaining life the fault labels (the
    failures) make known: the windows before a failure of their asset, and those far enough before the end
    of the data to prove the capped life (models_registry.training.rul_targets). Returns the model, what
    it was fitted on and every window's target (NaN: unknown)."""
    failures: dict[int, list[tuple[float, float]]] = {}
    for event in events:
        if event.positive:
            failures.setdefault(event.asset_id, []).append((event.start_s, event.end_s))
    if not failures:
        raise TrainingError(
            f"no fault labels on assets of type {what!r} in the range; a remaining-useful-life model needs "
            "failures to count down to (label each run's failure first)"
        )
    cap = float((params or {}).get("rul_cap", training.RUL_DEFAULTS["rul_cap"]))
    rul = training.rul_targets(ends, asset_ids, failures, data_end_s=data_end_s, unit_s=unit_s, cap=cap)
    known = np.isfinite(rul)
    fit = known if rows is None else known & rows
    trained = training.train_rul(X[fit], rul[fit], names, params=params)
    info = {
        "rows": int(fit.sum()),
        "unit_s": float(unit_s),
        "failures": sum(len(ranges) for ranges in failures.values()),
        "censored_windows": int((~known).sum()),
    }
    return trained, info, rul


def baseline_training_windows(
    data: TrainingData, mode: str = PER_ASSET, peers: str | None = None
) -> dict[str, Any]:
    """Apply each asset's baseline of `mode` to its training windows (the pipeline's baseline step,
    detection.pipeline: minus its mean vector, or standardised by its robust calibration; with ``peers``
    relative to its site's peers, detection.baseline.peer_relative), dropping the windows of assets without
    one (and, with peers, those at an end with too few peers)."""
    names = list(data.feature_names)
    asset_ids = [int(pk) for pk in np.unique(data.asset_ids)]
    rows = baselines.current_baselines(asset_ids, names, mode)
    assets = {
        asset.pk: asset for asset in Asset.objects.filter(pk__in=asset_ids).select_related("asset_type")
    }
    used: dict[str, Any] = {}
    skipped: list[str] = []
    vectors: dict[int, Any] = {}
    ids: dict[int, int] = {}
    # The assets without one calibrate together (a pooled fleet is pooled together, as the evaluations do).
    missing = [assets[asset_id] for asset_id in asset_ids if asset_id not in rows]
    rows.update(baselines.auto_calibrate_many(missing, names, mode=mode) if missing else {})
    for asset_id in asset_ids:
        row = rows.get(asset_id)
        if row is None:
            skipped.append(assets[asset_id].tag)
            continue
        vectors[asset_id] = baselines.as_step(row, names)
        ids[asset_id] = row.pk
        used[assets[asset_id].tag] = {
            "baseline_id": row.pk,
            "source": row.source,
            "start": row.start.isoformat(),
            "end": row.end.isoformat(),
            "windows": row.window_count,
        }
    if not used:
        raise TrainingError(
            "no asset has a baseline or enough windows to calibrate one "
            f"({settings.VIGIL_BASELINE_WINDOWS} complete windows each); calibrate one with "
            "manage.py calibrate_baseline"
        )
    if peers:
        sites = {pk: assets[pk].site_id for pk in vectors}
        data.X, keep = Pipeline.peer_rows(data.X, data.asset_ids, data.ends, vectors, sites)
    else:
        data.X, keep = Pipeline.baseline_rows(data.X, data.asset_ids, vectors)
    for name in ("X", "labels", "ends", "asset_ids"):
        setattr(data, name, getattr(data, name)[keep])
    if peers and not keep.any():
        raise TrainingError(
            f"no training window has {MIN_PEERS} assets of the type on one site at the same time; the peer "
            "step needs a peer group"
        )
    info = {"mode": mode, "assets": used, "skipped_without_baseline": skipped, "calibration_ids": ids}
    return {**info, "peers": peers} if peers else info
