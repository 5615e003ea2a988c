from __future__ import annotations

from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.board, name="board"),
    path("board/", views.board, name="board_list"),
    path("<int:pk>/", views.alert_detail, name="detail"),
    path("<int:pk>/feedback/", views.feedback, name="feedback"),
]
