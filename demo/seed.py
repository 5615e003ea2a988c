"""The demo plant: sites, pumps, sensors, users and the simulator's gateway, created idempotently, and the
anomaly champion it starts with (bootstrap_demo_champion)."""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import timedelta
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction

from models_registry.choices import ModelKind
from notify.models import Channel, Rule
from plant.connections.secrets import encrypt
from models_registry.services import current_champion, promote, train_and_register
from plant.choices import Criticality, Role
from plant.ingest import ParsedBatch, ingest_readings
from plant.models import (
    Asset,
    AssetType,
    Connection,
    Gateway,
    PointMapping,
    Sensor,
    SensorRole,
    Site,
    SiteMembership,
)
from plant.ingest.hooks import bulk_load
from plant.simulator import FaultSchedule, PlantSimulator
from plant.simulator_client import sim_assets
from plant.simulator_devices import MODBUS_ALARM_COIL, MODBUS_SEVERITY_REGISTER, MODBUS_UNIT, modbus_address
from plant.simulator_mqtt import mapping_address
from plant.sites import get_site

DEMO_SITE = ("demo-plant", "Demo Plant")
OTHER_SITE = ("east-works", "East Works")
PUMP_TYPE = ("centrifugal-pump", "Centrifugal pump")
DEMO_GATEWAY = "demo-simulator"
MAX_DEMO_ASSETS = 200
# The demo's escalation delay: short, so an alert left alone reaches the supervisor's box within minutes.
DEMO_ESCALATE_AFTER = timedelta(minutes=2)
# The pumps the demo's simulator publishes over MQTT (the others post to the HTTP API), and the
# connection the bridge reads them through; it also writes every pump's alert state back.
# How the demo's pumps reach Vigil (issue 15/16): p-106 posts to the API, p-102 publishes JSON and p-104
# Sparkplug B over MQTT, p-103 is an OPC UA server and p-105 a Modbus TCP server (the simulated PLCs the
# bridge reads), and p-101's Modbus device is read by the demo's edge agent, which forwards it.
DEMO_MQTT_JSON = ("p-102",)
DEMO_MQTT_SPARKPLUG = ("p-104",)
DEMO_OPCUA = ("p-103",)
DEMO_MODBUS = ("p-105",)
DEMO_EDGE = ("p-101",)
DEMO_CONNECTION = "Demo broker (MQTT)"
DEMO_OPCUA_CONNECTION = "Demo PLC (OPC UA)"
DEMO_MODBUS_CONNECTION = "Demo PLC (Modbus TCP)"
DEMO_EDGE_GATEWAY = "demo-edge-agent"

# role key, label, unit, valid_min, valid_max: the keys are the ones plant.simulator generates.
PUMP_ROLES: tuple[tuple[str, str, str, float, float], ...] = (
    ("vibration", "Vibration RMS", "mm/s", 0.0, 50.0),
    ("temperature", "Bearing temperature", "°C", -20.0, 150.0),
    ("current", "Motor current", "A", 0.0, 400.0),
    ("pressure", "Discharge pressure", "bar", 0.0, 25.0),
    ("flow", "Flow", "m³/h", 0.0, 600.0),
)

_PUMP_NAMES = (
    ("Cooling water pump", Criticality.HIGH),
    ("Boiler feed pump", Criticality.HIGH),
    ("Condensate pump", Criticality.MEDIUM),
    ("Process water pump", Criticality.MEDIUM),
    ("Transfer pump", Criticality.LOW),
    ("Wash water pump", Criticality.LOW),
)

# A supervisor is no group: plant.access.can_see_health lets staff users see the alert health page, the
# metrics API and the export of their sites, and the board is every member's. The name is only printed.
SUPERVISOR = "supervisor"
# username, role (a plant.choices.Role group, or SUPERVISOR), sites it belongs to; engineers and the
# supervisor are staff.
DEMO_USERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tech1", Role.TECHNICIAN, (DEMO_SITE[0],)),
    ("tech2", Role.TECHNICIAN, (DEMO_SITE[0],)),
    ("supervisor", SUPERVISOR, (DEMO_SITE[0],)),
    ("engineer", Role.ENGINEER, (DEMO_SITE[0], OTHER_SITE[0])),
    ("outsider", Role.TECHNICIAN, (OTHER_SITE[0],)),
)


@dataclass
class DemoSeed:
    """What seed_demo created: the clear gateway token and each user's (username, password, role)."""

    gateway_token: str
    users: list[tuple[str, str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"GATEWAY_TOKEN={self.gateway_token}"] + [
            f"USER={username} PASSWORD={password} ROLE={role}" for username, password, role in self.users
        ]


def demo_pump_tags(assets: int = 6) -> list[str]:
    """The tags of the demo plant's pumps that seed_demo makes for ``assets`` pumps."""
    return [f"p-{101 + i}" for i in range(assets)]


def seed_demo(assets: int = 6, credentials_path: Path | None = None) -> DemoSeed:
    """Create or update the demo plant; running it again changes nothing but the gateway token.

    Passwords are random on first run and kept in `credentials_path` (default VAR_DIR/demo_credentials.json,
    mode 0600) so that re-runs print the same ones; a password that no longer works (database reset, user
    changed it) is set again, so the printed one always logs in.
    """
    if not 1 <= assets <= MAX_DEMO_ASSETS:
        raise ValueError(f"--assets must be between 1 and {MAX_DEMO_ASSETS} (got {assets})")
    credentials_path = credentials_path or Path(settings.VAR_DIR) / "demo_credentials.json"
    with transaction.atomic():
        demo = _site(*DEMO_SITE)
        east = _site(*OTHER_SITE)
        pump = _pump_type()
        for i, tag in enumerate(demo_pump_tags(assets)):
            _pump(demo, pump, tag, i)
        for i in range(2):
            _pump(east, pump, f"e-{201 + i}", i + 2)
        passwords = _load_passwords(credentials_path)
        seeded_users = []
        sites = {demo.slug: demo, east.slug: east}
        for username, role, site_slugs in DEMO_USERS:
            passwords[username] = _user(
                username, role, [sites[s] for s in site_slugs], passwords.get(username)
            )
            seeded_users.append((username, passwords[username], str(role)))
        seed_demo_notifications(demo)
        gateway = Gateway.objects.filter(site=demo, name=DEMO_GATEWAY).order_by("pk").first()
        if gateway is None:
            gateway, token = Gateway.issue(demo, DEMO_GATEWAY)
        else:
            token = gateway.rotate()
    _save_passwords(credentials_path, passwords)
    return DemoSeed(gateway_token=token, users=seeded_users)


def seed_demo_notifications(site: Site) -> None:
    """The demo site's notifications: every alert to the technicians' box of the inbox page
    (vigil://<slug>/technicians), and an alert nobody acknowledges within DEMO_ESCALATE_AFTER to the
    supervisor's box, so an escalation shows within minutes. Left as they are once they exist."""
    boxes = {}
    for name, box in (("Technicians (inbox page)", "technicians"), ("Supervisor (inbox page)", "supervisor")):
        boxes[box], created = Channel.objects.get_or_create(site=site, name=name)
        if created or not (boxes[box].url_encrypted or boxes[box].url_env):
            boxes[box].url_encrypted = encrypt(f"vigil://{site.slug}/{box}")
            boxes[box].save(update_fields=["url_encrypted"])
    Rule.objects.get_or_create(
        site=site,
        name="Every alert to the technicians",
        defaults={"tier": 1, "channel": boxes["technicians"], "escalate_after": DEMO_ESCALATE_AFTER},
    )
    Rule.objects.get_or_create(
        site=site,
        name="Unacknowledged to the supervisor",
        defaults={"tier": 2, "channel": boxes["supervisor"]},
    )


def seed_demo_connection(endpoint: str) -> Connection:
    """The demo site's MQTT connection to `endpoint` (created or updated), with a point per sensor of the
    DEMO_MQTT_JSON and DEMO_MQTT_SPARKPLUG pumps, addressed as the simulator publishes them."""
    site = Site.objects.get(slug=DEMO_SITE[0])
    with transaction.atomic():
        connection, _ = Connection.objects.update_or_create(
            site=site,
            name=DEMO_CONNECTION,
            defaults={"protocol": "mqtt", "endpoint": endpoint, "enabled": True, "write_back": True},
        )
        tags = {tag: False for tag in DEMO_MQTT_JSON} | {tag: True for tag in DEMO_MQTT_SPARKPLUG}
        for sensor in Sensor.objects.filter(asset__site=site, asset__tag__in=list(tags)).select_related(
            "asset", "role"
        ):
            address = mapping_address(site.slug, sensor.asset.tag, sensor.role.key, tags[sensor.asset.tag])
            PointMapping.objects.update_or_create(
                connection=connection, sensor=sensor, defaults={"address": address}
            )
    return connection


def _site(slug: str, name: str) -> Site:
    site, _ = Site.objects.get_or_create(slug=slug, defaults={"name": name})
    return site


def _pump_type() -> AssetType:
    asset_type, _ = AssetType.objects.get_or_create(
        slug=PUMP_TYPE[0],
        defaults={
            "name": PUMP_TYPE[1],
            "description": "Motor-driven centrifugal pump on a variable-speed drive.",
        },
    )
    for key, label, unit, _low, _high in PUMP_ROLES:
        SensorRole.objects.update_or_create(
            asset_type=asset_type, key=key, defaults={"label": label, "unit": unit}
        )
    return asset_type


def _pump(site: Site, asset_type: AssetType, tag: str, index: int) -> Asset:
    name, criticality = _PUMP_NAMES[index % len(_PUMP_NAMES)]
    asset, _ = Asset.objects.get_or_create(
        site=site,
        tag=tag,
        defaults={
            "asset_type": asset_type,
            "name": f"{tag.upper()} {name}",
            "criticality": criticality,
            "location": f"{site.name}, bay {index // 2 + 1}",
        },
    )
    roles = {role.key: role for role in asset_type.roles.all()}
    for key, _label, unit, low, high in PUMP_ROLES:
        Sensor.objects.update_or_create(
            key=f"{site.slug}.{tag}.{key}",
            defaults={
                "asset": asset,
                "role": roles[key],
                "unit": unit,
                "valid_min": low,
                "valid_max": high,
                "sample_period_s": 1.0,
            },
        )
    return asset


def _user(username: str, role: str, sites: list[Site], password: str | None) -> str:
    user, created = User.objects.get_or_create(username=username)
    user.is_staff = role in (Role.ENGINEER, SUPERVISOR)
    user.is_active = True
    if created or not password or not user.check_password(password):
        password = password or secrets.token_urlsafe(12)
        user.set_password(password)
    user.save()
    if role in Role.values:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    for site in sites:
        SiteMembership.objects.get_or_create(site=site, user=user)
    return password


def _load_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A damaged file only costs new passwords, which are printed anyway.
        return {}
    passwords = data.get("passwords", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in passwords.items() if isinstance(v, str) and v}


def _save_passwords(path: Path, passwords: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"passwords": passwords}, handle, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


DEMO_MODEL_REASON = "demo bootstrap"
# Overlapping 60 s windows are strongly correlated, so the default 99.5 % hold-out quantile lets a few
# unusual-but-normal duty points through three windows in a row; the demo's faults score one to three
# orders of magnitude higher, so the bootstrap model takes (nearly) the hold-out maximum over a larger hold-out.
DEMO_TRAINING_PARAMS = {
    "open_quantile": 0.9999,
    "clear_quantile": 0.99,
    "holdout_fraction": 0.5,
}


def bootstrap_demo_champion(
    hours: float = 2.0, *, now: float | None = None, log: Callable[[str], None] = print
) -> object | None:
    """Give the demo pumps an anomaly champion so that simulated faults open alerts.

    When the pump type has no anomaly champion: ingest `hours` of fault-free simulated history for the demo
    site's assets in-process (ingest_readings, no HTTP; the simulator's own backfill later overlaps it with
    identical samples, stored once), train an anomaly model on it and promote it. Returns the new champion,
    or None when there already is one (idempotent). The assets are left due: the worker's sweep scores
    the history once it runs.
    """
    pump = AssetType.objects.filter(slug=PUMP_TYPE[0]).first()
    if pump is None:
        raise ValueError("the demo plant is not seeded; run seed_demo first")
    if current_champion(pump, ModelKind.ANOMALY) is not None:
        return None
    site = get_site(DEMO_SITE[0])
    assets, _skipped = sim_assets(site)
    if not assets:
        raise ValueError(f"site {site.slug!r} has no assets with simulated sensors")
    end = float(int(time.time() if now is None else now))
    start = end - hours * 3600.0
    simulator = PlantSimulator(assets, seed=0, faults=FaultSchedule(), origin=end)
    started = time.monotonic()
    chunk_s = 900.0
    with bulk_load():
        t = start
        while t < end:
            keys, ts, values = simulator.step(t, min(t + chunk_s, end))
            ingest_readings(None, ParsedBatch.from_arrays(keys.tolist(), ts, values), now_s=end)
            t += chunk_s
    log(
        f"backfilled {hours:g} h of fault-free history for {len(assets)} assets in {time.monotonic() - started:.1f} s"
    )
    version = train_and_register(pump, ModelKind.ANOMALY, seed=0, params=DEMO_TRAINING_PARAMS)
    promote(version, reason=DEMO_MODEL_REASON)
    log(
        f"trained and promoted {version} (open {version.open_threshold:.3g}, clear {version.clear_threshold:.3g})"
    )
    return version


def opcua_address(tag: str, role: str) -> dict[str, str]:
    """The mapping of one sensor of a simulated OPC UA pump (plant.simulator_devices: ns=2;s=<tag>.<role>)."""
    return {"node_id": f"ns=2;s={tag}.{role}", "sampling_interval_ms": "1000"}


def modbus_mapping(role: str) -> dict[str, str]:
    """The mapping of one sensor of a simulated Modbus pump (float32 holding registers, unit 1)."""
    return {
        "unit_id": str(MODBUS_UNIT),
        "function": "holding_register",
        "address": str(modbus_address(role)),
        "data_type": "float32",
    }


def seed_demo_ot_connections(opcua_endpoint: str, modbus_endpoint: str) -> list[Connection]:
    """The demo site's OPC UA and Modbus connections to the simulated PLCs (created or updated), a point per
    sensor of the DEMO_OPCUA / DEMO_MODBUS pumps, and each pump's alarm nodes / coil as write-back targets."""
    site = Site.objects.get(slug=DEMO_SITE[0])
    plans = (
        (
            DEMO_OPCUA_CONNECTION,
            "opcua",
            opcua_endpoint,
            DEMO_OPCUA,
            lambda tag, role: opcua_address(tag, role),
            [
                {
                    "asset_tag": tag,
                    "text_node": f"ns=2;s={tag}.alert_text",
                    "severity_node": f"ns=2;s={tag}.alert_severity",
                    "alarm_node": f"ns=2;s={tag}.alarm",
                }
                for tag in DEMO_OPCUA
            ],
        ),
        (
            DEMO_MODBUS_CONNECTION,
            "modbus",
            modbus_endpoint,
            DEMO_MODBUS,
            lambda tag, role: modbus_mapping(role),
            [
                {
                    "asset_tag": tag,
                    "unit_id": MODBUS_UNIT,
                    "alarm_coil": MODBUS_ALARM_COIL,
                    "severity_register": MODBUS_SEVERITY_REGISTER,
                }
                for tag in DEMO_MODBUS
            ],
        ),
    )
    made = []
    with transaction.atomic():
        for name, protocol, endpoint, tags, address, targets in plans:
            connection, _ = Connection.objects.update_or_create(
                site=site,
                name=name,
                defaults={
                    "protocol": protocol,
                    "endpoint": endpoint,
                    "enabled": True,
                    "write_back": True,
                    "options": {"write_targets": targets},
                },
            )
            for sensor in Sensor.objects.filter(asset__site=site, asset__tag__in=list(tags)).select_related(
                "asset", "role"
            ):
                PointMapping.objects.update_or_create(
                    connection=connection,
                    sensor=sensor,
                    defaults={"address": address(sensor.asset.tag, sensor.role.key)},
                )
            made.append(connection)
    return made
