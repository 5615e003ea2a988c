"""Builders for the dashboard tests: explained alerts made without running the scorer."""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.contrib.sessions.backends.base import SessionBase
from django.test import Client
from django.utils import timezone

from alerts.models import Alert, AlertEvent
from alerts.services import explain_window
from detection.explain import top_role
from models_registry.models import ModelVersion
from tests.alerts.conftest import OPEN, fault_x


def explanation_for(version, trained, role: str = "vibration") -> dict:
    """A real (additive) explanation of a window whose `role` features are far off normal."""
    now = timezone.now()
    return explain_window(version, fault_x(trained, role), end=now, score=OPEN + 5, sensors=None)


def make_alert(
    asset,
    version,
    *,
    explanation=None,
    state="open",
    severity="low",
    age_min=30,
    opened: datetime | None = None,
    reason: str = "test",
    **fields,
) -> Alert:
    """One alert opened at `opened` (default: `age_min` minutes ago), with an opening event; `fields`
    override the row's other columns."""
    opened = opened or timezone.now() - timedelta(minutes=age_min)
    columns = {
        "asset": asset,
        "model_version": version,
        "kind": version.kind,
        "state": state,
        "severity": severity,
        "opened_at": opened,
        "first_window_start": opened - timedelta(minutes=1),
        "last_seen_at": opened + timedelta(minutes=2),
        "peak_score": OPEN + 5,
        "peak_window_end": opened + timedelta(minutes=1),
        "window_count": 3,
        "explanation": explanation,
        "explanation_status": "ready" if explanation else "pending",
        "dominant_role": top_role(explanation),
        "closed_at": opened + timedelta(minutes=10) if state in ("resolved", "auto_closed") else None,
    }
    alert = Alert.objects.create(**(columns | fields))
    AlertEvent.objects.create(alert=alert, at=opened, from_state="", to_state=state, reason=reason)
    return alert


def bare_champion(
    asset_type, *, open_threshold=10.0, clear_threshold=5.0, direction="higher", name="pump", kind="anomaly"
):
    """A champion version row without an artifact: apply_scores needs only its thresholds and status (the
    windows carry no feature vector, so nothing is ever explained)."""
    return ModelVersion.objects.create(
        name=name,
        version=1,
        kind=kind,
        asset_type=asset_type,
        onnx_file=f"models/{name}.onnx",
        sha256="0" * 64,
        feature_spec=["vibration__mean"],
        output_spec={"name": "score", "direction": direction},
        open_threshold=open_threshold,
        clear_threshold=clear_threshold,
        status="champion",
    )


def signed_in(user) -> SessionBase:
    """A real session of ``user``, as the login view leaves it (what a socket's AuthMiddlewareStack reads;
    the board's consumer checks it before every update)."""
    client = Client()
    client.force_login(user)
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=client.session.session_key)


def migrate_to(target: tuple[str, str] | None = None):
    """Move the database to migration ``target`` (None: the latest of every app) and return the model states
    there, for the data migrations' tests (``django_db(transaction=True)``)."""
    executor = MigrationExecutor(connection)
    targets = [target] if target else executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps
