"""URL root: each app's URLs are included under its prefix; nothing domain-specific lives here."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView

from config import metrics, ops
from plant import api as plant_api

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    path("api/docs/", plant_api.api_docs, name="api-docs"),
    path("alerts/", include("alerts.urls")),
    path("models/", include("models_registry.urls")),
    path("notify/", include("notify.urls")),
    path("handoff/", include("handoff.urls")),
    path("demo/", include("demo.urls")),  # the demo's stand-in CMMS (demo.cmms_inbox)
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says; the icon is a static file.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True), name="favicon"),
    path("", include("plant.urls")),
]
