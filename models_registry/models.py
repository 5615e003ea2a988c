"""Model versions (an ONNX artifact with everything needed to run and trust it) and their status history."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q

from detection.baseline import is_robust
from models_registry.choices import ModelKind, ModelStatus, RetrainStatus
from plant.models import Asset, AssetType

RUL_UNIT_S = 3600.0  # RUL models count hours unless told otherwise (open below 30 h, clear above 40 h)


def onnx_upload_to(instance: ModelVersion, filename: str) -> str:
    # The checksum prefix keeps an artifact's path unique even if a version row is ever re-created.
    return f"models/{instance.name}/v{instance.version}-{(instance.sha256 or 'pending')[:12]}.onnx"


class ModelVersion(models.Model):
    """One trained model: its ONNX artifact, how to feed it, how to read it, where it came from, its status.

    The artifact and its spec are immutable once registered; only the status moves, through
    models_registry.services, and every move writes a ModelStatusChange row.
    """

    name = models.SlugField(max_length=80, help_text="Model family, e.g. pump-anomaly.")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=ModelKind.choices)
    asset_type = models.ForeignKey(AssetType, on_delete=models.PROTECT, related_name="model_versions")
    onnx_file = models.FileField(upload_to=onnx_upload_to, max_length=255)
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the ONNX file, hex.")
    feature_spec = models.JSONField(help_text="Ordered feature names: the columns of the model's input.")
    output_spec = models.JSONField(
        default=dict,
        blank=True,
        help_text='Which output is the score and its direction, e.g. {"name": "score"}.',
    )
    open_threshold = models.FloatField(help_text="Score above which an alert opens.")
    clear_threshold = models.FloatField(help_text="Score below which an open alert counts as cleared.")
    background = models.JSONField(
        default=list, blank=True, help_text="Reference rows (≤100) for validation and SHAP explanations."
    )
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Data range, label counts, parameters, library versions."
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="Offline metrics on a held-out split.")
    latency_ms = models.FloatField(
        null=True, blank=True, help_text="Median single-window latency at validation."
    )
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE)
    validated_at = models.DateTimeField(null=True, blank=True)
    quarantined_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set when the version failed at run time; scorers skip it until an engineer clears it.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_name_version"),
            # A scorer looks up "the champion" of (asset type, kind); the database guarantees there is one.
            models.UniqueConstraint(
                fields=["asset_type", "kind"],
                condition=Q(status="champion"),
                name="one_champion_per_asset_type_kind",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="model_version_positive"),
        ]
        indexes = [models.Index(fields=["asset_type", "kind", "status"])]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def status_choice(self) -> ModelStatus:
        return ModelStatus(self.status)

    @property
    def kind_choice(self) -> ModelKind:
        return ModelKind(self.kind)

    @property
    def n_features(self) -> int:
        return len(self.feature_spec or [])

    @property
    def rul_unit_s(self) -> float | None:
        """Seconds in one unit of a remaining-useful-life version's score (the unit its training counted
        the remaining life in, hours unless it says otherwise); None for the other kinds."""
        if self.kind != ModelKind.RUL:
            return None
        return float(((self.provenance or {}).get("rul") or {}).get("unit_s", RUL_UNIT_S))

    def read_onnx_bytes(self) -> bytes:
        """The stored artifact's bytes (raises OSError/ValueError if the file is missing)."""
        with self.onnx_file.open("rb") as handle:
            return handle.read()


class ModelStatusChange(models.Model):
    """One status move of a model version: from, to, who, when and why. Never updated or deleted."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="history")
    from_status = models.CharField(max_length=10, choices=ModelStatus.choices, blank=True)
    to_status = models.CharField(max_length=10, choices=ModelStatus.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        get_latest_by = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.version}: {self.from_status or '∅'} → {self.to_status}"


class IncidentKind(models.TextChoices):
    LOAD = "load", "Artifact cannot be loaded"
    INPUTS = "inputs", "Inputs do not match"
    OUTPUTS = "outputs", "Non-finite or malformed outputs"
    RUNTIME = "runtime", "Failed while running"


class ModelIncident(models.Model):
    """A run-time failure of a model version that quarantined it: what failed, when, and who cleared it."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="incidents")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=10, choices=IncidentKind.choices)
    message = models.TextField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.version}: {self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M}"


class RetrainRun(models.Model):
    """One retraining from operator feedback: what was asked, how far it got, and what it produced.

    Written by models_registry.retrain only: the task claims a queued run with a compare-and-set, moves
    ``stage``/``percent`` forward as it works (the page polls them) and ends it succeeded, with the candidate
    and its training report, or failed, with the reason in ``error``.
    """

    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="retrain_runs")
    kind = models.CharField(max_length=20, choices=ModelKind.choices)
    since = models.DateTimeField(null=True, blank=True, help_text="Use readings and labels from here on.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=RetrainStatus.choices, default=RetrainStatus.QUEUED)
    stage = models.CharField(max_length=80, default="Waiting for a worker")
    percent = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="retrain_runs"
    )
    report = models.JSONField(default=dict, blank=True, help_text="Training report of the candidate.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(percent__lte=100), name="retrain_percent_at_most_100")
        ]

    def __str__(self) -> str:
        return f"retrain #{self.pk} {self.asset_type.slug} / {self.kind} ({self.status})"

    @property
    def status_choice(self) -> RetrainStatus:
        return RetrainStatus(self.status)

    @property
    def is_finished(self) -> bool:
        return self.status_choice.is_finished


class BaselineSource(models.TextChoices):
    AUTO = "auto", "Automatic (the asset's first windows)"
    MANUAL = "manual", "Calibrated by an engineer"


def features_key(feature_names: list[str]) -> str:
    """A short, stable key of an ordered feature list, so "one current baseline per feature set" can be a
    database constraint (a JSON list cannot be in a unique index on every backend)."""
    return hashlib.sha256("\n".join(feature_names).encode()).hexdigest()[:32]


class BaselineMode(models.TextChoices):
    """The per-asset step a row calibrates (detection.baseline's modes)."""

    MEAN = "per_asset", "Operating point (mean vector)"
    ROBUST = "per_asset_robust", "Robust calibration (median and robust scale)"
    POOLED = "per_asset_pooled", "Robust calibration, scale pooled with the fleet's"


class AssetBaseline(models.Model):
    """An asset's calibration over a period: its operating point (``mode`` "per_asset": the mean feature
    vector) or its robust calibration (``mode`` "per_asset_robust": per-feature median in ``vector`` and
    robust scale in ``scale``, detection.baseline.Calibration) or its pooled one (``mode``
    "per_asset_pooled": ``scale`` is the applied scale, the asset's own robust scale pooled with its
    fleet's by detection.baseline.pooled; ``own_scale`` and ``own_span_s`` keep the asset's own scale and
    its calibration's time span, which later assets' pooling reads, so nobody is pooled with pooled scales).

    Models whose ``output_spec["baseline"]`` is ``"per_asset"`` see ``x - vector`` instead of ``x``, those
    whose is ``"per_asset_robust"`` ``(x - vector) / scale`` (models_registry.baseline), so one model serves
    pumps that run at different flows, pressures and noise levels. Rows are never edited: recalibrating
    retires the current row of that mode (``is_current`` False) and adds a new one, so every score can be
    traced to the calibration it was measured against.
    """

    asset = models.ForeignKey("plant.Asset", on_delete=models.CASCADE, related_name="baselines")
    feature_names = models.JSONField(help_text="Ordered feature names the vector covers.")
    features_key = models.CharField(max_length=32, editable=False)
    mode = models.CharField(max_length=20, choices=BaselineMode.choices, default=BaselineMode.MEAN)
    vector = models.JSONField(
        help_text="Mean (per_asset) or median (per_asset_robust) of each feature over the calibration windows."
    )
    scale = models.JSONField(
        default=list, blank=True, help_text="Robust scale of each feature (per_asset_robust only)."
    )
    own_scale = models.JSONField(
        default=list,
        blank=True,
        help_text="The asset's own robust scale of each feature before pooling (per_asset_pooled only).",
    )
    own_span_s = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds from the first calibration window's start to the last one's end "
        "(per_asset_pooled only: the pooling weighs the calibration by it).",
    )
    start = models.DateTimeField(help_text="Start of the calibration period.")
    end = models.DateTimeField(help_text="End of the calibration period.")
    window_count = models.PositiveIntegerField()
    trends = models.JSONField(
        default=list,
        blank=True,
        help_text="Sensors whose level moved steadily through the period (detection.baseline.level_trends): "
        "a start-up or warm-up the calibration calls normal.",
    )
    source = models.CharField(max_length=10, choices=BaselineSource.choices)
    is_current = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "features_key", "mode"],
                condition=Q(is_current=True),
                name="one_current_baseline_per_asset_features_mode",
            ),
            models.CheckConstraint(condition=Q(start__lte=models.F("end")), name="baseline_period_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.asset} baseline ({self.window_count} windows, {self.source})"

    @property
    def robust(self) -> bool:
        """True when the row is a Calibration (robust or pooled: applied alike)."""
        return is_robust(self.mode)

    def save(self, *args, **kwargs) -> None:
        self.features_key = features_key(list(self.feature_names))
        super().save(*args, **kwargs)

    def covers(self, names: list[str]) -> bool:
        return set(names) <= set(self.feature_names)

    def vector_for(self, names: list[str]) -> list[float]:
        """The baseline values of `names`, in that order (KeyError if the baseline does not cover one)."""
        position = {name: i for i, name in enumerate(self.feature_names)}
        return [float(self.vector[position[name]]) for name in names]


def scale_for(row: AssetBaseline, names: list[str]) -> list[float]:
    """The robust scales of `names` of a robust row (a pooled row's: the pooled ones it applies), in that
    order (KeyError if it does not cover one)."""
    position = {name: i for i, name in enumerate(row.feature_names)}
    return [float(row.scale[position[name]]) for name in names]


class ThresholdSource(models.TextChoices):
    """Where an asset's thresholds for a version come from (detection.thresholds.AssetThresholds.source)."""

    ASSET = "asset", "The asset's own calibration scores"
    VERSION = "version", "The version's (too few calibration scores)"


class AssetThreshold(models.Model):
    """The open/clear thresholds a "per_asset_robust" version uses for one asset, set by the version's
    threshold rule from scores of the asset's own normal windows (detection.thresholds.asset_thresholds),
    or the version's when there were too few. Written at registration (each asset's training hold-out) and
    at every recalibration (the period's windows); never edited: the newest row is current, the older ones
    are history. A noise-control override (alerts.ThresholdOverride) still takes precedence."""

    asset = models.ForeignKey("plant.Asset", on_delete=models.CASCADE, related_name="calibrated_thresholds")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="asset_thresholds")
    calibration = models.ForeignKey(
        AssetBaseline, null=True, blank=True, on_delete=models.SET_NULL, related_name="thresholds"
    )
    open_threshold = models.FloatField()
    clear_threshold = models.FloatField()
    window_count = models.PositiveIntegerField(help_text="How many scores the thresholds were set from.")
    source = models.CharField(max_length=10, choices=ThresholdSource.choices)
    is_current = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset", "model_version", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "model_version"],
                condition=Q(is_current=True),
                name="one_current_threshold_per_asset_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.asset} / {self.model_version}: open {self.open_threshold:.4g} ({self.source})"


class EdgeStage(models.TextChoices):
    SHADOW = "shadow", "In shadow on the agent"
    APPROVED = "approved", "Approved: the agent switches"
    ACTIVE = "active", "Running on the agent"
    REFUSED = "refused", "Refused by the agent"
    ROLLED_BACK = "rolled_back", "Rolled back by the agent"
    CANCELLED = "cancelled", "Cancelled"


class EdgeAssignment(models.Model):
    """A model version assigned to one asset's edge agent (a staged rollout is several of these, made asset
    by asset from the Edge page). The bundle is built once, at assignment, and kept with its sha256 and the
    server's signature, so the agent verifies exactly the bytes the engineer assigned."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="edge_assignments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="edge_assignments")
    stage = models.CharField(max_length=12, choices=EdgeStage.choices, default=EdgeStage.SHADOW)
    bundle = models.BinaryField()
    bundle_sha256 = models.CharField(max_length=64)
    signature = models.BinaryField()
    shadow_hours = models.FloatField(default=24.0, help_text="How long the agent runs it in shadow at least.")
    auto_approve = models.BooleanField(
        default=False, help_text="Approve when the shadow trial is within bounds."
    )
    shadow_report = models.JSONField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Why the switch was approved or the trial cancelled (the engineer's words, or the policy's); kept apart
    # from outcome_reason, which the agent's report of the switch overwrites.
    decision_reason = models.CharField(max_length=300, blank=True)
    # When the agent reported its outcome (switched, refused, rolled back); decided_at stays the decision's.
    outcome_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One assignment in flight per asset: a new one cancels the old (models_registry.edge_rollout).
            models.UniqueConstraint(
                fields=["asset"],
                condition=models.Q(stage__in=["shadow", "approved"]),
                name="one_edge_assignment_in_flight",
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} → {self.asset} ({self.stage})"
