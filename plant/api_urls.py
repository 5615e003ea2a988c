from __future__ import annotations

from django.urls import path

from plant import api

app_name = "api"

urlpatterns = [
    path("readings", api.post_readings, name="readings"),
]
