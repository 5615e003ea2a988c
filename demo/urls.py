from __future__ import annotations

from django.urls import path

from demo import cmms_inbox

app_name = "demo"

urlpatterns = [
    path("cmms/", cmms_inbox.inbox, name="cmms_inbox"),
    path("cmms/orders", cmms_inbox.orders, name="cmms_orders"),
    path("cmms/<int:number>/outcome", cmms_inbox.report, name="cmms_report"),
]
