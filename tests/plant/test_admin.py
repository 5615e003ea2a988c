from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from plant.choices import QualityFlag
from plant.models import Asset, Gateway, Label, Reading, Sensor, Site, hash_token
from tests.conftest import T0, make_readings

pytestmark = pytest.mark.django_db

MODELS = ["site", "assettype", "asset", "sensor", "gateway", "label", "reading"]
TOKEN = re.compile(r"vgl_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def console(client, engineer, asset):
    make_readings(asset.sensors.first(), T0, np.arange(5), quality=[0, 0, QualityFlag.SPIKE, 0, 0])
    Label.objects.create(
        asset=asset, start=T0, end=T0 + timedelta(hours=1), kind="fault", fault_type="bearing"
    )
    Gateway.issue(asset.site, "edge-1")
    client.force_login(engineer)
    return client


@pytest.mark.parametrize("model", MODELS)
def test_every_changelist_loads_for_an_engineer(console, model):
    assert console.get(reverse(f"admin:plant_{model}_changelist")).status_code == 200


@pytest.mark.parametrize("model", [m for m in MODELS if m != "reading"])
def test_every_add_page_loads_for_an_engineer(console, model):
    assert console.get(reverse(f"admin:plant_{model}_add")).status_code == 200


@pytest.mark.parametrize("model", ["site", "asset", "sensor", "gateway", "label"])
def test_every_change_page_loads_for_an_engineer(console, model):
    obj = {"site": Site, "asset": Asset, "sensor": Sensor, "gateway": Gateway, "label": Label}[
        model
    ].objects.first()
    assert console.get(reverse(f"admin:plant_{model}_change", args=[obj.pk])).status_code == 200


def test_readings_are_read_only_and_filterable_by_flag(console):
    url = reverse("admin:plant_reading_changelist")
    assert console.get(reverse("admin:plant_reading_add")).status_code == 403
    flagged = console.get(url + f"?quality={int(QualityFlag.SPIKE)}")
    assert flagged.status_code == 200
    assert [r.value for r in flagged.context["cl"].result_list] == [2.0]
    assert len(console.get(url + "?quality=clean").context["cl"].result_list) == 4
    # "²" passed str.isdigit() and int() refused it: a 500 instead of the unfiltered list.
    assert len(console.get(url + "?quality=%C2%B2").context["cl"].result_list) == 5
    reading = Reading.objects.first()
    page = console.get(reverse("admin:plant_reading_change", args=[reading.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content


def test_technicians_cannot_enter_the_console(client, technician):
    client.force_login(technician)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response.url
    assert client.get(reverse("admin:plant_gateway_changelist")).status_code == 302


def test_engineers_see_only_their_sites_objects(console, other_asset):
    response = console.get(reverse("admin:plant_asset_changelist"))
    assert [a.tag for a in response.context["cl"].result_list] == ["p-101"]
    assert console.get(reverse("admin:plant_asset_change", args=[other_asset.pk])).status_code == 302
    add_page = console.get(reverse("admin:plant_gateway_add"))
    assert list(add_page.context["adminform"].form.fields["site"].queryset) == [
        Site.objects.get(slug="north")
    ]


def test_adding_a_gateway_shows_its_token_once_and_stores_only_the_hash(console, site):
    response = console.post(
        reverse("admin:plant_gateway_add"), {"site": site.pk, "name": "edge-9"}, follow=True
    )
    assert response.status_code == 200
    tokens = TOKEN.findall(response.content.decode())
    assert len(tokens) == 1
    gateway = Gateway.objects.get(name="edge-9")
    assert gateway.token_hash == hash_token(tokens[0])
    assert gateway.token_hint == tokens[0][:10]
    assert Gateway.authenticate(tokens[0]) == gateway
    # The token is gone on the next page view and is nowhere in the database in the clear.
    again = console.get(reverse("admin:plant_gateway_change", args=[gateway.pk]))
    assert not TOKEN.search(again.content.decode().replace(gateway.token_hint, ""))
    assert tokens[0] not in str(list(Gateway.objects.values()))


def gateway_action(console, action: str, gateway: Gateway, *, follow: bool = True):
    """Run the gateways changelist's `action` on `gateway` (with `follow`, the response after a redirect)."""
    return console.post(
        reverse("admin:plant_gateway_changelist"),
        {"action": action, "_selected_action": [gateway.pk]},
        follow=follow,
    )


def test_the_revoke_action_revokes_the_selected_gateways(console, site):
    gateway, token = Gateway.issue(site, "edge-2")
    response = gateway_action(console, "revoke_selected", gateway)
    assert b"Revoked 1 gateway." in response.content
    gateway.refresh_from_db()
    assert gateway.revoked_at is not None
    assert Gateway.authenticate(token) is None


def test_issuing_a_new_token_replaces_the_old_one(console, site):
    gateway, old = Gateway.issue(site, "edge-3")
    response = gateway_action(console, "issue_new_token", gateway)
    tokens = TOKEN.findall(response.content.decode())
    assert len(tokens) == 1 and tokens[0] != old
    assert Gateway.authenticate(old) is None
    assert Gateway.authenticate(tokens[0]).pk == gateway.pk


def test_an_engineer_who_creates_a_site_becomes_its_member(console, engineer):
    console.post(
        reverse("admin:plant_site_add"),
        {
            "name": "East",
            "slug": "east",
            "timezone": "UTC",
            "shift_starts": "06:00,14:00,22:00",  # the add form's initial value
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert Site.objects.get(slug="east").members.filter(pk=engineer.pk).exists()


def token_shown_once(console, response) -> str:
    """The one token on the answer page, checked to be nowhere the browser keeps it: not in a cookie (the
    messages cookie is signed, not encrypted), the session, a queued message or the next page."""
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    (token,) = TOKEN.findall(response.content.decode())
    kept = [morsel.value for morsel in response.cookies.values()]
    kept += [morsel.value for morsel in console.cookies.values()]
    kept.append(repr(dict(console.session.items())))
    assert token not in " ".join(kept)
    assert not list(response.context["messages"])
    assert token not in console.get(reverse("admin:plant_gateway_changelist")).content.decode()
    return token


def test_an_issued_token_is_on_the_answer_page_only_never_in_cookies_messages_or_session(console, site):
    response = console.post(reverse("admin:plant_gateway_add"), {"site": site.pk, "name": "edge-7"})
    token = token_shown_once(console, response)
    assert Gateway.authenticate(token).name == "edge-7"


def test_a_rotated_token_is_on_the_answer_page_only(console, site):
    gateway, _old = Gateway.issue(site, "edge-8")
    response = gateway_action(console, "issue_new_token", gateway, follow=False)
    assert Gateway.authenticate(token_shown_once(console, response)).pk == gateway.pk


def test_an_engineer_cannot_rotate_another_sites_gateway_token(console, other_site):
    gateway, old = Gateway.issue(other_site, "edge-south")
    response = gateway_action(console, "issue_new_token", gateway, follow=False)
    assert not TOKEN.findall(response.content.decode())
    assert Gateway.authenticate(old).pk == gateway.pk


def test_a_raw_id_field_refuses_another_sites_asset(console, other_asset):
    response = console.post(
        reverse("admin:plant_label_add"),
        {
            "asset": other_asset.pk,
            "start_0": "2026-01-05",
            "start_1": "08:00:00",
            "end_0": "2026-01-05",
            "end_1": "09:00:00",
            "kind": "fault",
            "source": "manual",
        },
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Label.objects.filter(asset=other_asset).exists()
    # The form shown again with its error does not name the other site's asset beside the raw-id box.
    assert other_asset.name not in response.content.decode()


@pytest.mark.parametrize(
    "url, param", [("admin:plant_label_add", "asset"), ("admin:plant_pointmapping_add", "sensor")]
)
def test_a_raw_id_field_prefilled_with_another_sites_object_does_not_name_it(
    console, asset, other_asset, url, param
):
    """Django's raw-id widget printed the name of any object whose id the query string gave (the whole
    table, not the field's scoped choices): ?asset=<another site's asset> named it to an engineer."""
    other = {"asset": other_asset, "sensor": other_asset.sensors.first()}[param]
    own = {"asset": asset, "sensor": asset.sensors.first()}[param]
    response = console.get(f"{reverse(url)}?{param}={other.pk}")
    assert response.status_code == 200
    assert str(other) not in response.content.decode()
    # An object of the engineer's own site is still named.
    response = console.get(f"{reverse(url)}?{param}={own.pk}")
    assert str(own) in response.content.decode()


def test_an_asset_types_sensor_roles_show_whether_each_is_required(console, asset):
    role = asset.asset_type.roles.get(key="vibration")
    role.required = False
    role.save()

    page = console.get(reverse("admin:plant_assettype_change", args=[asset.asset_type_id]))

    assert page.status_code == 200
    html = page.content.decode()
    index = list(asset.asset_type.roles.order_by("asset_type", "key")).index(role)
    assert f'name="roles-{index}-required"' in html
    boxes = {int(i): tag for tag, i in re.findall(r'(<input[^>]*name="roles-(\d+)-required"[^>]*>)', html)}
    assert len(boxes) == asset.asset_type.roles.count() + 1  # the roles and one blank form
    assert [" checked" in tag for i, tag in sorted(boxes.items())][: len(boxes) - 1] == [
        r.required for r in asset.asset_type.roles.order_by("asset_type", "key")
    ]
    assert " checked" not in boxes[index]


def test_an_asset_types_window_fields_say_what_they_are_and_their_unit(console, asset):
    html = console.get(reverse("admin:plant_assettype_change", args=[asset.asset_type_id])).content.decode()
    assert '<label class="required" for="id_window_s">Window length (s):</label>' in html
    assert '<label class="required" for="id_step_s">Step between windows (s):</label>' in html
    listing = console.get(reverse("admin:plant_assettype_changelist")).content.decode()
    assert "Window length (s)" in listing and "Step between windows (s)" in listing
    assert "Window s" not in html + listing and "Step s" not in html + listing


@pytest.mark.parametrize(
    "query",
    [
        "key=%00",  # a field lookup Django hands to the database unchecked (PostgreSQL: a 500)
        "key=a%00b",
        "asset__tag=p%01x",
        "%00=1",
    ],
)
def test_a_control_character_in_a_console_query_is_a_400_naming_the_parameter(console, query):
    response = console.get(reverse("admin:plant_sensor_changelist") + "?" + query)
    assert response.status_code == 400
    assert "control character" in response.content.decode()


def test_a_console_query_with_ordinary_lookups_still_filters(console, asset):
    sensor = asset.sensors.order_by("key").first()
    response = console.get(reverse("admin:plant_sensor_changelist"), {"key": sensor.key})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


@pytest.mark.parametrize(
    "url, query",
    [
        # Django hands these to the database unchecked; PostgreSQL or psycopg refused them there (a 500).
        ("admin:notify_rule_changelist", "escalate_after=abc"),
        ("admin:notify_rule_changelist", "escalate_after=" + "9" * 30),
        ("admin:axes_accessattempt_changelist", "ip_address=abc"),
        ("admin:plant_sensor_changelist", "key__exact=a%00b"),
    ],
)
def test_a_lookup_value_its_field_cannot_read_is_a_400_naming_the_parameter(client, url, query):
    client.force_login(User.objects.create_superuser("root"))
    response = client.get(reverse(url) + "?" + query)
    body = response.content.decode()
    assert response.status_code == 400 and body.startswith(f"Bad query string: {query.split('=')[0]}: ")


@pytest.mark.parametrize("page, field", [("group_add", "permissions"), ("user_change", "groups")])
def test_a_many_to_many_id_past_a_database_integer_is_a_form_error(admin_client, admin_user, page, field):
    """A 30-digit id among a many-to-many field's choices reached the database's IN query (on SQLite:
    OverflowError, a 500); it is the field's "not one of the available choices" error and nothing is saved."""
    huge = "9" * 30
    url = reverse(f"admin:auth_{page}", args=[admin_user.pk] if page == "user_change" else [])
    response = admin_client.post(url, {"name": "fitters", "username": "renamed", field: [huge]})
    assert response.status_code == 200
    assert f"Select a valid choice. {huge} is not one of the available choices." in response.content.decode()
    assert not Group.objects.filter(name="fitters").exists()
    assert not User.objects.filter(username="renamed").exists()


@pytest.mark.parametrize("value", ["\u00b2\u00b2:00", "06:\u00b3\u00b3", "\u0660\u0666:00"])
def test_shift_starts_in_digits_that_are_not_ascii_are_a_validation_error(value):
    # "²²" passed str.isdigit() and int() refused it: a ValueError (a 500) instead of the form's error.
    from django.core.exceptions import ValidationError

    from plant.models import parse_shift_starts

    with pytest.raises(ValidationError, match="is not a time; write each start as HH:MM"):
        parse_shift_starts(value)
