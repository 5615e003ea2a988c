"""The board and the alert detail page: what a technician sees, in which order, at what query cost."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts.models import Alert
from alerts.services import record_feedback
from tests.alerts.builders import explanation_for, make_alert
from tests.conftest import PASSWORD, make_asset, make_readings


@pytest.fixture
def tech_client(client, technician):
    client.login(username=technician.username, password=PASSWORD)
    return client


def card_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<article id="alert-(\d+)" class="alert-card"', html)]


def test_the_board_lists_open_acknowledged_and_snoozed_alerts_critical_first_then_oldest(
    tech_client, asset, site, champion, trained
):
    explanation = explanation_for(champion, trained)
    other = [make_asset(site, tag=f"p-{i}") for i in range(5)]
    old_low = make_alert(asset, champion, explanation=explanation, severity="low", age_min=300)
    new_critical = make_alert(other[0], champion, explanation=explanation, severity="critical", age_min=5)
    old_critical = make_alert(other[1], champion, explanation=explanation, severity="critical", age_min=50)
    acked = make_alert(other[2], champion, explanation=explanation, severity="medium", state="acknowledged")
    snoozed = make_alert(other[3], champion, explanation=explanation, severity="high", state="snoozed")
    make_alert(other[4], champion, explanation=explanation, state="suppressed")
    make_alert(other[4], champion, explanation=explanation, state="resolved")
    make_alert(other[4], champion, explanation=explanation, is_shadow=True)

    response = tech_client.get(reverse("alerts:board"))

    assert response.status_code == 200
    assert card_ids(response.content.decode()) == [
        old_critical.pk,
        new_critical.pk,
        snoozed.pk,
        acked.pk,
        old_low.pk,
    ]


def test_a_card_says_what_where_how_long_and_why_in_plain_words(tech_client, asset, champion, trained):
    alert = make_alert(asset, champion, explanation=explanation_for(champion, trained), severity="high")

    html = tech_client.get(reverse("alerts:board")).content.decode()

    card = html[html.index(f'id="alert-{alert.pk}"') :]
    card = card[: card.index("</article>")]
    assert 'data-state="open"' in card and 'data-category="machine_fault"' in card
    assert 'data-severity="high"' in card and "Machine fault" in card and asset.name in card
    assert "open for" in card
    why = re.findall(r'<li class="why-sensor" data-role="(\w+)">(.*?)</li>', card, re.S)
    # Only the sensor that pushed the score is named (the fault was put on vibration alone), in words
    assert [role for role, _ in why] == ["vibration"]
    sentence = re.sub(r"<[^>]+>", "", why[0][1])
    assert re.match(
        r"\s*Vibration is [\d.]+ mm/s above its usual range: [\d.]+ mm/s vs [\d.]+–[\d.]+ mm/s", sentence
    )
    assert "× the alert level</strong> at its peak · unusual for 30 s" in card  # 3 windows × 10 s
    details = card[card.index('<details class="model-details">') :]
    assert "exact_shapley_quadratic" in details and "SHAP φ +" in details and "opens at 10.000" in details
    assert "exact_shapley" not in card[: card.index('<details class="model-details">')]
    assert "No similar alert on this asset before." in card
    for action in (
        "acknowledge",
        "confirm:repaired",
        "false_alarm:sensor_glitch",
        "not_actionable",
        "snooze:8h",
    ):
        assert f'data-action="{action}"' in card
    assert '<textarea class="fb-note" name="note"' in card


def test_a_card_tells_what_was_done_the_last_time_a_similar_alert_was_closed(
    tech_client, asset, champion, trained, technician
):
    explanation = explanation_for(champion, trained, "vibration")
    earlier = make_alert(asset, champion, explanation=explanation, age_min=600)
    record_feedback(earlier, technician, "confirm:repaired", "replaced the bearing")
    other_role = make_alert(asset, champion, explanation=explanation_for(champion, trained, "current"))
    record_feedback(other_role, technician, "false_alarm:sensor_glitch")
    current = make_alert(asset, champion, explanation=explanation)

    html = tech_client.get(reverse("alerts:board")).content.decode()

    card = html[html.index(f'id="alert-{current.pk}"') :]
    history = card[
        card.index('class="alert-history"') : card.index("</p>", card.index('class="alert-history"'))
    ]
    assert "Confirmed fault — Repaired" in history and "replaced the bearing" in history
    assert reverse("alerts:detail", args=[earlier.pk]) in history
    assert "Sensor glitch" not in history  # a different dominant sensor is not "similar"


def test_an_alert_in_work_names_the_last_similar_alert_before_it_not_itself(
    tech_client, asset, champion, trained, technician
):
    # QA: after "Repair scheduled" the in-work card read "Last similar alert, 0 minutes ago: Confirmed
    # fault — Repair scheduled" and linked to its own page, where the alert page named the one before.
    explanation = explanation_for(champion, trained, "vibration")
    earlier = make_alert(asset, champion, explanation=explanation, age_min=600)
    record_feedback(earlier, technician, "confirm:repaired", "replaced the bearing")
    current = make_alert(asset, champion, explanation=explanation)
    record_feedback(current, technician, "confirm:scheduled")

    html = tech_client.get(reverse("alerts:board")).content.decode()

    card = html[html.index(f'id="alert-{current.pk}"') :]
    history = card[
        card.index('class="alert-history"') : card.index("</p>", card.index('class="alert-history"'))
    ]
    assert reverse("alerts:detail", args=[earlier.pk]) in history
    assert "Repair scheduled" not in history and "Confirmed fault — Repaired" in history
    detail = tech_client.get(reverse("alerts:detail", args=[current.pk])).content.decode()
    assert (
        f'Last similar alert on this asset, <a href="{reverse("alerts:detail", args=[earlier.pk])}">'
        in detail
    )


def _board_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("alerts:board"))
    assert response.status_code == 200
    return len(queries)


def test_the_board_costs_the_same_number_of_queries_for_one_alert_and_twenty(
    tech_client, site, asset, champion, trained, technician
):
    explanation = explanation_for(champion, trained)
    done = make_alert(asset, champion, explanation=explanation, age_min=900)
    record_feedback(done, technician, "confirm:repaired")  # (scheduled would keep it on the board, in work)
    make_alert(asset, champion, explanation=explanation)
    one = _board_queries(tech_client)
    for i in range(19):
        other = make_asset(site, tag=f"q-{i}")
        closed = make_alert(other, champion, explanation=explanation, age_min=900)
        record_feedback(closed, technician, "false_alarm:unknown")
        make_alert(other, champion, explanation=explanation, severity=["low", "high"][i % 2])
    twenty = _board_queries(tech_client)
    assert len(card_ids(tech_client.get(reverse("alerts:board")).content.decode())) == 20
    # session, user, alerts (+ similar-alert subquery), versions, roles, similar alerts, verdicts,
    # nav role (engineer links), nav sites, and handoff's card action (the sites with a CMMS; no CMMS here, so
    # no work-order query)
    assert one == twenty == 10


def test_an_htmx_request_for_the_board_list_gets_only_the_list(tech_client, asset, champion, trained):
    alert = make_alert(asset, champion, explanation=explanation_for(champion, trained))

    response = tech_client.get(reverse("alerts:board_list"), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="alert-list"') and "<html" not in html
    assert card_ids(html) == [alert.pk]


def test_the_full_board_page_connects_the_websocket_and_works_without_javascript(
    tech_client, asset, champion
):
    make_alert(asset, champion)
    html = tech_client.get(reverse("alerts:board")).content.decode()
    assert '<section id="alert-board"' in html and 'hx-ext="ws, board-cards" ws-connect="/ws/alerts/"' in html
    assert 'data-resync-url="/alerts/board/"' in html
    assert 'method="post" action="/alerts/' in html  # plain forms: the buttons work before htmx loads
    assert "Working out which sensors drove this" in html  # pending explanation, said so


def test_the_board_can_be_narrowed_to_one_asset_and_rejects_a_bad_asset_id(
    tech_client, site, asset, champion
):
    mine = make_alert(asset, champion)
    make_alert(make_asset(site, tag="p-9"), champion)
    html = tech_client.get(reverse("alerts:board") + f"?asset={asset.pk}").content.decode()
    assert card_ids(html) == [mine.pk]
    response = tech_client.get(reverse("alerts:board") + "?asset=abc")
    assert response.status_code == 400 and b"asset must be an asset id" in response.content


def figure(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no {element_id} in the page"
    return json.loads(match.group(1))


def test_the_detail_page_renders_the_sensor_and_shap_charts_and_the_feature_table(
    tech_client, asset, champion, trained
):
    alert = make_alert(asset, champion, explanation=explanation_for(champion, trained), severity="high")
    vibration = asset.sensors.get(role__key="vibration")
    start = alert.first_window_start - (alert.last_seen_at - alert.first_window_start) * 2
    make_readings(vibration, start, [2.0] * 600 + [9.0] * 120, period_s=1.0, quality=[0] * 700 + [2] * 20)

    response = tech_client.get(reverse("alerts:detail", args=[alert.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    sensors = figure(html, "sensor-figure")
    assert sensors["data"][0]["name"] == vibration.key and len(sensors["data"][0]["x"]) > 0
    assert any(trace["mode"] == "markers" for trace in sensors["data"])  # flagged readings marked
    span = sensors["layout"]["shapes"][0]
    assert span["type"] == "rect" and span["x0"] < span["x1"]
    assert sensors["layout"]["xaxis"]["range"][0] < span["x0"]  # context before the alert
    shap = figure(html, "shap-figure")
    assert shap["data"][0]["type"] == "bar" and shap["data"][0]["orientation"] == "h"
    assert shap["data"][0]["y"][0].startswith("Vibration") and "mm/s" in shap["data"][0]["customdata"][0]
    assert shap["layout"]["title"]["text"] == "What made this window unusual"
    table = html[html.index('id="feature-table"') : html.index("</table>", html.index('id="feature-table"'))]
    assert table.count("<tr") == 1 + len(champion.feature_spec)
    assert "above normal" in table
    assert 'id="alert-events"' in html and 'id="alert-model"' in html
    assert 'id="sensor-chart"' in html and 'id="shap-chart"' in html
    assert 'data-action="confirm:repaired"' in html


def test_the_alert_page_charts_keep_their_labels_on_a_phone_wide_chart(tech_client, asset, champion, trained):
    # An alert still going on: its span ends at the chart's right edge (a minute of room). A label starting
    # at the span ran off that edge on a phone; so did the explanation chart's x-axis title, which the
    # feature names squeeze into a plot of ~100 px there.
    alert = make_alert(asset, champion, explanation=explanation_for(champion, trained), age_min=2)

    html = tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    sensors = figure(html, "sensor-figure")["layout"]
    (label,) = [a for a in sensors["annotations"] if a["text"] == "anomalous"]
    span = sensors["shapes"][0]
    assert (label["x"], label["xanchor"]) == (span["x1"], "right")  # it runs left, over the span
    # ... above the first sensor's title, which starts at the chart's left edge on the same line
    (first_title, *_) = [a for a in sensors["annotations"] if a.get("name") == "row-title"]
    title_px = 15 * (first_title["text"].count("<br>") + 1)
    assert label["yshift"] >= title_px and sensors["margin"]["t"] >= label["yshift"] + 14
    assert "title" not in figure(html, "shap-figure")["layout"]["xaxis"]
    assert "Each bar is how much one feature made the window more unusual" in html  # what the axis said


def test_the_feature_table_gives_each_features_share_of_the_push_not_raw_model_numbers(
    tech_client, asset, champion, trained
):
    explanation = explanation_for(champion, trained)
    alert = make_alert(asset, champion, explanation=explanation)

    html = tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    start = html.index('id="feature-table"')
    table = html[start : html.index("</table>", start)]
    assert "p10" not in table and '<th scope="col">Usual range</th>' in table
    shares = re.findall(r'<td data-label="Share of the push">([+−])(&lt;1|\d+) %</td>', table)
    assert len(shares) == len(explanation["features"])
    # Each push as a share of all of them: together they make (about) 100 %, the largest first.
    assert 97 <= sum(int(n) for _, n in shares if n.isdigit()) <= 103
    phis = sorted((abs(f["phi"]) for f in explanation["features"]), reverse=True)
    assert int(shares[0][1]) == round(100 * phis[0] / sum(phis))
    shap_title = figure(html, "shap-figure")["layout"]["title"]["text"]
    assert "Score" not in shap_title and "contributions" not in shap_title


def test_the_detail_page_of_a_pending_explanation_says_so_and_still_charts_the_sensors(
    tech_client, asset, champion
):
    alert = make_alert(asset, champion)

    html = tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    assert "The explanation is still being computed" in html
    assert len(figure(html, "sensor-figure")["data"]) == asset.sensors.count()
    assert figure(html, "shap-figure")["layout"]["title"]["text"] == "Explanation pending"


def test_engineers_get_a_link_to_the_model_version_and_technicians_do_not(
    client, tech_client, engineer, asset, champion
):
    alert = make_alert(asset, champion)
    link = reverse("admin:models_registry_modelversion_change", args=[champion.pk])
    assert link not in tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    client.logout()
    client.login(username=engineer.username, password=PASSWORD)
    assert link in client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()


def test_a_resolved_alert_shows_its_verdict_and_history_on_the_detail_page(
    tech_client, technician, asset, champion
):
    alert = make_alert(asset, champion)
    record_feedback(alert, technician, "acknowledge")
    record_feedback(
        Alert.objects.get(pk=alert.pk), technician, "false_alarm:maintenance_activity", "oil change"
    )

    html = tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()

    events = html[html.index('id="alert-events"') : html.index("</ol>", html.index('id="alert-events"'))]
    assert events.count("<li>") == 3 and "tess" in events and "oil change" in events
    assert "Verdict: False alarm — Maintenance activity" in html
    assert 'data-action="acknowledge"' not in html  # closed: only the verdict can be corrected


def test_alerts_opened_by_the_scorer_remember_their_dominant_sensor_for_similar_alert_lookups(
    asset, champion, trained
):
    from tests.alerts.conftest import OPEN, fault_x, score, windows

    (alert_id,) = score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained, "pressure")))
    assert Alert.objects.get(pk=alert_id).dominant_role == "pressure"
