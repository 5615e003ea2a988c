from __future__ import annotations

from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # notify sits above alerts: it listens to the alert events (the write-back's path) and hands the
        # health page its section; alerts never import it.
        from alerts.health_views import provide_health_section
        from alerts.views import provide_alert_section
        from notify import delivery, services, tasks  # noqa: F401 - the inbox plugin and the task sender
        from notify.metrics import health_section
        from notify.views import alert_section

        services.connect()
        provide_health_section(health_section)
        provide_alert_section(alert_section)
