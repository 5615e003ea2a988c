from __future__ import annotations

from django.urls import path

from plant import views

app_name = "plant"

urlpatterns = [
    path("", views.home, name="home"),
    path("sites/<slug:slug>/", views.site_detail, name="site"),
    path("assets/<int:pk>/", views.asset_detail, name="asset"),
    path("assets/<int:pk>/chart.json", views.asset_chart, name="asset_chart"),
]
