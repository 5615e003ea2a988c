from __future__ import annotations

from django.urls import path

from notify import views

app_name = "notify"

urlpatterns = [
    path("ack/<str:token>/", views.ack, name="ack"),
    path("inbox/", views.inbox, name="inbox"),
]
