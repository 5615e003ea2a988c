"""The champion-vs-challenger page: shadow, promote and roll back with a required reason, the history of
those moves, bad periods and who may use it."""

from __future__ import annotations

import pytest

from models_registry.models import ModelStatusChange
from models_registry.services import promote, retire
from tests.conftest import T0
from tests.models_registry.conftest import make_readings, make_version


@pytest.fixture
def versions(asset):
    champion = make_version(asset.asset_type)
    promote(champion, reason="first")
    challenger = make_version(asset.asset_type)
    return champion, challenger


def test_the_page_compares_a_candidate_with_the_champion_and_offers_shadow_and_promote(
    client, engineer, versions
):
    champion, challenger = versions
    make_readings(champion.asset_type.assets.get(), T0, 300)
    client.force_login(engineer)
    response = client.get(f"/models/{challenger.pk}/compare/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="shadow-form"' in html and 'id="promote-form"' in html and 'id="rollback-form"' not in html
    # each reason field says which move it explains
    assert '<label for="shadow-reason">Why run it in shadow</label>' in html
    assert '<label for="promote-reason">Why promote it to champion</label>' in html
    assert str(champion) in html and 'id="comparison-table"' in html
    # These hand-made models name features the pump type does not produce: said on the page, not a 500.
    assert "could not be evaluated" in html


def test_putting_a_candidate_in_shadow_records_who_and_why(client, engineer, versions):
    _champion, challenger = versions
    client.force_login(engineer)
    response = client.post(f"/models/{challenger.pk}/shadow/", {"reason": "watch it for a week"}, follow=True)
    challenger.refresh_from_db()
    assert challenger.status == "shadow"
    change = ModelStatusChange.objects.filter(version=challenger).first()
    assert change.actor == engineer and change.reason == "watch it for a week"
    html = response.content.decode()
    assert "now runs in shadow" in html and "watch it for a week" in html and 'id="shadow-form"' not in html


def test_a_move_without_a_reason_changes_nothing_and_says_so(client, engineer, versions):
    _champion, challenger = versions
    client.force_login(engineer)
    response = client.post(f"/models/{challenger.pk}/promote/", {"reason": "  "}, follow=True)
    challenger.refresh_from_db()
    assert challenger.status == "candidate"
    assert "Say why (required)." in response.content.decode()


def test_promote_then_roll_back_from_the_page(client, engineer, versions):
    champion, challenger = versions
    client.force_login(engineer)
    client.post(f"/models/{challenger.pk}/promote/", {"reason": "fewer false alarms"})
    challenger.refresh_from_db()
    champion.refresh_from_db()
    assert (challenger.status, champion.status) == ("champion", "retired")
    page = client.get(f"/models/{challenger.pk}/compare/").content.decode()
    assert 'id="rollback-form"' in page and "Previous champion" in page
    assert f'<label for="rollback-reason">Why roll back to {champion}</label>' in page
    response = client.post(f"/models/{challenger.pk}/rollback/", {"reason": "missed a fault"}, follow=True)
    champion.refresh_from_db()
    assert champion.status == "champion"
    assert response.redirect_chain[-1][0] == f"/models/{champion.pk}/compare/"
    assert "missed a fault" in response.content.decode()


def test_after_a_rollback_the_page_offers_no_rollback_to_the_version_rolled_back_from(
    client, engineer, versions
):
    champion, challenger = versions
    client.force_login(engineer)
    client.post(f"/models/{challenger.pk}/promote/", {"reason": "fewer false alarms"})
    response = client.post(f"/models/{challenger.pk}/rollback/", {"reason": "missed a fault"}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/models/{champion.pk}/compare/"
    assert 'id="rollback-form"' not in page and f"Roll back to {challenger}" not in page
    assert 'id="rollback-refusal"' in page and f"{champion} was its first champion" in page
    # In the asset type's name and the kind's label (the command line says the same), not slug / enum value.
    assert "Pump / Anomaly detector has no previous champion to roll back to" in page
    assert "pump / anomaly" not in page
    # The rolled-back version's own page offers only what makes sense for a retired one: nothing.
    page = client.get(f"/models/{challenger.pk}/compare/").content.decode()
    assert not any(f'id="{move}-form"' in page for move in ("shadow", "promote", "rollback"))


def test_no_rollback_is_offered_to_a_previous_champion_retired_on_purpose(client, engineer, versions):
    champion, challenger = versions
    retire(champion, actor=engineer, reason="bad model, taken out of use")
    promote(challenger, actor=engineer, reason="the only one left")
    client.force_login(engineer)
    page = client.get(f"/models/{challenger.pk}/compare/").content.decode()
    assert "Previous champion" in page and str(champion) in page
    assert 'id="rollback-form"' not in page and "Roll back to" not in page
    assert 'id="rollback-refusal"' in page and "was retired on purpose" in page
    # and the move itself is refused the same way, the champion kept
    response = client.post(f"/models/{challenger.pk}/rollback/", {"reason": "try"}, follow=True)
    challenger.refresh_from_db()
    champion.refresh_from_db()
    assert (challenger.status, champion.status) == ("champion", "retired")
    assert "was retired on purpose" in response.content.decode()


def test_rolling_back_a_version_that_is_not_the_champion_is_refused_with_a_message(
    client, engineer, versions
):
    _champion, challenger = versions
    client.force_login(engineer)
    response = client.post(f"/models/{challenger.pk}/rollback/", {"reason": "oops"}, follow=True)
    assert response.status_code == 200
    assert "is not the champion" in response.content.decode()


def test_a_rejected_promotion_is_a_message_not_a_500(client, engineer, versions):
    from tests.models_registry.conftest import corrupt

    _champion, challenger = versions
    corrupt(challenger)
    client.force_login(engineer)
    response = client.post(f"/models/{challenger.pk}/promote/", {"reason": "try"}, follow=True)
    assert response.status_code == 200 and "Not done:" in response.content.decode()
    challenger.refresh_from_db()
    assert challenger.status == "candidate"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2026-01-02T00:00", "end": "2026-01-01T00:00"}, "must be after its start"),
        ({"start": "2026-01-01T00:00", "end": "2026-03-01T00:00"}, "at most 31 days"),
        ({"start": "not a date"}, "Enter a valid date/time"),
        ({"start": "0001-01-01T00:00", "end": "0001-01-02T00:00"}, "is out of range"),
        ({"start": "9999-12-30T00:00", "end": "9999-12-31T23:59"}, "is out of range"),
        ({"start": "2026-01-01T00:00\x00"}, "contains a control character"),
        ({"mode": "backtest\x00"}, "Select a valid choice"),
    ],
)
def test_a_bad_period_is_a_400_naming_the_problem(client, engineer, versions, query, message):
    client.force_login(engineer)
    response = client.get(f"/models/{versions[1].pk}/compare/", query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_the_recorded_mode_uses_real_and_shadow_alerts(client, engineer, versions):
    client.force_login(engineer)
    response = client.get(
        f"/models/{versions[1].pk}/compare/",
        {"start": "2026-01-01T00:00", "end": "2026-01-20T00:00", "mode": "recorded"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and "a shadow version's in shadow" in html
    assert 'id="challenger-alerts">0<' in html


@pytest.mark.parametrize("who", ["technician", "outsider"])
def test_technicians_cannot_see_or_move_versions(client, request, who, versions):
    _champion, challenger = versions
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/models/{challenger.pk}/compare/").status_code == 403
    for action in ("shadow", "promote", "rollback"):
        assert client.post(f"/models/{challenger.pk}/{action}/", {"reason": "x"}).status_code == 403
    challenger.refresh_from_db()
    assert challenger.status == "candidate"


def test_an_unknown_version_is_404_and_get_on_a_move_is_405(client, engineer, versions):
    client.force_login(engineer)
    assert client.get("/models/9999/compare/").status_code == 404
    assert client.get(f"/models/{versions[1].pk}/promote/").status_code == 405


# --- site scoping ---------------------------------------------------------------------------------------


@pytest.fixture
def south_asset(asset, other_site):
    from tests.conftest import make_asset

    return make_asset(other_site, tag="p-201", asset_type=asset.asset_type)


def test_an_engineer_of_one_site_sees_no_moves_and_is_refused_them(client, engineer, versions, south_asset):
    _champion, challenger = versions
    client.force_login(engineer)
    html = client.get(f"/models/{challenger.pk}/compare/").content.decode()
    assert 'id="moves-not-allowed"' in html and 'id="promote-form"' not in html
    for action in ("shadow", "promote", "rollback"):
        assert client.post(f"/models/{challenger.pk}/{action}/", {"reason": "x"}).status_code == 403
    challenger.refresh_from_db()
    assert challenger.status == "candidate"
    south_asset.site.members.add(engineer)
    client.post(f"/models/{challenger.pk}/promote/", {"reason": "member of both now"})
    challenger.refresh_from_db()
    assert challenger.status == "champion"


def test_the_comparison_counts_only_the_users_sites_alerts(client, engineer, versions, asset, south_asset):
    from datetime import timedelta

    from django.utils import timezone

    from tests.alerts.builders import make_alert

    champion, challenger = versions
    make_alert(asset, champion, state="resolved")
    make_alert(south_asset, champion, state="resolved", age_min=60)
    make_alert(south_asset, champion, state="resolved", age_min=120)
    client.force_login(engineer)
    now = timezone.localtime()
    query = {
        "start": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "mode": "recorded",
    }
    html = client.get(f"/models/{challenger.pk}/compare/", query).content.decode()
    assert 'id="champion-alerts">1<' in html
    south_asset.site.members.add(engineer)
    html = client.get(f"/models/{challenger.pk}/compare/", query).content.decode()
    assert 'id="champion-alerts">3<' in html


def test_the_page_of_a_type_with_no_asset_on_the_users_sites_compares_nothing_instead_of_a_500(
    client, engineer, db
):
    from tests.conftest import make_pump_type

    bare = make_pump_type()  # uploaded before any asset of the type was added
    champion = make_version(bare)
    promote(champion, reason="first")
    challenger = make_version(bare)
    client.force_login(engineer)
    for version in (challenger, champion):
        response = client.get(f"/models/{version.pk}/compare/")
        assert response.status_code == 200
        assert "on 0 asset(s)" in response.content.decode()


def test_the_alerts_a_version_would_add_are_timed_on_their_sites_clock_and_every_time_says_its_zone(
    client, engineer, versions, monkeypatch
):
    """The list said "P-101 10:22–10:35" (the server's UTC) for an alert whose own page said 04:22, with no
    zone named; the status history showed raw values ("∅ → candidate")."""
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    from models_registry import views
    from models_registry.comparison import Comparison, Episode, Side

    champion, challenger = versions
    asset = champion.asset_type.assets.get()
    asset.site.timezone = "Asia/Kolkata"  # +05:30
    asset.site.save(update_fields=["timezone"])
    start = datetime(2026, 3, 2, 22, 40, tzinfo=dt_timezone.utc)
    episode = Episode(asset, start, start + timedelta(minutes=13), start, None, 9.0)
    comparison = Comparison(
        challenger=Side(challenger, "backtest"),
        champion=Side(champion, "backtest"),
        start=start - timedelta(days=1),
        end=start + timedelta(hours=1),
        mode="backtest",
        assets=[asset],
        labels={},
        added=[episode],
        removed=[],
        observed={},
    )
    monkeypatch.setattr(views, "compare", lambda *args, **kwargs: comparison)
    client.force_login(engineer)

    html = client.get(f"/models/{challenger.pk}/compare/").content.decode()

    added = html.split('<ul id="added-alerts">', 1)[1].split("</ul>", 1)[0]
    assert "2026-03-03 04:10–04:23 IST" in added
    assert "stored readings of 2026-03-01 22:40 – 2026-03-02 23:40 UTC" in html
    history = html.split('id="status-history"', 1)[1]
    assert "Candidate → Champion" in history and "∅" not in history and "candidate" not in history
