from __future__ import annotations

from django.urls import path

from alerts import health_views, noise_views, views

app_name = "alerts"

urlpatterns = [
    path("", views.board, name="board"),
    path("board/", views.board, name="board_list"),
    path("<int:pk>/", views.alert_detail, name="detail"),
    path("<int:pk>/feedback/", views.feedback, name="feedback"),
    path("<int:pk>/undo/<int:feedback_id>/", views.undo, name="undo"),
    path("assets/<int:pk>/past-alerts/", views.asset_past_alerts, name="asset_past_alerts"),
    path("assets/<int:pk>/missed-failure/", views.asset_missed_failure, name="asset_missed_failure"),
    path("health/", health_views.health, name="health"),
    path("health/kpis/", health_views.health_kpis, name="health_kpis"),
    path("health/alerts/", health_views.health_alerts, name="health_alerts"),
    path("export.csv", health_views.export_csv, name="export"),
    path("noise/", noise_views.noise, name="noise"),
    path("noise/<str:key>/apply/", noise_views.noise_apply, name="noise_apply"),
    path("noise/overrides/<int:pk>/undo/", noise_views.noise_undo_threshold, name="noise_undo_threshold"),
    path("noise/sensors/<int:pk>/calibrated/", noise_views.noise_calibrated, name="noise_calibrated"),
]
