from __future__ import annotations

from django.urls import path

from models_registry import views

app_name = "models_registry"

urlpatterns = [
    path("", views.index, name="index"),
    path("edge/", views.edge, name="edge"),
    path("edge/assign/", views.edge_assign, name="edge_assign"),
    path("edge/<int:pk>/decide/", views.edge_decide, name="edge_decide"),
    path("retrain/", views.retrain_start, name="retrain"),
    path("assets/<int:pk>/recalibrate/", views.asset_recalibrate, name="asset_recalibrate"),
    path("retrain/<int:pk>/", views.retrain_run, name="run"),
    path("<int:pk>/compare/", views.version_compare, name="compare"),
    path("<int:pk>/shadow/", views.version_shadow, name="shadow"),
    path("<int:pk>/promote/", views.version_promote, name="promote"),
    path("<int:pk>/rollback/", views.version_rollback, name="rollback"),
]
