"""The alarm-management KPIs on the health page, in /api/v1/metrics (schema, parameters, errors) and the
site's shift setting in the admin (validated with a clear form error)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from plant.models import Site, parse_shift_starts
from tests.alerts.test_kpis_golden import NOW, build_kpi_history

RANGE = "start=2026-09-01&end=2026-09-02&site=north"


@pytest.fixture
def history(db, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)
    return build_kpi_history()


@pytest.fixture
def engineer(history) -> Client:
    client = Client()
    client.force_login(history["engineer"])
    return client


HTMX = {"HX-Request": "true"}


def test_the_health_page_loads_the_kpis_after_itself_with_a_link_without_javascript(engineer):
    response = engineer.get(f"/alerts/health/?{RANGE}&kpi_period=shift")
    assert response.status_code == 200
    page = response.content.decode()
    url = "/alerts/health/kpis/?group_by=site&amp;period=month&amp;kpi_period=shift&amp;start=2026-09-01&amp;end=2026-09-02&amp;site=north"
    assert f'id="alarm-kpis" hx-get="{url}" hx-trigger="load" hx-swap="outerHTML"' in page
    assert f'<a id="kpi-link" href="{url}">' in page
    assert '<div id="kpi-warnings"></div>' in page  # where the fragment's band warnings go (out of band)
    # The KPIs themselves are not computed for the page.
    assert "kpis" not in response.context and 'data-kpi="' not in page and "technicians" not in page


def test_the_kpi_fragment_shows_the_kpis_the_denominator_and_the_band_warnings(engineer):
    response = engineer.get(f"/alerts/health/kpis/?{RANGE}", headers=HTMX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" not in page and page.index('<div id="kpi-warnings" hx-swap-oob="true">') < page.index(
        'id="alarm-kpis"'
    )
    assert 'id="alarm-kpis"' in page
    assert "active users in the technician group with a membership of the site" in page
    assert (
        'North: 2 technicians, 24 alerts (<span class="kpi-categories">Machine fault: 23, Check the sensor: 1'
        "</span>), priority mix 79 / 8 / 12 %"
    ) in page
    assert 'data-kpi="stale_max_day"' in page and 'data-kpi="chattering"' in page
    assert 'data-kpi="flood_pct"' not in page.split('id="alarm-kpis"')[0]  # no flood warning by day
    assert "North: Stale alerts on one day (&gt; 24 h unanswered) 6 in 2 periods, worst 2026-09-02" in page
    assert "Bad actors: the 10 most frequent of 17 conditions, 71% of all alerts" in page
    # The same view without htmx renders the whole page, whose context the test client records (a partial's
    # is not): the same numbers behind the same markup.
    response = engineer.get(f"/alerts/health/kpis/?{RANGE}")
    assert page in response.content.decode()
    kpis = response.context["kpis"]
    assert [row.period for row in kpis.sites[0].rows] == ["2026-09-01", "2026-09-02"]
    figures = {chart["id"]: chart["figure"] for chart in response.context["kpi_figures"]}
    # The standard's targets are drawn on the charts.
    assert [shape["y0"] for shape in figures["kpi-per-tech-per-10min"]["layout"]["shapes"]] == [1, 2]
    assert [shape["y0"] for shape in figures["kpi-per-tech-per-day"]["layout"]["shapes"]] == [150, 300]
    assert [shape["y0"] for shape in figures["kpi-flood-pct"]["layout"]["shapes"]] == [0.01]
    assert [shape["y0"] for shape in figures["kpi-stale-max-day"]["layout"]["shapes"]] == [5]
    assert figures["kpi-priority-mix"]["data"][-1]["y"] == [0.80, 0.15, 0.05]


def test_the_bad_actors_say_what_raised_them_and_their_category_in_words_not_codes(engineer):
    page = engineer.get(f"/alerts/health/kpis/?{RANGE}", headers=HTMX).content.decode()
    actors = page[page.index('class="table bad-actors"') :].split("</table>")[0]
    assert '<th scope="col">Raised by</th>' in actors
    assert (
        'data-label="Raised by">Anomaly detector<' in actors
        and 'data-label="Category">Machine fault<' in actors
    )
    assert ">anomaly<" not in actors and "machine_fault" not in actors and "sensor_fault" not in actors


def test_the_kpi_fragment_per_shift_warns_of_the_flood(engineer):
    response = engineer.get(f"/alerts/health/kpis/?{RANGE}&kpi_period=shift", headers=HTMX)
    page = response.content.decode()
    assert response.status_code == 200 and 'data-kpi="flood_pct"' in page
    assert "10-minute periods in flood (&gt; 10 alerts) 2.1% in 2026-09-01 06:00" in page


def test_a_bad_kpi_period_is_a_400_naming_it_on_the_page_and_in_the_api(engineer):
    page = engineer.get("/alerts/health/?kpi_period=month")
    assert page.status_code == 400 and "kpi_period" in page.content.decode()
    fragment = engineer.get("/alerts/health/kpis/?kpi_period=month&site=north", headers=HTMX)
    assert fragment.status_code == 400 and "<html" not in fragment.content.decode()
    assert "kpi_period: &#x27;month&#x27; is not one of day, shift, week" in fragment.content.decode()
    elsewhere = engineer.get("/alerts/health/kpis/?site=south")
    assert elsewhere.status_code == 400 and "site" in elsewhere.content.decode()
    api = engineer.get("/api/v1/metrics?kpi_period=fortnight")
    assert api.status_code == 400
    assert api.json() == {
        "error": "kpi_period: 'fortnight' is not one of day, shift, week",
        "param": "kpi_period",
    }


def test_the_api_answers_the_kpis_as_documented(engineer):
    from jsonschema import Draft202012Validator

    document = json.loads(engineer.get("/api/v1/openapi.json").content)
    schema = {"$ref": "#/components/schemas/MetricsAnswer", "components": document["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for kpi_period in ("day", "shift", "week"):
        body = engineer.get(f"/api/v1/metrics?{RANGE}&kpi_period={kpi_period}").json()
        assert [error.message for error in validator.iter_errors(body)] == []
        assert body["alarm_kpis"]["kpi_period"] == kpi_period
    body = engineer.get(f"/api/v1/metrics?{RANGE}&include=kpis").json()["alarm_kpis"]
    (north,) = body["sites"]
    assert (north["site"], north["technicians"], north["alerts"], north["conditions"]) == ("north", 2, 24, 17)
    first = north["rows"][0]
    assert (first["period"], first["alerts"], first["flood_periods"], first["chattering"]) == (
        "2026-09-01",
        22,
        1,
        3,
    )
    assert first["priorities"] == {"low": 19, "medium": 2, "high": 1}
    assert {w["kpi"] for w in body["warnings"]} == {
        "chattering",
        "fleeting",
        "stale_max_day",
        "bad_actor_share",
    }
    assert body["chatter_opens"] == 3 and body["respond_minutes"] == 5


def test_the_kpi_page_without_javascript_is_a_whole_page_with_its_charts(engineer):
    response = engineer.get(f"/alerts/health/kpis/?{RANGE}")
    page = response.content.decode()
    assert response.status_code == 200 and "<html" in page and 'id="alarm-kpis"' in page
    assert "North: 2 technicians, 24 alerts" in page and "vendor/plotly.min.js" in page
    assert 'href="/alerts/health/?group_by=site&amp;period=month&amp;start=2026-09-01' in page


def test_the_api_computes_the_kpis_only_when_asked(engineer, monkeypatch):
    from jsonschema import Draft202012Validator

    document = json.loads(engineer.get("/api/v1/openapi.json").content)
    schema = {"$ref": "#/components/schemas/MetricsAnswer", "components": document["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    asked = engineer.get(f"/api/v1/metrics?{RANGE}&include=kpis").json()
    calls = []
    monkeypatch.setattr("alerts.api.alarm_kpis", lambda *args, **kwargs: calls.append(args))
    plain = engineer.get(f"/api/v1/metrics?{RANGE}")
    assert plain.status_code == 200 and calls == []  # not computed, not only left out of the answer
    body = plain.json()
    assert "alarm_kpis" not in body and body["rows"] == asked["rows"]
    assert [error.message for error in validator.iter_errors(body)] == []
    assert engineer.get(f"/api/v1/metrics.csv?{RANGE}&include=kpis").status_code == 200 and calls == []
    bad = engineer.get(f"/api/v1/metrics?{RANGE}&include=kpis,trend")
    assert bad.status_code == 400
    assert bad.json() == {"error": "include: 'trend' is not one of kpis", "param": "include"}


def test_a_technician_gets_no_kpis(history):
    client = Client()
    client.force_login(history["tess"])
    assert client.get("/api/v1/metrics").status_code == 403
    assert client.get("/alerts/health/").status_code == 403
    assert client.get("/alerts/health/kpis/", headers={"HX-Request": "true"}).status_code == 403


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "at least one shift start"),
        ("6:00", "'6:00' is not a time; write each start as HH:MM"),
        ("06:00,25:00", "'25:00' is not a time of day"),
        ("14:00,06:00", "Shift starts must increase through the day: 06:00 comes after 14:00"),
        ("06:00,06:00", "must increase"),
        (",".join(f"{h:02d}:00" for h in range(13)), "At most 12 shifts a day"),
    ],
)
def test_bad_shift_starts_are_refused_with_the_reason(value, message):
    with pytest.raises(ValidationError, match=message):
        parse_shift_starts(value)


def test_the_admin_edits_the_shift_starts_and_shows_a_form_error(db):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(admin)
    site = Site.objects.create(name="North", slug="north")
    assert site.shift_starts == "06:00,14:00,22:00"
    url = f"/admin/plant/site/{site.pk}/change/"
    form = {
        "name": "North",
        "slug": "north",
        "timezone": "Europe/Berlin",
        "shift_starts": "07:00,19:00",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    assert client.post(url, form).status_code == 302
    site.refresh_from_db()
    assert [f"{t:%H:%M}" for t in site.shift_start_times()] == ["07:00", "19:00"]
    response = client.post(url, {**form, "shift_starts": "19:00,07:00"})
    assert response.status_code == 200
    assert "Shift starts must increase through the day: 07:00 comes after 19:00." in response.content.decode()
    site.refresh_from_db()
    assert site.shift_starts == "07:00,19:00"


def test_the_kpi_page_without_javascript_shows_no_template_comment(engineer):
    page = engineer.get(f"/alerts/health/kpis/?{RANGE}").content.decode()
    assert "{#" not in page and "#}" not in page and "htmx loads the" not in page
