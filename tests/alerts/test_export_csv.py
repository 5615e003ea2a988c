"""/alerts/export.csv: one row per visible alert with its timeline and verdict, streamed in chunks."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from alerts.metrics import export
from alerts.metrics.export import EXPORT_COLUMNS, aiter_chunks
from models_registry.models import ModelVersion
from plant.models import Asset

URL = "/alerts/export.csv"


def read(response) -> tuple[list[str], dict[int, dict[str, str]]]:
    assert response.status_code == 200
    assert response.streaming, "the export is streamed, not built in memory"
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    return header, {int(row[0]): dict(zip(header, row, strict=True)) for row in body}


def test_the_export_has_the_documented_columns_and_every_visible_alert(engineer_client, golden):
    response = engineer_client.get(URL)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, rows = read(response)
    assert header == list(EXPORT_COLUMNS) == [
        "id", "site", "asset", "model_version", "opened_at", "first_ack_at", "verdict", "verdict_at",
        "reason", "action", "closed_at", "auto_closed", "suppressed",
    ]  # fmt: skip
    a = golden.alerts
    visible = {name for name in a if name not in ("SH", "E1")}
    assert set(rows) == {a[name].pk for name in visible}, "no shadow alert, nothing of another site"
    assert rows[a["J8"].pk]["suppressed"] == "true" and rows[a["J8"].pk]["auto_closed"] == "true"
    assert rows[a["K5"].pk]["suppressed"] == "true" and rows[a["K5"].pk]["verdict"] == "confirmed_fault"


def test_an_exported_row_carries_the_alerts_timeline_and_its_verdict_in_force(engineer_client, golden):
    _, rows = read(engineer_client.get(URL))
    l4 = rows[golden.alerts["L4"].pk]
    assert l4 == {
        "id": str(golden.alerts["L4"].pk),
        "site": "north",
        "asset": "p-101",
        "model_version": "pump-anomaly v2",
        "opened_at": "2026-08-10T08:00:00+00:00",
        "first_ack_at": "2026-08-11T10:00:00+00:00",
        "verdict": "not_actionable",
        "verdict_at": "2026-08-12T10:00:00+00:00",
        "reason": "",
        "action": "",
        "closed_at": "2026-08-11T10:00:00+00:00",
        "auto_closed": "false",
        "suppressed": "false",
    }
    k2 = rows[golden.alerts["K2"].pk]
    assert (k2["first_ack_at"], k2["verdict"], k2["auto_closed"]) == ("2026-07-03T09:00:00+00:00", "", "true")
    j3 = rows[golden.alerts["J3"].pk]
    assert (j3["verdict"], j3["reason"]) == ("false_alarm", "sensor_glitch")


def test_the_export_is_filtered_by_site_and_date_range(engineer_client, golden):
    _, rows = read(engineer_client.get(URL, {"site": "south", "start": "2026-07-01", "end": "2026-07-31"}))
    assert set(rows) == {golden.alerts["K7"].pk, golden.alerts["K8"].pk}


def test_the_export_pages_through_the_alerts_in_chunks(engineer_client, golden, monkeypatch):
    _, whole = read(engineer_client.get(URL))
    monkeypatch.setattr(export, "EXPORT_CHUNK", 4)
    response = engineer_client.get(URL)
    parts = list(response.streaming_content)
    assert len(parts) == 1 + -(-len(whole) // 4), "a header, then one block per chunk of 4"
    assert list(csv.reader(io.StringIO(b"".join(parts).decode())))[1:] == [
        list(row.values()) for _, row in sorted(whole.items())
    ]


def test_the_asgi_stream_yields_the_same_chunks():
    async def collect() -> list[str]:
        return [part async for part in aiter_chunks(iter(["a,b\n", "1,2\n"]))]

    assert asyncio.run(collect()) == ["a,b\n", "1,2\n"]


def test_bad_filters_get_a_400_naming_them_and_technicians_a_403(client, golden):
    client.force_login(golden.engineer)
    response = client.get(URL, {"start": "June"})
    assert response.status_code == 400 and b"start:" in response.content
    client.force_login(golden.tess)
    assert client.get(URL).status_code == 403


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"end": "9999-12-31"}, "end"),
        ({"start": "0001-01-01"}, "start"),
        ({"site": "\x00"}, "site"),
        ({"start": "2026-01-01", "end": "9999-12-31"}, "end"),
    ],
)
def test_an_out_of_range_date_or_a_nul_is_a_400_not_an_endless_stream(engineer_client, params, param):
    response = engineer_client.get(URL, params)
    assert response.status_code == 400 and not response.streaming
    assert response.content.startswith(f"{param}:".encode())


FORMULAS = {
    "tag": '=HYPERLINK("http://evil.example/","x")',
    "name": "@SUM(1+1)",
    "model": "+cmd|' /C calc'!A0",
}


@pytest.fixture
def formula_names(golden):
    """Names a user could type that a spreadsheet would run as formulas (OWASP CSV injection)."""
    Asset.objects.filter(pk=golden.p101.pk).update(tag=FORMULAS["tag"], name=FORMULAS["name"])
    ModelVersion.objects.filter(pk=golden.pump_v2.pk).update(name=FORMULAS["model"])
    return golden


def test_text_cells_that_start_like_a_formula_are_written_as_text(engineer_client, formula_names):
    _, rows = read(engineer_client.get(URL))
    l4 = rows[formula_names.alerts["L4"].pk]
    assert l4["asset"] == "'" + FORMULAS["tag"]
    assert l4["model_version"] == "'" + FORMULAS["model"] + " v2"
    assert l4["id"] == str(formula_names.alerts["L4"].pk), "numbers stay numbers"


def test_the_metrics_csv_escapes_labels_and_keeps_numbers_numeric(engineer_client, formula_names):
    response = engineer_client.get("/api/v1/metrics.csv", {"group_by": "asset"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    p101 = [row for row in rows if row["key"] == str(formula_names.p101.pk)]
    assert p101 and all(row["label"] == f"'{FORMULAS['name']} · North" for row in p101)
    assert all(row["alerts"].isdigit() for row in p101)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("pump", "pump"),
        (-3, "-3"),
        (-2.5, "-2.5"),
        (None, ""),
    ],
)
def test_the_cell_helper_escapes_text_only(value, text):
    assert export.cell(value) == text
