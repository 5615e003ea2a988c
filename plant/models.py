"""The plant: sites, their assets and sensors, the readings those sensors send, and labels on time ranges."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from connectivity import protocols
from connectivity.error_words import in_words
from connectivity.points import CONNECT, WRITE
from plant.choices import Criticality, LabelKind, LabelSource, Protocol
from plant.params import is_digits
from plant.templatetags.timewords import ago


DEFAULT_SHIFT_STARTS = "06:00,14:00,22:00"
MAX_SHIFTS = 12


def parse_shift_starts(value: str) -> list[time]:
    """The shift start times of ``value`` ("06:00,14:00,22:00": local HH:MM, increasing, 1 to 12 of them);
    ValidationError naming the bad part otherwise. Each shift runs to the next start (the last to the
    first start of the next day)."""
    parts = [part.strip() for part in str(value).split(",")]
    if not any(parts):
        raise ValidationError("Give at least one shift start, e.g. 06:00,14:00,22:00.")
    if len(parts) > MAX_SHIFTS:
        raise ValidationError(f"At most {MAX_SHIFTS} shifts a day ({len(parts)} given).")
    starts: list[time] = []
    for part in parts:
        hours, sep, minutes = part.partition(":")
        if not (sep and len(hours) == 2 and len(minutes) == 2 and is_digits(hours) and is_digits(minutes)):
            raise ValidationError(f"{part[:20]!r} is not a time; write each start as HH:MM, e.g. 06:00.")
        if int(hours) > 23 or int(minutes) > 59:
            raise ValidationError(f"{part!r} is not a time of day (00:00 to 23:59).")
        start = time(int(hours), int(minutes))
        if starts and start <= starts[-1]:
            raise ValidationError(
                f"Shift starts must increase through the day: {part} comes after {starts[-1]:%H:%M}."
            )
        starts.append(start)
    return starts


def zone_named(name: str) -> ZoneInfo:
    """The time zone of a site's ``timezone`` name (UTC when it is not a known zone)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Site(models.Model):
    """A plant or a part of one; users see only the sites they are members of."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(max_length=60, default="UTC")
    shift_starts = models.CharField(
        max_length=100,
        default=DEFAULT_SHIFT_STARTS,
        validators=[parse_shift_starts],
        help_text=(
            "When each shift starts, in the site's time zone: HH:MM, comma-separated, increasing "
            "(e.g. 06:00,14:00,22:00). The alarm-management KPIs on the alert health page count per shift."
        ),
    )
    reading_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=(
            "Days raw readings are kept; older ones are removed (alert evidence is always kept). "
            "Empty: the installation's default (VIGIL_READING_RETENTION_DAYS), or forever if it has none."
        ),
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="SiteMembership", related_name="sites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone (UTC when its name is not a known zone)."""
        return zone_named(self.timezone)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("plant:site", args=[self.slug])

    def shift_start_times(self) -> list[time]:
        """The shift starts (``parse_shift_starts``); the default ones if the stored value is unreadable
        (written past the form), so a page never fails on it."""
        try:
            return parse_shift_starts(self.shift_starts)
        except ValidationError:
            return parse_shift_starts(DEFAULT_SHIFT_STARTS)

    def effective_reading_retention_days(self) -> int | None:
        """The raw-reading retention in force: the site's own, else the default setting; None is forever."""
        if self.reading_retention_days is not None:
            return self.reading_retention_days
        return settings.VIGIL_READING_RETENTION_DAYS


class SiteMembership(models.Model):
    """A user's access to one site (their role comes from the technician/engineer groups)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "user"], name="unique_site_member")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.site}"


class AssetType(models.Model):
    """A kind of machine (pump, fan, engine) with the sensor roles it has and its feature-window shape."""

    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    window_s = models.PositiveIntegerField(
        "window length (s)", default=60, help_text="Feature window length in seconds."
    )
    step_s = models.PositiveIntegerField(
        "step between windows (s)", default=10, help_text="Seconds between consecutive windows."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SensorRole(models.Model):
    """A named measurement an asset type has (vibration, current, ...); sensors fill these roles.

    A required role is one every asset of the type must have: an asset without a sensor for it is left out
    of training (and its page says so). An optional one (a second vibration axis some bearings lack) is used
    where present; a model is trained for the role set of the assets it serves."""

    asset_type = models.ForeignKey(AssetType, on_delete=models.CASCADE, related_name="roles")
    key = models.SlugField(max_length=40)
    label = models.CharField(max_length=80)
    unit = models.CharField(max_length=20, blank=True)
    required = models.BooleanField(
        default=True,
        help_text="Every asset of the type has a sensor for it (untick for a sensor only some assets have).",
    )

    class Meta:
        ordering = ["asset_type", "key"]
        constraints = [models.UniqueConstraint(fields=["asset_type", "key"], name="unique_role_per_type")]

    def __str__(self) -> str:
        return f"{self.asset_type.slug}.{self.key}"


def check_period_order(start: datetime | None, end: datetime | None, *, equal_ok: bool = False) -> None:
    """A form error on ``end`` when a period (a label, a maintenance window, a calibration) ends before it
    starts: the database's check constraint would otherwise be the message ("Constraint … is violated")."""
    if start is not None and end is not None and (end < start or (end == start and not equal_ok)):
        raise ValidationError(
            {
                "end": "The end must not be before the start."
                if equal_ok
                else "The end must be after the start."
            }
        )


def no_sensor_for(tag: str, roles: Collection[str]) -> str:
    """The one wording of a missing role, in training, scoring and on the asset page: "P-7 has no sensor
    for role vibration_y"."""
    roles = sorted(roles)
    return f"{tag} has no sensor for role{'s' if len(roles) > 1 else ''} {', '.join(roles)}"


class Asset(models.Model):
    """One machine on a site."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="assets")
    asset_type = models.ForeignKey(AssetType, on_delete=models.PROTECT, related_name="assets")
    name = models.CharField(max_length=120)
    tag = models.SlugField(max_length=60, help_text="Plant tag, unique within the site.")
    criticality = models.CharField(max_length=10, choices=Criticality.choices, default=Criticality.MEDIUM)
    location = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "tag"], name="unique_asset_tag_per_site")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("plant:asset", args=[self.pk])


class Sensor(models.Model):
    """A measurement channel of an asset; gateways address it by its key."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="sensors")
    key = models.CharField(max_length=100, unique=True, help_text="The key gateways send readings for.")
    role = models.ForeignKey(SensorRole, on_delete=models.PROTECT, related_name="sensors")
    unit = models.CharField(max_length=20, blank=True)
    valid_min = models.FloatField(null=True, blank=True, help_text="Lowest physically valid value.")
    valid_max = models.FloatField(null=True, blank=True, help_text="Highest physically valid value.")
    sample_period_s = models.FloatField(default=1.0, help_text="Expected seconds between readings.")
    needs_calibration = models.BooleanField(
        default=False,
        help_text="Marked for calibration: alerts driven by this sensor are held as sensor issues "
        "(set and cleared from the noise suggestions; who and when is an alerts.NoiseAction row).",
    )

    class Meta:
        ordering = ["asset", "role__key"]

    def __str__(self) -> str:
        return self.key


class Reading(models.Model):
    """One sample of one sensor. Written in bulk by plant.ingest, never one ORM object at a time."""

    # No database-level FK: its per-row trigger at commit cost ~a third of bulk-insert time. Only
    # plant.ingest writes readings, with sensor ids it has just resolved; Django's CASCADE still deletes them.
    sensor = models.ForeignKey(
        Sensor, on_delete=models.CASCADE, related_name="readings", db_index=False, db_constraint=False
    )
    ts = models.DateTimeField()
    value = models.FloatField()
    quality = models.PositiveSmallIntegerField(default=0, help_text="Bits of plant.choices.QualityFlag.")

    class Meta:
        # The unique index (sensor, ts) also serves every time-range read of one sensor.
        constraints = [models.UniqueConstraint(fields=["sensor", "ts"], name="unique_reading_sensor_ts")]

    def __str__(self) -> str:
        return f"{self.sensor_id}@{self.ts.isoformat()}={self.value}"


def hash_token(token: str) -> str:
    """Gateway tokens are 256-bit random strings, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


class Gateway(models.Model):
    """A data source of a site. Its clear token is shown once, at issue; only the hash is kept."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="gateways")
    name = models.CharField(max_length=120)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(max_length=12, editable=False, help_text="First characters of the token.")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["site", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.site})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, site: Site, name: str) -> tuple[Gateway, str]:
        """Create a gateway and return it with its clear token, which is not stored anywhere."""
        token = "vgl_" + secrets.token_urlsafe(32)
        gateway = cls.objects.create(
            site=site, name=name, token_hash=hash_token(token), token_hint=token[:10]
        )
        return gateway, token

    def rotate(self) -> str:
        token = "vgl_" + secrets.token_urlsafe(32)
        self.token_hash, self.token_hint, self.revoked_at = hash_token(token), token[:10], None
        self.save(update_fields=["token_hash", "token_hint", "revoked_at"])
        return token

    def revoke(self) -> None:
        Gateway.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.refresh_from_db(fields=["revoked_at"])

    @classmethod
    def authenticate(cls, token: str) -> Gateway | None:
        return (
            cls.objects.filter(token_hash=hash_token(token), revoked_at__isnull=True)
            .select_related("site")
            .first()
        )


class Label(models.Model):
    """Ground truth on a time range of an asset: a fault or normal behaviour, with who said so."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="labels")
    start = models.DateTimeField()
    end = models.DateTimeField()
    kind = models.CharField(max_length=10, choices=LabelKind.choices)
    fault_type = models.CharField(max_length=60, blank=True, help_text="e.g. bearing_wear, cavitation.")
    reason = models.CharField(
        max_length=60, blank=True, help_text="Why a range is normal (false-alarm reason)."
    )
    source = models.CharField(max_length=12, choices=LabelSource.choices, default=LabelSource.MANUAL)
    # The operator verdict a feedback label records (alerts.choices.Verdict's value); blank otherwise.
    verdict = models.CharField(max_length=20, blank=True, default="")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset", "start"]
        indexes = [models.Index(fields=["asset", "start"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gte=models.F("start")), name="label_end_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.asset} {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"

    def clean(self) -> None:
        check_period_order(self.start, self.end, equal_ok=True)


class EdgeAgent(models.Model):
    """What an edge agent last told the server about itself (heartbeat through its gateway's token)."""

    gateway = models.OneToOneField(Gateway, on_delete=models.CASCADE, related_name="edge_agent")
    agent_version = models.CharField(max_length=40, blank=True)
    last_contact_at = models.DateTimeField()
    models_in_use = models.JSONField(default=dict, help_text="asset tag -> sha256 of the model it runs")
    queue_readings = models.PositiveBigIntegerField(default=0)
    queue_events = models.PositiveIntegerField(default=0)
    oldest_unsent_at = models.DateTimeField(null=True, blank=True)
    queue_bytes = models.PositiveBigIntegerField(default=0)
    queue_max_bytes = models.PositiveBigIntegerField(default=0)
    dropped_total = models.PositiveBigIntegerField(default=0, help_text="Readings the agent dropped, ever.")
    local_alerts_24h = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["gateway"]

    def __str__(self) -> str:
        return f"edge agent of {self.gateway}"

    def is_silent(self, now: datetime | None = None) -> bool:
        """No report for more than VIGIL_EDGE_SILENT_AFTER_S: "silent" on the Edge page, "out of contact" on
        the card of an alert it decided whose readings it has not sent yet."""
        silent_after = timedelta(seconds=settings.VIGIL_EDGE_SILENT_AFTER_S)
        return (now or timezone.now()) - self.last_contact_at > silent_after

    def has_sent_up_to(self, until: datetime, *, reported_after: datetime) -> bool:
        """Whether its latest report, received after ``reported_after``, says its outbox holds nothing timed
        at or before ``until`` (the agent's clock): every reading it had up to then has left it — stored by
        the server, refused by it, or dropped from the full buffer (``EdgeDrop``). The agent reports after
        sending what it holds (``edge.forward``), so a report received after its alert event was recorded
        covers the readings it queued before that event."""
        return self.last_contact_at > reported_after and (
            self.oldest_unsent_at is None or self.oldest_unsent_at > until
        )

    @staticmethod
    def sent_up_to(until: Any, *, reported_after: Any, path: str = "") -> models.Q:
        """``has_sent_up_to`` as a filter on the agent reached through ``path`` (e.g. "gateway__edge_agent__"),
        with ``until`` and ``reported_after`` values or expressions (``OuterRef``): for a periodic query that
        must not ask about rows whose answer cannot have changed."""
        return models.Q(**{f"{path}last_contact_at__gt": reported_after}) & (
            models.Q(**{f"{path}oldest_unsent_at__isnull": True})
            | models.Q(**{f"{path}oldest_unsent_at__gt": until})
        )


class EdgeDrop(models.Model):
    """Readings an edge agent dropped from its full queue: never silent, shown on the Edge page."""

    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="edge_drops")
    at = models.DateTimeField()
    count = models.PositiveBigIntegerField()
    first_ts = models.DateTimeField()
    last_ts = models.DateTimeField()

    class Meta:
        ordering = ["-at"]
        constraints = [models.UniqueConstraint(fields=["gateway", "at", "first_ts"], name="unique_edge_drop")]


class Connection(models.Model):
    """A plant data source the bridge (``manage.py bridge``) connects to: an MQTT broker, an OPC UA server
    or a Modbus TCP device of one site.

    The password is stored encrypted (plant.connections.secrets, a key derived from the environment) or
    named as an environment variable to read at connect time; it is never shown back. The options are
    the protocol's own (connectivity.<protocol>.parse_options), validated when saved."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="connections")
    name = models.CharField(max_length=120)
    protocol = models.CharField(max_length=10, choices=Protocol.choices, default=Protocol.MQTT)
    endpoint = models.CharField(
        max_length=300,
        help_text="mqtt://host:1883, mqtts://host:8883, opc.tcp://host:4840, modbus://host:502",
    )
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    password_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[
            RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment variable name: letters, digits, _.")
        ],
        help_text="Read the password from this environment variable of the bridge instead of storing it.",
    )
    tls_ca_file = models.CharField(
        "TLS CA file", max_length=300, blank=True, help_text="Path on the bridge host."
    )
    tls_cert_file = models.CharField("TLS client certificate", max_length=300, blank=True)
    tls_key_file = models.CharField("TLS client key", max_length=300, blank=True)
    tls_verify = models.BooleanField("verify the server's certificate", default=True)
    interval_s = models.FloatField(
        "interval (s)",
        default=1.0,
        validators=[MinValueValidator(0.05), MaxValueValidator(3600)],
        help_text="Poll interval (OPC UA, Modbus); longest wait before received MQTT messages are stored.",
    )
    options = models.JSONField(default=dict, blank=True, help_text="Protocol options (JSON object).")
    enabled = models.BooleanField(default=True)
    write_back = models.BooleanField(
        default=False, help_text="Publish each asset's alert state back to this connection (opt-in)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="unique_connection_name_per_site")
        ]

    def __str__(self) -> str:
        protocol = self.get_protocol_display()
        # A name that says its protocol already ("Demo broker (MQTT)", the demo's) is not followed by it again.
        return self.name if protocol.lower() in self.name.lower() else f"{self.name} ({protocol})"

    def clean(self) -> None:
        """The endpoint and options as the protocol's client reads them (connectivity.protocols)."""
        errors: dict[str, str] = {}
        try:
            self.options = protocols.parse_options(self.protocol, self.options or {})
        except ValueError as exc:
            errors["options"] = str(exc)
        try:
            protocols.parse_endpoint(self.protocol, self.endpoint)
        except ValueError as exc:
            errors["endpoint"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def status_text(self, state: ConnectionState | None = None) -> str:
        """One line on the bridge's last report, for the console and the site page."""
        if not self.enabled:
            return "disabled"
        if state is None:
            try:
                state = self.state
            except ObjectDoesNotExist:
                return "not reported by the bridge yet"
        if state.config_error:
            return f"not started: {state.config_error}"
        if state.running and not state.is_current():
            # Silent for longer than it may be (bridge_silent_after, 30 s at least): never "just now".
            return "bridge not reporting (stopped or crashed?): last report " + ago(
                state.updated_at, seconds=True
            )
        if state.connected:
            return f"connected, {state.rate:.1f} readings/s"
        if not state.running:
            return "bridge not running"
        return "disconnected" + (
            f": {state.last_error_words() or state.last_error}" if state.last_error else ""
        )


class PointMapping(models.Model):
    """A source address of a connection (an MQTT topic and JSON path or Sparkplug metric, an OPC UA node,
    a Modbus register) feeding one Vigil sensor. ``address`` holds the protocol's fields, validated by its
    client's ``parse_point``."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="mappings")
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="mappings")
    address = models.JSONField(default=dict, help_text="The protocol's address fields (JSON object).")
    stale_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Set when the source says the value went stale."
    )

    class Meta:
        ordering = ["connection", "sensor__key"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "sensor"], name="unique_mapping_per_sensor")
        ]

    def __str__(self) -> str:
        return f"{self.connection.name}: {self.sensor.key}"

    def clean(self) -> None:
        if self.connection_id and self.sensor_id and self.sensor.asset.site_id != self.connection.site_id:
            raise ValidationError({"sensor": "The sensor must belong to the connection's site."})
        if self.connection_id:
            try:
                protocols.parse_point(self.connection.protocol, address_text(self.address))
            except ValueError as exc:
                raise ValidationError({"address": str(exc)}) from None


def address_text(address: object) -> dict[str, str]:
    if not isinstance(address, dict):
        raise ValueError("address must be a JSON object of field names to text")
    return {str(k): "" if v is None else str(v) for k, v in address.items()}


def bridge_silent_after() -> timedelta:
    """How old the bridge's last report of a connection may be before it no longer counts: ten status
    periods (VIGIL_BRIDGE_STATUS_S), at least 30 s (a report waits for its connection's database thread,
    which may be storing a large batch)."""
    return timedelta(seconds=max(30.0, 10 * settings.VIGIL_BRIDGE_STATUS_S))


class ConnectionState(models.Model):
    """What the bridge last reported about a connection (written by the bridge every few seconds)."""

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, primary_key=True, related_name="state"
    )
    running = models.BooleanField(default=False)
    connected = models.BooleanField(default=False)
    config_error = models.TextField(blank=True, help_text="Why the bridge does not start this connection.")
    started_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True, help_text="When it last connected.")
    written_at = models.DateTimeField(
        null=True, blank=True, help_text="When it last wrote an alert state back to the plant."
    )
    last_message_at = models.DateTimeField(null=True, blank=True)
    messages = models.BigIntegerField(default=0)
    stored = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    rate = models.FloatField(default=0.0, help_text="Readings stored per second, lately.")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_resolved_by = models.CharField(
        max_length=10,
        blank=True,
        help_text=(
            'What shows the last error is over: "connect", "write" (a clean write-back), "birth" (the '
            "birth of the Sparkplug B node it names) or nothing."
        ),
    )
    last_error_resolved_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text='When the birth that ends a "birth" last error came (empty while it is current).',
    )
    recent_errors = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"state of {self.connection_id}"

    def counted_text(self) -> str:
        """The period its counts (messages, stored, refused, errors) cover, in words: the bridge counts from
        its last start of the connection (its own start, or a restart after the configuration changed)."""
        if self.started_at is None:
            return ""
        if self.running and self.is_current():
            return f"since the bridge started it {ago(self.started_at)}"
        last = ago(self.updated_at, seconds=True)  # not reporting: silent for 30 s at least, never "just now"
        return f"in its last run: started {ago(self.started_at)}, last report {last}"

    def error_resolved(self) -> tuple[str, datetime] | None:
        """What the connection did successfully after its ``last_error`` that shows the error is over:
        ("connected", when) for a failed connection try (``last_error_resolved_by`` "connect"), ("wrote
        back", when) for a write-back failed or refused ("write"; a pass that recorded an error does not
        count as written back), ("saw the node born", when) for a Sparkplug B node's unanswered rebirth
        requests or data by an alias it never bound ("birth": the bridge records the birth of that node
        or, for a device's data, of that device or its node, ``last_error_resolved_at``; the words say
        "node" for both: a device's birth certificate is its node's message); None while the error is current, and always for a point's
        error (a bad value, a topic gone quiet, a unit not answering: no success of the connection or of
        another point says it is over).

        A start-up error (a PLC not up yet, a write-back refused) stays the last error for as long as
        nothing fails again, so once what it stopped has succeeded after it, it is history: the site page
        and the console show it as past, with what resolved it."""
        if not self.last_error or self.last_error_at is None:
            return None
        verb, moment = {
            "connect": ("connected", self.connected_at),
            "write": ("wrote back", self.written_at),
            "birth": ("saw the node born", self.last_error_resolved_at),
        }.get(self.last_error_resolved_by, ("", None))
        if moment is None or moment <= self.last_error_at:
            return None
        return verb, moment

    def last_error_words(self) -> str:
        """The last error in plain words for plant users (connectivity.error_words: what is wrong and what
        to check), "" when no rule knows it; the pages show ``last_error`` itself as the detail. A point's
        error (one no connection or write-back success ends) is worded only as the device's answer."""
        of_point = self.last_error_resolved_by not in (CONNECT, WRITE)
        return in_words(
            self.last_error, self.connection.protocol, self.connection.endpoint, of_point=of_point
        )

    def is_current(self, now: datetime | None = None) -> bool:
        """Whether the bridge reported recently enough for this row to be believed. A bridge killed by
        SIGKILL, the OOM killer or a power cut writes no last report: its last "running, connected" would
        stand for good. A row never reported (no ``updated_at``) is taken as it is."""
        if self.updated_at is None:
            return True
        return (now or timezone.now()) - self.updated_at <= bridge_silent_after()


class WriteBack(models.Model):
    """One asset's alert state waiting to be written back to a connection (the outbox the bridge empties).

    Rows are written by the alerts app after an alert's state changes (plant cannot import alerts) and
    carry the whole state of the asset, so publishing the latest row of an asset is enough and publishing
    it twice is harmless (MQTT: a retained message per asset)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="write_backs")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="+")
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["connection", "published_at"], name="writeback_pending")]

    def __str__(self) -> str:
        return f"write-back of {self.asset_id} to {self.connection_id}"


class ReadingRollup(models.Model):
    """Aggregates of one sensor's readings in one time bucket (plant.rollups keeps them).

    The sum and the count are stored instead of the mean so that buckets combine exactly into wider ones;
    ``total`` sums values clamped to +-plant.rollups.SUM_CLAMP (PostgreSQL raises on a float8 overflow).
    ``flagged`` counts readings with any quality bit; ``flag_bits`` is the OR of their bits and
    ``flagged_low``/``flagged_high`` their extremes (NULL without flagged readings): the chart's marks."""

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="+", db_index=False)
    start = models.DateTimeField()
    count = models.PositiveIntegerField()
    total = models.FloatField()
    low = models.FloatField()
    high = models.FloatField()
    flagged = models.PositiveIntegerField(default=0)
    flagged_low = models.FloatField(null=True, blank=True)
    flagged_high = models.FloatField(null=True, blank=True)
    flag_bits = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.sensor_id}@{self.start.isoformat()}: n={self.count}"

    @property
    def mean(self) -> float:
        return self.total / self.count


class ReadingRollupMinute(ReadingRollup):
    """1-minute rollups (plant.rollups)."""

    class Meta:
        # The unique index serves the upserts and every time-range read of one sensor.
        constraints = [models.UniqueConstraint(fields=["sensor", "start"], name="unique_rollup_minute")]


class ReadingRollupHour(ReadingRollup):
    """1-hour rollups (plant.rollups), combined from the minute rollups."""

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sensor", "start"], name="unique_rollup_hour")]


class RollupWatermark(models.Model):
    """How far plant.rollups has rolled up readings, by reading id (insertion order, not time).

    ``done_id``: every reading with a smaller or equal id is in the rollups. ``pending_id`` and
    ``pending_xids``: the highest id seen at the last pass and the PostgreSQL transactions then still
    writing; readings up to ``pending_id`` are rolled up once all of those have ended. ``checked_id``:
    readings up to it have been rolled up a second time, one run later (see plant.rollups)."""

    name = models.CharField(max_length=40, unique=True)
    done_id = models.BigIntegerField(default=0)
    checked_id = models.BigIntegerField(default=0)
    pending_id = models.BigIntegerField(default=0)
    pending_xids = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.done_id}"
