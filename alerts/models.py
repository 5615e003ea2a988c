"""Alerts, their events, maintenance windows and the per-window scores they are decided from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts.choices import (
    ACTIVE_STATES,
    CLOSED_STATES,
    AlertCategory,
    AlertEventKind,
    AlertKind,
    AlertState,
    EpisodeState,
    ExplanationStatus,
    FalseAlarmReason,
    FeedbackKind,
    GapReason,
    MaintenanceAction,
    NoiseActionKind,
    Severity,
    Verdict,
    false_alarm_reasons,
    verdict_summary,
)
from models_registry.models import ModelVersion
from plant.models import Asset, Gateway, Label, Sensor, check_period_order

# Which moves an alert may make; the terminal states have none (a recurrence is a new alert).
TRANSITIONS: dict[str, set[str]] = {
    AlertState.OPEN: {
        AlertState.ACKNOWLEDGED,
        AlertState.SNOOZED,
        AlertState.RESOLVED,
        AlertState.AUTO_CLOSED,
    },
    AlertState.ACKNOWLEDGED: {AlertState.SNOOZED, AlertState.RESOLVED, AlertState.AUTO_CLOSED},
    AlertState.SNOOZED: {
        AlertState.OPEN,
        AlertState.ACKNOWLEDGED,
        AlertState.RESOLVED,
        AlertState.AUTO_CLOSED,
    },
    AlertState.SUPPRESSED: {AlertState.OPEN, AlertState.RESOLVED, AlertState.AUTO_CLOSED},
    AlertState.RESOLVED: set(),
    AlertState.AUTO_CLOSED: set(),
}


class AlertStateError(Exception):
    """A state change that is not allowed now (wrong state, or the alert changed concurrently)."""


class Score(models.Model):
    """The score of one model version for one window of one asset. Written in bulk by the scorer.

    ``flagged`` maps a sensor role to the OR of the quality bits of its readings in the window, so the
    data-quality gate can be re-evaluated later without re-reading the readings.

    Both foreign keys have no database constraint (``db_constraint=False``): this is the fleet sweep's
    high-volume time-series table (800,000 rows per sweep of 100k assets x 2 versions), and PostgreSQL
    checked each deferred foreign key row by row at commit, about 9 of its 25 CPU-s per sweep
    (docs/scaling.md). Integrity is kept by the ORM instead: ``on_delete=CASCADE`` is Django's collector,
    so deleting an asset or a model version still deletes its scores (nothing deletes assets or versions
    with raw SQL), and the scorer only writes rows for assets and versions it has just read under its
    locks. The ``asset`` column has no index of its own: the unique (asset, model_version, window_end)
    index leads with it.
    """

    asset = models.ForeignKey(
        Asset, on_delete=models.CASCADE, related_name="scores", db_constraint=False, db_index=False
    )
    # Kept indexed: the cascade of a version's deletion and the per-version counts look it up alone.
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="scores", db_constraint=False
    )
    window_end = models.DateTimeField()
    score = models.FloatField()
    flagged = models.JSONField(default=dict, blank=True)

    class Meta:
        # The unique index (asset, model_version, window_end) also serves the "last K scores up to t" reads,
        # scanned backwards; a second, descending index would only slow down the bulk inserts.
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "model_version", "window_end"], name="unique_score_asset_version_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.asset_id}/{self.model_version_id}@{self.window_end.isoformat()}={self.score:.4g}"


class Alert(models.Model):
    """A condition worth an operator's attention on one asset, decided from consecutive window scores.

    Active alerts (open, acknowledged, snoozed, suppressed) are unique per (asset, kind) among visible alerts
    and per (asset, model version) among shadow ones; more anomalous windows update the active alert.
    Every state change goes through ``transition`` (compare-and-set plus an AlertEvent row).
    """

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="alerts")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    sensor = models.ForeignKey(
        Sensor,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sensor_fault_alerts",
        help_text="The sensor of a sensor_fault alert (check/recalibrate it); empty for model alerts.",
    )
    is_shadow = models.BooleanField(
        default=False, help_text="Would-be alert of a shadow version: recorded for comparison, never shown."
    )
    state = models.CharField(max_length=12, choices=AlertState.choices, default=AlertState.OPEN)
    category = models.CharField(
        max_length=16, choices=AlertCategory.choices, default=AlertCategory.MACHINE_FAULT
    )
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.LOW)
    opened_at = models.DateTimeField(help_text="End of the window that opened the alert.")
    first_window_start = models.DateTimeField(help_text="Start of the first of the opening windows.")
    last_seen_at = models.DateTimeField(help_text="End of the latest anomalous window.")
    peak_score = models.FloatField()
    peak_window_end = models.DateTimeField()
    window_count = models.PositiveIntegerField(default=0, help_text="Anomalous windows attributed to it.")
    explanation = models.JSONField(null=True, blank=True, help_text="SHAP explanation of the opening window.")
    peak_explanation = models.JSONField(null=True, blank=True, help_text="SHAP explanation of the peak.")
    explanation_status = models.CharField(
        max_length=8, choices=ExplanationStatus.choices, default=ExplanationStatus.PENDING
    )
    explanation_note = models.CharField(
        max_length=300,
        blank=True,
        help_text="Why the readings an edge alert was decided on never reached the server (status lost).",
    )
    dominant_role = models.CharField(
        max_length=40,
        blank=True,
        help_text="Sensor role contributing most to the explanation (similar alerts).",
    )
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snooze_reason = models.CharField(max_length=300, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The episode after verdicts (detection.rules.judge): a judged alert keeps absorbing the condition.
    episode = models.CharField(max_length=8, choices=EpisodeState.choices, default=EpisodeState.LIVE)
    judged_peak_score = models.FloatField(null=True, blank=True, help_text="Peak score at the verdict.")
    judged_severity = models.CharField(max_length=10, choices=Severity.choices, blank=True)
    reopened_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reopened_as"
    )
    reopen_note = models.CharField(
        max_length=200, blank=True, help_text='"re-opened: worse than when judged on <date> by <who>".'
    )
    raised_at_edge = models.BooleanField(
        default=False, help_text="Opened by an edge agent's local decision (alerts.services.edge_events)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not a column: when the edge agent that decided an awaiting alert was last in contact, if it is silent
    # now; set on the board's and alert page's alerts by ``alerts.services.board.decorate``.
    agent_silent_since: datetime | None = None

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "kind"],
                condition=Q(state__in=ACTIVE_STATES, is_shadow=False, sensor__isnull=True),
                name="one_active_alert_per_asset_kind",
            ),
            # One sensor-fault episode per sensor (several sensors of one asset may be faulty at once).
            models.UniqueConstraint(
                fields=["sensor"],
                condition=Q(state__in=ACTIVE_STATES, is_shadow=False, sensor__isnull=False),
                name="one_active_sensor_fault_per_sensor",
            ),
            models.UniqueConstraint(
                fields=["asset", "model_version"],
                condition=Q(state__in=ACTIVE_STATES, is_shadow=True),
                name="one_active_shadow_alert_per_asset_version",
            ),
        ]
        indexes = [
            models.Index(fields=["asset", "kind", "state"]),
            models.Index(fields=["state", "-opened_at"]),
            # "The last time this asset had a similar alert": latest closed alert per (asset, kind, role).
            models.Index(fields=["asset", "kind", "dominant_role", "closed_at"], name="alert_similar_idx"),
            # The metrics' open periods: the alerts opened since the last closed one (alerts.metrics.closed).
            models.Index(fields=["opened_at"], name="alert_opened_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.asset} {self.get_category_display()} ({self.state})"

    @property
    def state_choice(self) -> AlertState:
        return AlertState(self.state)

    @property
    def category_choice(self) -> AlertCategory:
        return AlertCategory(self.category)

    @property
    def severity_choice(self) -> Severity:
        return Severity(self.severity)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def board_order(self) -> str:
        """Where the alert's card stands in its lane of the board: the most severe first, then the oldest, then
        by id — as text that sorts the same, which ``board_alerts`` sorts by and each card carries
        (``data-order``), so that static/js/board.js puts a card the socket adds where the page would be."""
        rank = len(Severity) - 1 - self.severity_choice.rank
        # Counted from year 1 and from the lowest id a bigint takes: never negative, as a minus sign sorts
        # wrong as text (an alert of 1969, a gateway's clock restarted before 1970, and an id below 0).
        opened_us = (self.opened_at - datetime(1, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return f"{rank}.{opened_us:020d}.{self.pk + 2**63:020d}"

    @property
    def in_work(self) -> bool:
        return self.episode == EpisodeState.IN_WORK

    @property
    def episode_choice(self) -> EpisodeState:
        return EpisodeState(self.episode)

    @property
    def false_alarm_reasons(self) -> tuple[FalseAlarmReason, ...]:
        """The false-alarm reasons this alert offers now (``alerts.choices.false_alarm_reasons``)."""
        return false_alarm_reasons(self.kind, self.category)

    @property
    def snooze_end_text(self) -> str:
        """When the snooze ends, as people read it: the time today, else the date and time."""
        return "" if self.snoozed_until is None else when_text(self.snoozed_until)

    @property
    def awaiting_readings_text(self) -> str:
        """What the card and the alert page say while the explanation waits for the readings the edge agent
        decided on (ExplanationStatus.AWAITING), so the wait does not read as a failure; with how long its
        agent has been out of contact, when the board's ``decorate`` found it silent (``agent_silent_since``)."""
        zone = self.asset.site.zone
        text = (
            "Explanation follows when the readings the edge agent decided on reach the server (decided at "
            f"the edge at {when_text(self.opened_at, zone)}; readings not received yet)."
        )
        if self.agent_silent_since is not None:
            text += (
                f" The edge agent has been out of contact since {when_text(self.agent_silent_since, zone)}."
            )
        return text

    @property
    def lost_readings_text(self) -> str:
        """What the card and the alert page say when the readings the edge agent decided on never reached
        the server (ExplanationStatus.LOST), with the reason recorded then."""
        return f"The readings the edge agent decided on never reached the server: {self.explanation_note}."

    def recategorize(
        self, category: str, why: str, *, at: datetime | None = None, **fields: Any
    ) -> AlertEvent:
        """Move to ``category`` (with extra ``fields`` in the same UPDATE) and record it as an event of kind
        category on the timeline: "category Check the data link → Machine fault: <why>". The state does not
        change."""
        was = self.get_category_display()
        now = at or timezone.now()
        Alert.objects.filter(pk=self.pk).update(category=category, updated_at=now, **fields)
        self.category = category
        for name, value in fields.items():
            setattr(self, name, value)
        return AlertEvent.objects.create(
            alert=self,
            at=now,
            from_state=self.state,
            to_state=self.state,
            kind=AlertEventKind.CATEGORY,
            reason=f"{CATEGORY_CHANGE}{was} → {AlertCategory(category).label}: {why}"[:300],
        )

    def transition(
        self, to_state: str, *, actor: Any = None, reason: str = "", at: datetime | None = None, **fields: Any
    ) -> AlertEvent:
        """Move to ``to_state`` with a compare-and-set on the current state and record the event.

        Extra ``fields`` are written in the same UPDATE. Raises AlertStateError when the move is not
        allowed or another process changed the state first (the caller holds the transaction).
        """
        from_state = self.state
        if to_state not in TRANSITIONS[from_state]:
            raise AlertStateError(
                f"alert #{self.pk} is {AlertState(from_state).label.lower()}; it cannot become "
                f"{AlertState(to_state).label.lower()}"
            )
        now = at or timezone.now()
        if to_state in CLOSED_STATES:
            fields.setdefault("closed_at", now)
        changed = Alert.objects.filter(pk=self.pk, state=from_state).update(
            state=to_state, updated_at=now, **fields
        )
        if changed != 1:
            raise AlertStateError(f"alert #{self.pk} changed concurrently; reload and try again")
        self.state = to_state
        for name, value in fields.items():
            setattr(self, name, value)
        return AlertEvent.objects.create(
            alert=self,
            at=now,
            actor=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:300],
        )


# How the reason of a category change (Alert.recategorize) reads on the timeline; only for people: readers
# recognise the change by the event's kind, never by these words.
CATEGORY_CHANGE = "category "


class AlertEvent(models.Model):
    """One state change of an alert (or a change of its category): who (null = the system), when, why, and
    what kind of event it is (``AlertEventKind``; the reason is free text for people).

    Never updated or deleted; metrics (time to acknowledge, ignored alerts) are computed from these rows.
    """

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_state = models.CharField(max_length=12, choices=AlertState.choices, blank=True)
    to_state = models.CharField(max_length=12, choices=AlertState.choices)
    kind = models.CharField(max_length=12, choices=AlertEventKind.choices, default=AlertEventKind.STATE)
    reason = models.CharField(max_length=300, blank=True)
    undoes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Id of the verdict Feedback this event undid (the row is gone)."
    )

    class Meta:
        ordering = ["at", "id"]

    @property
    def category_change(self) -> str:
        """What a category change says ("Check the data link → Machine fault: <why>"); "" for other events."""
        if self.kind != AlertEventKind.CATEGORY:
            return ""
        return self.reason.removeprefix(CATEGORY_CHANGE)

    def __str__(self) -> str:
        who = self.actor or "system"
        return f"#{self.alert_id}: {self.from_state or '∅'} → {self.to_state} by {who}"


class MaintenanceWindow(models.Model):
    """Planned work on an asset: alerts opened inside it are recorded as suppressed, not shown as open."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="maintenance_windows")
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset", "-start"]
        indexes = [models.Index(fields=["asset", "start"])]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="maintenance_end_after_start")
        ]

    def __str__(self) -> str:
        return f"{self.asset} maintenance {self.start:%Y-%m-%d %H:%M}–{self.end:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        check_period_order(self.start, self.end)

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end


class Feedback(models.Model):
    """What a person said about an alert: acknowledge, snooze or a verdict; or a failure no alert caught.

    Never edited: a corrected verdict is a new row that ``supersedes`` the previous one, so the history
    stays. A verdict's relabelled window is ``label`` (one Label per alert, updated by corrections); a
    missed failure has no alert, only its asset and label. Written by alerts.services.feedback only.
    """

    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=FeedbackKind.choices)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, null=True, blank=True)
    action = models.CharField(
        max_length=20, choices=MaintenanceAction.choices, blank=True, help_text="Confirmed faults only."
    )
    reason = models.CharField(
        max_length=24, choices=FalseAlarmReason.choices, blank=True, help_text="False alarms only."
    )
    note = models.TextField(blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    event = models.OneToOneField(
        AlertEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="superseded_by"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["alert", "kind"]), models.Index(fields=["asset", "verdict"])]

    def __str__(self) -> str:
        what = self.get_verdict_display() if self.verdict else self.get_kind_display()
        return f"{what} on {'#' + str(self.alert_id) if self.alert_id else self.asset} by {self.user or '?'}"

    @property
    def verdict_choice(self) -> Verdict | None:
        return Verdict(self.verdict) if self.verdict else None

    @property
    def summary(self) -> str:
        """One line for people (``alerts.choices.verdict_summary``): "Confirmed fault — Repaired", "Data link
        was down — Link restored". A confirmed fault or a false alarm reads its alert's kind and category
        (a false alarm with a reason its card no longer offers says what it is recorded as): load the alert
        with the feedback (select_related, or through ``alert.feedback``)."""
        return self._line(in_force=True)

    @property
    def summary_as_given(self) -> str:
        """The line of a verdict a later one superseded, as it was given (``verdict_summary``'s in_force)."""
        return self._line(in_force=False)

    def _line(self, *, in_force: bool) -> str:
        if not self.verdict:
            return self.get_kind_display()
        if self.alert_id is None or self.verdict not in (Verdict.CONFIRMED_FAULT, Verdict.FALSE_ALARM):
            return verdict_summary(self.verdict, self.action, self.reason, None)
        alert = self.alert
        return verdict_summary(
            self.verdict, self.action, self.reason, alert.category, alert.kind, in_force=in_force
        )


class ThresholdOverride(models.Model):
    """Thresholds that replace a model version's for one asset's scoring, set from a noise suggestion.

    At most one active override per (asset, version); undoing one deactivates it (the row stays, with who
    and when). Overrides only ever raise the thresholds in the score's bad direction
    (``alerts.services.noise`` checks it), so the scorer's no-query fast path for a healthy asset, which
    compares against the version's open threshold, stays exact.
    """

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="threshold_overrides")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="threshold_overrides"
    )
    open_threshold = models.FloatField()
    clear_threshold = models.FloatField()
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "model_version"],
                condition=Q(active=True),
                name="one_active_threshold_override",
            )
        ]

    def __str__(self) -> str:
        state = "active" if self.active else "undone"
        return f"{self.asset} / {self.model_version}: open {self.open_threshold:.4g} ({state})"


class NoiseAction(models.Model):
    """One engineer action on a noise suggestion (raise a threshold, mark a sensor for calibration) or its
    undoing: who, when, what, and the evidence and projections shown when it was applied. Never edited."""

    kind = models.CharField(max_length=20, choices=NoiseActionKind.choices)
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="noise_actions")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="noise_actions"
    )
    dominant_role = models.CharField(max_length=40, blank=True)
    override = models.ForeignKey(
        ThresholdOverride, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)
    evidence = models.JSONField(default=list, blank=True, help_text="Ids of the dismissed alerts.")
    projection = models.JSONField(default=dict, blank=True, help_text="What the page projected.")
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.asset} by {self.user or 'system'}"

    @property
    def kind_choice(self) -> NoiseActionKind:
        return NoiseActionKind(self.kind)


class ScoringDue(models.Model):
    """The scoring mark of an asset: ingestion bumps `seq` and sets `due`; a scorer clears it by
    compare-and-set on the `seq` it claimed, so data that arrives while it scores keeps the asset due.

    One row per asset, written in bulk by alerts.scheduling; never one row per reading or per batch.
    """

    asset = models.OneToOneField(
        Asset, on_delete=models.CASCADE, primary_key=True, related_name="scoring_due"
    )
    seq = models.BigIntegerField(default=0, help_text="Bumped by every ingest that stored readings.")
    due = models.BooleanField(default=False)
    marked_at = models.DateTimeField(null=True, blank=True, help_text="When the asset last became due.")
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When a scoring task was last sent.")
    scored_seq = models.BigIntegerField(default=0, help_text="The seq the last completed scoring claimed.")

    class Meta:
        indexes = [models.Index(fields=["due", "marked_at"], name="scoring_due_sweep")]

    def __str__(self) -> str:
        return f"{self.asset_id}: seq {self.seq}{' due' if self.due else ''}"


class ScoringGapQuerySet(models.QuerySet):
    def overlapping(
        self,
        *,
        site_ids: list[int] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ScoringGapQuerySet:
        """Gaps of assets at these sites (None: any) that overlap [since, until), newest first."""
        gaps = self.select_related("asset__site", "model_version")
        if site_ids is not None:
            gaps = gaps.filter(asset__site_id__in=site_ids)
        if since is not None:
            gaps = gaps.filter(end__gt=since)
        if until is not None:
            gaps = gaps.filter(start__lt=until)
        return gaps.order_by("-end", "-id")


class ScoringGap(models.Model):
    """A span of an asset's windows that a model version did not score, recorded instead of skipped
    silently: windows ending in (start, end] have no Score row of this version (alerts.scoring).
    Shown on the asset page, the alert health page and the asset's chart JSON."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="scoring_gaps")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scoring_gaps")
    start = models.DateTimeField(help_text="Last window end scored before the gap (exclusive).")
    end = models.DateTimeField(help_text="Last window end left unscored (inclusive).")
    reason = models.CharField(max_length=20, choices=GapReason.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ScoringGapQuerySet.as_manager()

    class Meta:
        ordering = ["-end", "-id"]
        constraints = [
            # Two scorers seeing the same backlog record it once.
            models.UniqueConstraint(fields=["asset", "model_version", "start"], name="one_gap_per_start"),
            models.CheckConstraint(condition=Q(start__lt=models.F("end")), name="scoring_gap_ordered"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.asset} / {self.model_version}: not scored {self.start:%Y-%m-%d %H:%M} – {self.end:%H:%M}"
        )

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


class ScoringProgress(models.Model):
    """How far a backlog catch-up has looked at an asset's windows for a version, beyond its last Score.

    A run that scores a backlog in chunks writes the chunk's end here, so the next run starts after it
    even when the chunk held no scorable window (a silent sensor, a hole in the data); otherwise the
    cursor is the last stored Score's window end."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    through = models.DateTimeField(help_text="Every window ending at or before this has been considered.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["asset", "model_version"], name="one_progress_per_pair"),
        ]

    def __str__(self) -> str:
        return f"{self.asset} / {self.model_version}: through {self.through:%Y-%m-%d %H:%M}"


class EdgeEvent(models.Model):
    """A local alert event an edge agent sent, once per (gateway, idempotency key): the record that makes a
    resent event a no-op, and the link to the alert it opened, merged into or closed."""

    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="edge_events")
    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=10)
    at = models.DateTimeField(help_text="When the agent decided it (end of the deciding window).")
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="edge_events"
    )
    outcome = models.CharField(max_length=20)
    body = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [models.UniqueConstraint(fields=["gateway", "key"], name="unique_edge_event_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} ({self.outcome})"


class MetricsPeriod(models.Model):
    """A closed metrics period (a month or an ISO week, ``VIGIL_FOLLOW_THROUGH_HOURS`` past its end) whose
    per-(asset, model version, false-alarm reason) sums are stored in MetricsCell (alerts.metrics.closed).

    ``dirty``: a late verdict, event or alert change touched one of its alerts since; ``generation`` counts
    those, so a recomputation that read the facts before one does not mark the period clean over it.
    ``computed_for``: the moment its facts were counted at (read only for a later one); ``settings_key``:
    the time zone and follow-through window they were counted with (any other → recomputed)."""

    kind = models.CharField(max_length=5)
    label = models.CharField(max_length=8)
    computed_for = models.DateTimeField(null=True, blank=True)
    settings_key = models.CharField(max_length=100, blank=True)
    dirty = models.BooleanField(default=True)
    generation = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "label"], name="one_metrics_period")]

    def __str__(self) -> str:
        return f"{self.kind} {self.label}{' (dirty)' if self.dirty else ''}"


class MetricsCell(models.Model):
    """The counts of one closed period's visible, shown alerts of one asset and model version, its false
    alarms by reason of the verdict in force and the time to acknowledge of each acknowledged one: every
    grouping's row is a sum of cells (the site and asset type are read from the asset, so moving an asset
    is seen at once)."""

    period = models.ForeignKey(MetricsPeriod, on_delete=models.CASCADE, related_name="cells")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    alerts = models.PositiveIntegerField(default=0)
    verdicts = models.PositiveIntegerField(default=0)
    confirmed = models.PositiveIntegerField(default=0)
    false_alarms = models.PositiveIntegerField(default=0)
    not_actionable = models.PositiveIntegerField(default=0)
    actionable = models.PositiveIntegerField(default=0)
    followed = models.PositiveIntegerField(default=0)
    due = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    # Precision's and recall's counts: the verdicts on machine-fault alerts only (alerts.metrics.facts).
    machine_confirmed = models.PositiveIntegerField(default=0)
    machine_judged = models.PositiveIntegerField(default=0)
    # Comma-separated, so the database joins a grouping's in its GROUP BY (string_agg/group_concat); the
    # reasons are FalseAlarmReason values ("unknown" for none), which hold no comma or colon.
    false_alarm_reasons = models.TextField(blank=True, help_text="reason:count,... of its false alarms.")
    tta_us = models.TextField(blank=True, help_text="Time to acknowledge of each acknowledged alert, µs.")


def when_text(at: datetime, zone: tzinfo | None = None, *, dated: bool = False) -> str:
    """A moment as people read it on a card, in ``zone`` (default: the current time zone): the time today,
    else the date and time; ``dated``: the date and time always (words stored to be read on later days)."""
    local = timezone.localtime(at, zone)
    if not dated and local.date() == timezone.localdate(timezone=zone):
        return f"{local:%H:%M}"
    return f"{local:%a %d %b %H:%M}"
