from __future__ import annotations

from django.urls import path

from plant import views

app_name = "plant"

urlpatterns = [
    path("", views.home, name="home"),
]
