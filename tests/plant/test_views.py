from __future__ import annotations

import json
import re
from datetime import timedelta, timezone as dt_timezone

import numpy as np
import pytest
from django.conf import settings as settings_module
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from plant.choices import QualityFlag
from plant.models import Connection, ConnectionState
from plant.params import latest_date
from tests.conftest import make_asset, make_readings, make_site, make_user

pytestmark = pytest.mark.django_db


def page_urls(site, asset) -> list[str]:
    return [
        reverse("plant:site", args=[site.slug]),
        reverse("plant:asset", args=[asset.pk]),
        reverse("plant:asset_chart", args=[asset.pk]),
    ]


def test_anonymous_visitors_are_sent_to_the_login_page(client, site, asset):
    for url in [reverse("plant:home"), *page_urls(site, asset)]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login") + "?next=")


def test_the_login_page_renders_and_logs_in(client, technician):
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b'name="username"' in page.content
    response = client.post(reverse("login"), {"username": "tess", "password": "correct-horse-battery"})
    assert response.status_code == 302


def test_a_member_sees_every_page_of_their_site(client, technician, site, asset):
    client.force_login(technician)
    for url in page_urls(site, asset):
        assert client.get(url).status_code == 200, url


def test_an_outsider_gets_404_for_another_sites_pages(client, outsider, site, asset):
    client.force_login(outsider)
    for url in page_urls(site, asset):
        assert client.get(url).status_code == 404, url


def test_a_superuser_sees_every_site(client, site, asset):
    admin = User.objects.create_superuser("root", password="x")
    client.force_login(admin)
    for url in page_urls(site, asset):
        assert client.get(url).status_code == 200, url


def test_pages_answer_only_get(client, technician, site, asset):
    client.force_login(technician)
    assert client.post(reverse("plant:asset", args=[asset.pk])).status_code == 405


def test_home_redirects_a_single_site_member_to_their_site(client, technician, site):
    client.force_login(technician)
    response = client.get(reverse("plant:home"))
    assert response.status_code == 302 and response.url == site.get_absolute_url()


def test_home_lists_the_sites_of_a_member_of_several(client, technician, site, other_site):
    other_site.members.add(technician)
    client.force_login(technician)
    response = client.get(reverse("plant:home"))
    assert response.status_code == 200
    assert [s.slug for s in response.context["sites"]] == ["north", "south"]


def test_the_console_link_is_shown_to_engineers_only(client, technician, engineer, site, django_user_model):
    # A supervisor is staff of their sites with no console permission: the link led to an empty console.
    supervisor = django_user_model.objects.create_user("supervisor", is_staff=True)
    site.members.add(supervisor)
    for user in (technician, supervisor):
        client.force_login(user)
        assert b">Console<" not in client.get(site.get_absolute_url()).content, user
    client.force_login(engineer)
    assert b">Console<" in client.get(site.get_absolute_url()).content


def test_site_overview_shows_assets_with_criticality_and_sensor_health(client, technician, site, asset):
    make_readings(
        asset.sensors.get(role__key="current"), timezone.now() - timedelta(minutes=30), np.ones(1790)
    )
    client.force_login(technician)
    response = client.get(site.get_absolute_url())
    html = response.content.decode()
    assert "P-101" in html and "p-101" in html and "Medium" in html
    assert "No recent data" in html  # three sensors never reported
    statuses = [h.status for _, h in response.context["rows"][0]["sensors"]]
    assert sorted(statuses) == ["silent", "silent", "silent", "warn"]  # half an hour of one hour: incomplete


def test_site_overview_query_count_does_not_grow_with_assets(
    client, technician, site, django_assert_num_queries
):
    make_asset(site, tag="p-1")
    client.force_login(technician)
    # session, user, site, assets, sensors+roles, health buckets, latest readings, active alerts (alerts'
    # provide_site_alerts), plant connections with their bridge status, nav role, nav sites
    with django_assert_num_queries(11):
        client.get(site.get_absolute_url())
    for i in range(2, 8):
        make_asset(site, tag=f"p-{i}")
    with django_assert_num_queries(11):
        response = client.get(site.get_absolute_url())
    assert len(response.context["rows"]) == 7


def test_asset_page_shows_sensor_health_and_embeds_the_chart(
    client, technician, asset, django_assert_num_queries
):
    sensor = asset.sensors.get(role__key="vibration")
    quality = [QualityFlag.SPIKE if i == 100 else 0 for i in range(600)]
    make_readings(sensor, timezone.now() - timedelta(minutes=10), np.full(600, 3.5), quality=quality)
    client.force_login(technician)
    # session, user, asset, sensors, chart raw rows, health buckets, latest readings, models in use (for
    # the baseline status), past alerts (none), recent scoring gaps, roles with whether the asset has each,
    # models in use (for missing roles), nav role, nav sites
    with django_assert_num_queries(14):
        response = client.get(reverse("plant:asset", args=[asset.pk]) + "?range=1h")
    html = response.content.decode()
    assert response.status_code == 200
    assert "spike: 1" in html and "3.5 mm/s" in html
    assert 'id="chart-figure"' in html and "vendor/plotly.min.js" in html
    figure = response.context["figure"]
    assert len([t for t in figure["data"] if t["mode"] == "lines"]) == 4
    assert any(t["name"].endswith(": spike") for t in figure["data"])


def test_asset_page_words_a_sensors_last_reading_time_as_every_page_does(client, technician, asset):
    """'just now' under a minute and '1 hour, 5 minutes ago' (plant.templatetags.timewords), as the site page,
    the board and the alert page say them; the sensor table said 'a second ago' / '1 hour ago' (humanize)."""
    fresh, older = asset.sensors.get(role__key="vibration"), asset.sensors.get(role__key="current")
    make_readings(fresh, timezone.now() - timedelta(seconds=5), np.full(2, 3.5))
    make_readings(older, timezone.now() - timedelta(hours=1, minutes=5, seconds=30), np.full(2, 20.0))
    client.force_login(technician)
    html = client.get(reverse("plant:asset", args=[asset.pk]) + "?range=24h").content.decode()
    assert "just now</time>" in html and "a second ago" not in html and "seconds ago" not in html
    assert "1\xa0hour, 5\xa0minutes ago</time>" in html


@pytest.mark.parametrize(
    "query",
    [
        "range=2y",
        "start=yesterday",
        "start=2026-01-05T10:00&end=2026-01-05T09:00",
        "start=2020-01-01&end=2026-01-01",
    ],
)
def test_a_bad_range_shows_a_form_error_and_the_default_range(client, technician, asset, query):
    client.force_login(technician)
    response = client.get(reverse("plant:asset", args=[asset.pk]) + "?" + query)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert b'class="field-error"' in response.content or b'class="form-errors"' in response.content
    span = response.context["span"]
    assert span.end - span.start == timedelta(hours=6)


def test_a_range_error_names_the_field_as_the_form_labels_it(client, technician, asset):
    # The error said "Start: Enter a valid date/time." beside a field labelled "From".
    client.force_login(technician)
    response = client.get(reverse("plant:asset", args=[asset.pk]) + "?start=yesterday&range=2y")
    body = response.content.decode()
    assert '<li class="field-error">From: Enter a valid date/time.</li>' in body
    assert '<li class="field-error">Last: Select a valid choice.' in body
    assert "Start:" not in body


def test_chart_json_rejects_a_bad_range_with_a_clear_400(client, technician, asset):
    client.force_login(technician)
    response = client.get(reverse("plant:asset_chart", args=[asset.pk]) + "?range=forever")
    assert response.status_code == 400
    assert "range" in response.json()["errors"]


def test_an_explicit_iso_range_is_read_in_the_sites_time_zone(client, technician, site, asset):
    site.timezone = "Europe/Berlin"
    site.save()
    client.force_login(technician)
    response = client.get(
        reverse("plant:asset", args=[asset.pk]) + "?start=2026-01-05T09:00&end=2026-01-05T10:00"
    )
    span = response.context["span"]
    assert span.start.astimezone(dt_timezone.utc).hour == 8 and span.seconds == 3600


def test_chart_json_keeps_every_trace_within_the_point_budget(client, technician, asset):
    sensor = asset.sensors.get(role__key="temperature")
    end = timezone.now().replace(microsecond=0)
    values = 20 + np.sin(np.arange(20_000) / 500)
    values[5_000] = 95.0
    make_readings(sensor, end - timedelta(seconds=20_000), values)
    client.force_login(technician)
    response = client.get(reverse("plant:asset_chart", args=[asset.pk]) + "?range=7d")
    figure = json.loads(response.content)
    assert response.status_code == 200
    assert all(len(trace["x"]) <= 2000 for trace in figure["data"])
    temperature = next(t for t in figure["data"] if t["name"] == sensor.key)
    assert max(temperature["y"]) == 95.0


def test_an_htmx_range_change_gets_only_the_chart_panel(client, technician, asset):
    client.force_login(technician)
    response = client.get(
        reverse("plant:asset", args=[asset.pk]) + "?range=24h", headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="chart-panel">') and "<html" not in html


def test_a_site_without_assets_renders(client, technician):
    empty = make_site("empty")
    empty.members.add(technician)
    client.force_login(technician)
    assert b"no active assets" in client.get(empty.get_absolute_url()).content


def test_an_outsider_sees_only_their_own_site_listed(client, site, other_site):
    user = make_user("olga", "technician", other_site)
    client.force_login(user)
    response = client.get(other_site.get_absolute_url())
    assert b"North" not in response.content


@pytest.mark.parametrize(
    "query",
    [
        "start=9999-12-31T23:59",
        "end=9999-12-31T23:59",
        "start=0001-01-01T00:00",
        "start=1969-12-31T23:00&end=1970-01-02T00:00",
        "start=2026-01-05T08:00%00",
        "end=%00",
    ],
)
def test_an_out_of_range_or_hostile_time_is_a_400_on_the_page_and_the_chart(client, technician, asset, query):
    client.force_login(technician)
    page = client.get(reverse("plant:asset", args=[asset.pk]) + "?" + query)
    assert page.status_code == 400 and page.context["form"].errors
    chart = client.get(reverse("plant:asset_chart", args=[asset.pk]) + "?" + query)
    assert chart.status_code == 400 and chart.json()["errors"]


def test_an_out_of_range_time_is_named_as_written_on_the_sites_clock(client, technician, site, asset):
    # QA (demo): "From: 0001-01-01T00:00:00-05:50:36 is out of range" (the zone's offset of year 1, in ISO)
    # for "0001-01-01 00:00" typed on an America/Chicago site's page.
    site.timezone = "America/Chicago"
    site.save(update_fields=["timezone"])
    client.force_login(technician)
    page = client.get(reverse("plant:asset", args=[asset.pk]) + "?start=0001-01-01+00:00")
    assert page.context["form"].errors["start"] == [
        f"0001-01-01 00:00 is out of range: use a date from 1970-01-01 to {latest_date()}"
    ]


def test_a_huge_asset_id_in_the_path_is_a_404(client, technician):
    client.force_login(technician)
    for name in ("plant:asset", "plant:asset_chart"):
        assert client.get(reverse(name, args=[10**30])).status_code == 404


def strict_json(content: bytes) -> dict:
    """JSON as a browser's JSON.parse reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} in the chart JSON")

    return json.loads(content, parse_constant=refuse)


@pytest.mark.parametrize(("preset", "seconds"), [("1h", 1_800), ("6h", 21_000)])  # raw rows, SQL buckets
def test_the_chart_draws_every_finite_value_even_the_largest_doubles(
    client, technician, asset, preset, seconds
):
    # Issue 11, defect 7: 1e308 and -1e308 (accepted, flagged) stopped the line (Plotly drops magnitudes
    # above ~1.8e304 as not-a-number) and, bucketed on PostgreSQL, AVG overflowed into a 500.
    from plant.charts import DRAW_LIMIT

    sensor = asset.sensors.get(role__key="vibration")
    end = timezone.now().replace(microsecond=0)
    values = np.full(seconds, 3.0)
    values[seconds // 2], values[seconds // 2 + 100], values[seconds // 3] = 1e308, -1e308, 1e308
    quality = np.where(np.abs(values) > 100, int(QualityFlag.OUT_OF_RANGE), 0)
    make_readings(sensor, end - timedelta(seconds=seconds + 60), values, quality=quality.tolist())
    client.force_login(technician)
    response = client.get(reverse("plant:asset_chart", args=[asset.pk]) + f"?range={preset}")
    assert response.status_code == 200
    traces = [t for t in strict_json(response.content)["data"] if t["name"].startswith(sensor.key)]
    for trace in traces:
        assert None not in trace["y"], "every stored value has a point"
        assert all(abs(y) <= DRAW_LIMIT < 1.7e304 for y in trace["y"]), "Plotly can place every point"
    line = traces[0]
    assert (max(line["y"]), min(line["y"])) == (DRAW_LIMIT, -DRAW_LIMIT)
    assert (max(line["customdata"]), min(line["customdata"])) == (1e308, -1e308), "the hover shows them"
    assert "customdata" in line["hovertemplate"] and 3.0 in line["y"]
    markers = next(t for t in traces if t["mode"] == "markers")
    assert {1e308, -1e308} <= set(markers["customdata"])


def test_drawable_keeps_ordinary_values_and_drops_only_what_is_not_a_number():
    from plant.charts import DRAW_LIMIT, drawable

    assert drawable(np.array([1.5, np.nan, -2.0])) == ([1.5, None, -2.0], None)
    assert drawable(np.array([np.inf, 1e301])) == ([None, DRAW_LIMIT], [None, 1e301])


@pytest.mark.parametrize("range_", ["1h", "30d"])  # raw rows and database buckets
def test_a_sensor_without_readings_in_the_range_says_so_in_its_row(client, technician, asset, range_):
    sensor = asset.sensors.get(role__key="vibration")
    make_readings(sensor, timezone.now() - timedelta(minutes=10), np.full(300, 3.5))
    client.force_login(technician)
    response = client.get(reverse("plant:asset_chart", args=[asset.pk]) + f"?range={range_}")
    figure = json.loads(response.content)
    lines = [t for t in figure["data"] if t["mode"] == "lines"]
    empty_axes = {t["yaxis"] for t in lines if not t["x"]}
    assert len(lines) == 4 and len(empty_axes) == 3
    notes = [a for a in figure["layout"].get("annotations", []) if a["text"] == "No readings in this range"]
    assert len(notes) == 3
    for axis in empty_axes:  # one note inside each empty row, none in the row that has data
        low, high = figure["layout"]["yaxis" + axis.removeprefix("y")]["domain"]
        assert sum(low <= note["y"] <= high for note in notes) == 1


def test_site_page_shows_a_connected_connections_last_error_as_past_with_its_time(client, technician, site):
    # "connected" beside a bare error text read as if the connection were failing now.
    connection = Connection.objects.create(
        site=site, name="PLC", protocol="modbus", endpoint="modbus://127.0.0.1:5020"
    )
    ConnectionState.objects.create(
        connection=connection,
        running=True,
        connected=True,
        rate=5.0,
        last_error="ConnectionError: Modbus: cannot connect to 127.0.0.1:5020",
        last_error_at=timezone.now() - timedelta(minutes=5),
        last_error_resolved_by="connect",  # a failed try, as the bridge stores it
    )
    client.force_login(technician)
    html = client.get(site.get_absolute_url()).content.decode()
    row = html[html.index(">PLC<") :]
    row = row[: row.index("</tr>")]
    assert "connected, 5.0 readings/s" in row
    assert "last error <time" in row and "5\xa0minutes ago</time>: The bridge could not connect" in row
    assert (
        "<summary>Detail</summary><code>ConnectionError: Modbus: cannot connect to 127.0.0.1:5020</code>"
        in row
    )


def test_site_page_says_a_bridge_that_stopped_reporting_is_not_connected(client, technician, site, settings):
    # What a SIGKILLed `manage.py bridge` leaves behind (seen in a real run): its last report said running and
    # connected, and nothing ever corrects it. The page said "connected, 19.8 readings/s" while it was dead.
    settings.VIGIL_BRIDGE_STATUS_S = 2.0
    killed = Connection.objects.create(site=site, name="killed", endpoint="mqtt://b")
    ConnectionState.objects.create(
        connection=killed,
        running=True,
        connected=True,
        rate=19.8,
        updated_at=timezone.now() - timedelta(minutes=2),
    )
    alive = Connection.objects.create(site=site, name="alive", endpoint="mqtt://c")
    ConnectionState.objects.create(
        connection=alive,
        running=True,
        connected=True,
        rate=5.0,
        updated_at=timezone.now() - timedelta(seconds=3),
    )
    client.force_login(technician)
    html = client.get(site.get_absolute_url()).content.decode()
    rows = {name: html[html.index(f">{name}<") :] for name in ("killed", "alive")}
    rows = {name: row[: row.index("</tr>")] for name, row in rows.items()}
    assert "bridge not reporting (stopped or crashed?): last report 2\xa0minutes ago" in rows["killed"]
    assert "connected" not in rows["killed"].split("bridge not reporting")[0]
    assert "connected, 5.0 readings/s" in rows["alive"]


def test_a_bridge_silent_for_less_than_a_minute_is_not_said_to_have_reported_just_now(settings):
    # Silent past bridge_silent_after (30 s at least) but under a minute, it read "bridge not reporting
    # (stopped or crashed?): last report just now", a contradiction, and its counts "last report just now".
    settings.VIGIL_BRIDGE_STATUS_S = 2.0
    now = timezone.now()
    state = ConnectionState(
        running=True,
        connected=True,
        started_at=now - timedelta(hours=1),
        updated_at=now - timedelta(seconds=45),
    )
    status = Connection(endpoint="mqtt://b").status_text(state)
    assert status.startswith("bridge not reporting (stopped or crashed?): last report 4")
    assert status.endswith(" seconds ago") and "just now" not in status
    assert "last report 4" in state.counted_text() and "just now" not in state.counted_text()


def test_site_page_asset_table_says_no_open_alert_and_keeps_its_words_whole(client, technician, site):
    # QA: the Alert column read "None" for an asset without an open alert; "Centrifugal pump" and "p-101"
    # broke mid-word (main's overflow-wrap: anywhere); the badge link's underline ran into "opened …".
    make_asset(site, tag="p-777")
    client.force_login(technician)
    html = client.get(site.get_absolute_url()).content.decode()
    table = html[html.index('class="table assets-table"') :]
    table = table[: table.index("</table>")]
    cell = table[table.index('data-label="Alert"') :]
    cell = cell[: cell.index("</td>")]
    assert "None" not in cell and "no open alert" in cell
    css = re.sub(
        r"/\*.*?\*/", "", (settings_module.BASE_DIR / "static" / "css" / "vigil.css").read_text(), flags=re.S
    )
    rules = {m.group(1).strip(): m.group(2) for m in re.finditer(r"([^{}]+)\{([^{}]*)\}", css)}
    cells = rules[".assets-table th, .assets-table td"]
    assert "overflow-wrap: normal" in cells and "word-break: normal" in cells and "hyphens: none" in cells
    assert "white-space: nowrap" in rules['.assets-table td[data-label="Tag"] code']
    assert "text-decoration: none" in rules[".assets-table .badge-link"]
