"""URLs of the API under api/v1/: plant's gateway API and alerts' metrics API (config.urls mounts the human
docs page at api/docs/). Composed here, at the top, because plant may not import alerts."""

from __future__ import annotations

from django.urls import path

from alerts import api as alerts_api
from handoff import api as handoff_api
from models_registry import edge_api
from plant import api

app_name = "api"

urlpatterns = [
    path("readings", api.post_readings, name="readings"),
    path("openapi.json", api.openapi_json, name="openapi"),
    path("metrics", alerts_api.metrics, name="metrics"),
    path("metrics.csv", alerts_api.metrics_csv_view, name="metrics_csv"),
    path("edge/heartbeat", api.post_edge_heartbeat, name="edge_heartbeat"),
    path("edge/events", alerts_api.edge_events, name="edge_events"),
    path("edge/assignments", edge_api.assignments, name="edge_assignments"),
    path("edge/bundles/<int:pk>", edge_api.bundle, name="edge_bundle"),
    path("edge/shadow-reports", edge_api.shadow_reports, name="edge_shadow_reports"),
    path("edge/outcomes", edge_api.outcomes, name="edge_outcomes"),
    path("work-orders/<int:pk>/outcome", handoff_api.work_order_outcome, name="work_order_outcome"),
]
