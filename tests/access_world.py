"""Two sites with one object of every registered model each, and one user per role: the world the access
matrix and the console scoping tests ask questions of.

Site A ("north") and site B ("south") share one pump asset type with assets on both, so only an engineer of
both sites may move its model versions. Rows are written with bulk_create where nothing reads them back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from django.db.models import Model
from django.utils import timezone

from alerts.models import (
    Alert,
    AlertEvent,
    Feedback,
    MaintenanceWindow,
    NoiseAction,
    Score,
    ThresholdOverride,
)
from handoff.models import CmmsConnection, WebhookDelivery, WebhookEndpoint, WorkOrder
from models_registry.models import (
    AssetBaseline,
    ModelIncident,
    ModelStatusChange,
    ModelVersion,
    RetrainRun,
)
from notify.models import Channel, Notification, QuietHours, Rule, Shift
from plant.connections.secrets import encrypt
from plant.models import Connection, Gateway, Label, PointMapping, Reading, Site
from tests.conftest import T0, make_asset, make_pump_type, make_site

A, B = "A", "B"
ROLES = ("anonymous", "gateway", "technician", "outsider", "engineer", "engineer_both", "superuser")


@dataclass
class World:
    sites: dict[str, Site]
    users: dict[str, User | None]
    token: str  # the gateway token of site A
    # "app_label.model" -> {"A": obj, "B": obj} for site-scoped rows, {None: obj} for shared ones
    objects: dict[str, dict[str | None, Model]] = field(default_factory=dict)

    def obj(self, label: str, site: str | None = None) -> Model:
        return self.objects[label][site]

    def add(self, obj: Model, site: str | None = None) -> Model:
        self.objects.setdefault(obj._meta.label_lower, {})[site] = obj
        return obj


def make_role_user(username: str, group: str | None, *sites: Site, superuser: bool = False) -> User:
    """A user without a usable password (tests log in with force_login): no hashing cost."""
    user = User.objects.create(
        username=username, is_staff=group == "engineer" or superuser, is_superuser=superuser
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    for site in sites:
        site.members.add(user)
    return user


def build_world() -> World:
    now = timezone.now()
    pump = make_pump_type()
    sites = {A: make_site("north"), B: make_site("south")}
    users: dict[str, User | None] = {
        "anonymous": None,
        "gateway": None,
        "technician": make_role_user("tess", "technician", sites[A]),
        "outsider": make_role_user("otto", "technician", sites[B]),
        "engineer": make_role_user("enzo", "engineer", sites[A]),
        "engineer_both": make_role_user("bea", "engineer", sites[A], sites[B]),
        "superuser": make_role_user("root", None, superuser=True),
    }
    gateway, token = Gateway.issue(sites[A], "edge-a")
    world = World(sites=sites, users=users, token=token)
    world.add(pump)
    world.add(pump.roles.first())
    world.add(users["technician"])
    world.add(Group.objects.get(name="engineer"))

    champion = world.add(
        ModelVersion(
            name="pump-anomaly",
            version=1,
            kind="anomaly",
            asset_type=pump,
            sha256="0" * 64,
            feature_spec=["vibration__mean"],
            output_spec={"name": "score"},
            open_threshold=10.0,
            clear_threshold=5.0,
            status="champion",
        )
    )
    champion.onnx_file.save("pump-anomaly-v1.onnx", ContentFile(b"not a real model"), save=True)
    world.add(ModelStatusChange.objects.create(version=champion, from_status="", to_status="champion"))
    world.add(ModelIncident.objects.create(version=champion, kind="runtime", message="boom"))
    world.add(RetrainRun.objects.create(asset_type=pump, kind="anomaly"))

    for key, site in sites.items():
        asset = world.add(make_asset(site, tag=f"p-{key.lower()}", asset_type=pump), key)
        sensor = world.add(asset.sensors.order_by("pk").first(), key)
        world.add(site, key)
        world.add(site.memberships.first(), key)
        if key == A:
            world.add(gateway, key)
        else:
            world.add(Gateway.issue(site, "edge-b")[0], key)
        # Two readings an hour apart give the compare page a non-empty default period.
        Reading.objects.bulk_create(
            [
                Reading(sensor=sensor, ts=T0, value=1.0),
                Reading(sensor=sensor, ts=T0 + timedelta(hours=1), value=1.0),
            ]
        )
        world.add(Reading.objects.filter(sensor=sensor).earliest("ts"), key)
        world.add(Label.objects.create(asset=asset, start=T0, end=T0 + timedelta(hours=1), kind="fault"), key)
        connection = world.add(
            Connection.objects.create(site=site, name=f"broker-{key}", endpoint="mqtt://127.0.0.1:1883"), key
        )
        world.add(
            PointMapping.objects.create(connection=connection, sensor=sensor, address={"topic": "a/b"}), key
        )
        opened = now - timedelta(hours=1)
        alert = world.add(
            Alert.objects.create(
                asset=asset,
                model_version=champion,
                kind="anomaly",
                opened_at=opened,
                first_window_start=opened - timedelta(minutes=1),
                last_seen_at=opened + timedelta(minutes=2),
                peak_score=12.0,
                peak_window_end=opened,
                window_count=3,
                dominant_role="vibration",
            ),
            key,
        )
        world.add(AlertEvent.objects.create(alert=alert, at=opened, from_state="", to_state="open"), key)
        # One current false-alarm verdict makes (asset, champion, vibration) a noise group when the test
        # sets VIGIL_NOISE_DISMISSALS to 1.
        world.add(
            Feedback.objects.create(
                alert=alert, asset=asset, kind="verdict", verdict="false_alarm", reason="sensor_glitch"
            ),
            key,
        )
        world.add(
            Score.objects.create(asset=asset, model_version=champion, window_end=opened, score=12.0), key
        )
        world.add(MaintenanceWindow.objects.create(asset=asset, start=now, end=now + timedelta(hours=2)), key)
        override = world.add(
            ThresholdOverride.objects.create(
                asset=asset, model_version=champion, open_threshold=20.0, clear_threshold=15.0
            ),
            key,
        )
        world.add(NoiseAction.objects.create(kind="raise_threshold", asset=asset, override=override), key)
        world.add(
            AssetBaseline.objects.create(
                asset=asset,
                feature_names=["vibration__mean"],
                vector=[1.0],
                start=T0,
                end=T0 + timedelta(hours=1),
                window_count=10,
                source="manual",
            ),
            key,
        )
        channel = world.add(
            Channel.objects.create(
                site=site, name=f"inbox-{key}", url_encrypted=encrypt(f"vigil://{site.slug}")
            ),
            key,
        )
        world.add(Rule.objects.create(site=site, name="everything", channel=channel), key)
        world.add(Shift.objects.create(site=site, start="06:00", end="18:00", channel=channel), key)
        world.add(QuietHours.objects.create(site=site, start="22:00", end="06:00"), key)
        world.add(
            Notification.objects.create(
                alert=alert, channel=channel, kind="opened", tier=1, title="t", body="b"
            ),
            key,
        )
        endpoint = world.add(
            WebhookEndpoint.objects.create(site=site, name=f"hook-{key}", url="https://hooks.example/"), key
        )
        world.add(
            WebhookDelivery.objects.create(
                endpoint=endpoint,
                event_id=uuid.uuid4(),
                event_type="alert.state_changed",
                alert=alert,
                payload={},
            ),
            key,
        )
        cmms = world.add(CmmsConnection.objects.create(site=site, url="https://cmms.example/"), key)
        world.add(WorkOrder.objects.create(alert=alert, connection=cmms, trigger="manual"), key)
    return world
