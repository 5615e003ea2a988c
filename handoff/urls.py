from __future__ import annotations

from django.urls import path

from handoff import views

app_name = "handoff"

urlpatterns = [
    path("alerts/<int:pk>/work-order/", views.create_work_order_view, name="create_work_order"),
]
