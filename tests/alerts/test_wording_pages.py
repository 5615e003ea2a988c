"""The pages speak detection.wording's words about real explanations: which window is explained (opening
or peak, with its time), the peak's own explanation one click away (computed from the readings when the
scorer did not store one), and counterfactuals that the ONNX model itself confirms."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert
from alerts.services import explain_window
from alerts.services.board import normal_ranges, role_meta
from detection.explain import typical_ranges
from detection.wording import findings, reasons
from models_registry import cache
from tests.alerts.conftest import OPEN, fault_x, normal_x, score, window_end, windows
from tests.alerts.test_explanation import store_window_readings
from tests.conftest import PASSWORD


@pytest.fixture
def tech_client(client, technician):
    client.login(username=technician.username, password=PASSWORD)
    return client


def why_block(html: str) -> str:
    start = html.index('id="why-title"')
    return html[start : html.index("</section>", start)]


def site_time(moment, asset) -> str:
    return moment.astimezone(ZoneInfo(asset.site.timezone)).strftime("%H:%M:%S")


def test_the_detail_page_says_which_window_it_explains_and_links_the_peak(
    tech_client, asset, champion, trained
):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained)))
    score(asset, champion, windows(3, [(OPEN + 1) * 1.5], x=fault_x(trained, offset=80)))
    alert = Alert.objects.get()
    assert alert.peak_explanation is not None and alert.peak_window_end == window_end(3)

    opening = why_block(tech_client.get(reverse("alerts:detail", args=[alert.pk])).content.decode())
    assert 'data-window="opening"' in opening
    assert (
        f'<time datetime="{alert.opened_at.isoformat()}">{site_time(alert.opened_at, asset)}</time>'
        in opening
    )
    assert (
        "?window=peak" in opening
        and f"Explain the peak ({site_time(alert.peak_window_end, asset)}" in opening
    )

    peak = why_block(
        tech_client.get(reverse("alerts:detail", args=[alert.pk]) + "?window=peak").content.decode()
    )
    assert 'data-window="peak"' in peak and "Explain the opening window" in peak
    assert f'<time datetime="{alert.peak_window_end.isoformat()}">' in peak
    # The sentences are the peak's: vibration 80 above normal there, 40 at the opening.
    gap = lambda block: float(re.search(r"Vibration is ([\d.]+) mm/s above", block).group(1))  # noqa: E731
    assert gap(peak) == pytest.approx(gap(opening) + 40, abs=0.2)
    assert f"{(OPEN + 1) * 1.5 / champion.open_threshold:.1f}× the alert level".rstrip("0") in peak


def test_a_missing_peak_explanation_is_computed_from_the_readings_and_stored_once(
    tech_client, asset, champion, trained, monkeypatch
):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained)))
    score(asset, champion, windows(3, [(OPEN + 1) * 1.05], x=fault_x(trained, offset=45)))
    alert = Alert.objects.get()
    assert alert.peak_explanation is None and alert.peak_window_end == window_end(
        3
    )  # within 10 %: not stored
    store_window_readings(asset, window_end(3), vibration_offset=40.0)

    html = tech_client.get(reverse("alerts:detail", args=[alert.pk]) + "?window=peak").content.decode()

    alert.refresh_from_db()
    assert alert.peak_explanation["window_end"] == window_end(3).isoformat()
    assert alert.peak_explanation["score"] == pytest.approx((OPEN + 1) * 1.05)  # the stored Score row's
    assert 'data-window="peak"' in why_block(html)
    stored = alert.peak_explanation
    monkeypatch.setattr(cache, "loaded", lambda version: pytest.fail("the stored peak was explained again"))
    tech_client.get(reverse("alerts:detail", args=[alert.pk]) + "?window=peak")
    alert.refresh_from_db()
    assert alert.peak_explanation == stored


def test_a_peak_that_cannot_be_rebuilt_is_reported_on_the_page_not_as_an_error(
    tech_client, asset, champion, trained
):
    score(asset, champion, windows(0, [OPEN + 1] * 3, x=fault_x(trained)))
    score(asset, champion, windows(3, [(OPEN + 1) * 1.05], x=fault_x(trained, offset=45)))
    alert = Alert.objects.get()

    response = tech_client.get(reverse("alerts:detail", args=[alert.pk]) + "?window=peak")

    html = response.content.decode()
    assert response.status_code == 200
    assert "The peak window could not be explained" in html and 'data-window="opening"' in html
    alert.refresh_from_db()
    assert alert.peak_explanation is None


def test_the_counterfactual_value_brings_the_onnx_score_to_the_alert_level(asset, champion, trained):
    names = list(champion.feature_spec)
    i = names.index("vibration__std")
    x = normal_x(trained).astype(np.float64)
    model = cache.loaded(champion)
    x[i] *= 6  # vibration varies six times more than usual, everything else as usual
    assert float(model.score(x[None, :].astype(np.float32))[0]) > champion.open_threshold
    explanation = explain_window(champion, x.astype(np.float32), end=timezone.now(), score=0.0, sensors=None)
    roles = role_meta([asset.asset_type_id])[asset.asset_type_id]

    told = reasons(explanation, normal_ranges(champion), roles, open_threshold=champion.open_threshold)

    assert told[0].role == "vibration" and told[0].lead.feature == "vibration__std"
    lead = told[0].lead
    assert lead.headline.startswith("Vibration is varying") and "more than usual" in lead.headline
    assert lead.back_to_normal is not None and lead.back_to_normal < lead.value
    assert "back under the alert level below" in lead.sentence
    fixed = x.copy()
    fixed[i] = lead.back_to_normal
    assert float(model.score(fixed[None, :].astype(np.float32))[0]) == pytest.approx(
        champion.open_threshold, rel=1e-3
    )
    # the ratio on the page is the stored value over the stored usual upper bound
    low, high = typical_ranges(np.asarray(champion.background), names)["vibration__std"]
    assert lead.ratio == pytest.approx(x[i] / high, rel=1e-5)


def test_models_without_a_response_never_get_a_counterfactual(asset, champion, trained):
    explanation = explain_window(champion, fault_x(trained), end=timezone.now(), score=0.0, sensors=None)
    for feature in explanation["features"]:
        feature.pop("response")
    lines = findings(explanation, normal_ranges(champion), {}, open_threshold=champion.open_threshold)
    assert all(line.back_to_normal is None and line.counterfactual == "" for line in lines)
