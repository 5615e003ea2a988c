"""The hostile sweep's second pass: what tests/test_hostile_sweep.py does not send, over the same URL
patterns (every pattern Django resolves, from the access matrix's resolver walk: a new URL is swept here
without a line of its own) and the same world of two sites.

* methods the views do not take: PUT, PATCH, DELETE, OPTIONS and HEAD, as anonymous and as the role that
  passes the pattern's checks on site A's object, and PUT and DELETE as site A's technician and engineer on
  site B's object (site B's rows must not change); a console page gets PUT and DELETE;
* values the first pass leaves out, in every query parameter and every form field at once: other scripts'
  digits ("²", "٣", "１２"), floats, exponents, signs, "1_000" and hex where ids are read, 100 kB of text,
  dates with impossible or extreme time zones (a +14:00 date in year 1 and a -14:00 one in 9999 do not fit
  a datetime in UTC), 30 February, hour 24, a zone name, an epoch number;
* the same key twice in a query string or a form, site A's id first and site B's second and the other way
  round (a check reading one and a query reading the other would leak);
* form bodies as the wrong content type: JSON, plain text, multipart without boundary or with a broken
  one, a urlencoded body declared UTF-16, a urlencoded body of 100 kB with invalid escapes;
* JSON for the APIs: objects nested 1000 deep (also inside a list's item), duplicate keys, a byte-order mark,
  UTF-16, escaped lone surrogates ("\\ud800", valid JSON that no database text holds), -0 and 1e-400;
* CSV for the readings API and every upload form: a byte-order mark, latin-1, UTF-16, ragged rows, formulas
  ("=cmd|' /C calc'!A0", "+1", "@SUM(1)"), CRLF, a 100 kB line, a multipart body with no file;
* another site's edge assignments and agents: the gateway of site A asks for site B's bundle, site A's
  engineer decides site B's assignment, site A's gateway reports on site B's assignment.

The rules checked are the first pass's (tests.test_hostile_sweep.failures_of): no 5xx and no exception, no
site B row shown to site A, no site B row changed by site A. The requests are a fixed list.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from models_registry.models import EdgeAssignment
from plant.models import EdgeAgent
from tests.access_world import A, B, World
from tests.conftest import T0
from tests.test_access_matrix import PATTERNS, Pattern
from tests.test_hostile_sweep import (
    API_LISTS,
    FILE_FIELDS,
    FORM_FIELDS,
    QUERY_PARAMS,
    SITE_A_ROLES,
    SWEPT,
    TOKEN_APIS,
    VALID_BODIES,
    Request,
    failures_of,
    junk_roles,
    model_fields,
    passes_checks,
    path_variants,
    project_form_fields,
    send,
)
from tests.test_hostile_sweep import tokens as tokens_of_site_a
from tests.test_hostile_sweep import world as world_of_two_sites

# the first pass's module-scoped fixtures (the world of two sites, site A's CMMS token)
world, tokens = world_of_two_sites, tokens_of_site_a

LONG = "x" * 100_000
# One request per value, with every query parameter (or every form field) set to it.
VALUES = {
    "superscript_digit": "²",
    "arabic_digit": "٣",
    "fullwidth_digits": "１２",
    "float_id": "1.5",
    "exponent": "1e3",
    "plus": "+1",
    "underscore": "1_000",
    "hex": "0x1f",
    "spaced": " 7 ",
    "huge_negative": "-" + "9" * 30,
    "long_100k": LONG,
    "tz_out_of_range": "2026-01-05T08:00:00+99:00",
    "year_1_east": "0001-01-01T00:00:00+14:00",
    "year_9999_west": "9999-12-31T23:59:59-14:00",
    "feb_30": "2026-02-30",
    "hour_24": "2026-01-05T24:00",
    "zone_name": "2026-01-05T08:00:00 Europe/Nowhere",
    "epoch": "1700000000",
    "month_13": "2026-13",
}
METHODS = ("PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")


def junk_queries() -> dict[str, str]:
    return {label: urlencode(dict.fromkeys(QUERY_PARAMS, value)) for label, value in VALUES.items()}


def duplicate_queries(world: World) -> dict[str, str]:
    """The same key twice: site A's value and site B's, in both orders."""
    asset, sensor = (world.obj(label, B) for label in ("plant.asset", "plant.sensor"))
    own_asset, own_sensor = (world.obj(label, A) for label in ("plant.asset", "plant.sensor"))
    pairs = {
        "site": (world.sites[A].slug, world.sites[B].slug),
        "site__id__exact": (world.sites[A].pk, world.sites[B].pk),
        "asset": (own_asset.pk, asset.pk),
        "sensor": (own_sensor.pk, sensor.pk),
    }
    return {
        "dup_a_then_b": urlencode([(k, v) for k, (a, b) in pairs.items() for v in (a, b)]),
        "dup_b_then_a": urlencode([(k, v) for k, (a, b) in pairs.items() for v in (b, a)]),
    }


def duplicate_forms(world: World) -> dict[str, dict]:
    """Form bodies naming site A's and site B's objects in the same fields (a list is several values)."""
    ids = {
        "asset": ("plant.asset", None),
        "assets": ("plant.asset", None),
        "sensor": ("plant.sensor", None),
        "alert": ("alerts.alert", None),
    }
    a_then_b = {name: [world.obj(label, A).pk, world.obj(label, B).pk] for name, (label, _) in ids.items()}
    a_then_b["site"] = [world.sites[A].pk, world.sites[B].pk]
    b_then_a = {name: values[::-1] for name, values in a_then_b.items()}
    common = {"action": "acknowledge", "what": "calibration", "reason": "sweep", "note": "sweep"}
    return {"dup_a_then_b": {**common, **a_then_b}, "dup_b_then_a": {**common, **b_then_a}}


def wrong_content_types(form: dict) -> dict[str, tuple[bytes, str]]:
    """A well-meant form sent as what a form view does not read."""
    encoded = urlencode(form).encode()
    return {
        "json": (orjson.dumps(form), "application/json"),
        "json_array": (b"[1, 2]", "application/json"),
        "text": (encoded, "text/plain"),
        "multipart_no_boundary": (encoded, "multipart/form-data"),
        "multipart_broken": (b"--zz\r\nContent-Disposition: form-data\r\n\r\nx", "multipart/form-data; boundary=zz"),
        "multipart_empty_boundary": (b"--\r\n", "multipart/form-data; boundary="),
        "urlencoded_utf16": (encoded, "application/x-www-form-urlencoded; charset=utf-16"),
        "urlencoded_unknown_charset": (encoded, "application/x-www-form-urlencoded; charset=no-such"),
        "urlencoded_long_escapes": (b"note=%ff%fe%00&" + b"a=" + LONG.encode() + b"&%zz=%", "application/x-www-form-urlencoded"),
    }  # fmt: skip


def deep_object(depth: int) -> str:
    """JSON text of objects nested ``depth`` deep (json.dumps itself gives up before 1000)."""
    return '{"a": ' * depth + "1" + "}" * depth


def extra_json(list_key: str | None) -> dict[str, bytes]:
    """JSON bodies the first pass does not send: depth, duplicate keys, encodings, surrogates."""
    key = list_key or "a"
    item = {"sensor": "north.p-a.vibration", "ts": T0.isoformat(), "value": 1.0}
    surrogate = '{"%s": [{"sensor": "\\ud800", "ts": "\\udfff", "value": 1, "id": "\\ud800", "reason": "\\ud800"}], "note": "\\ud800"}'
    bodies = {
        "deep_object": deep_object(1000).encode(),
        "deep_in_item": f'{{"{key}": [{deep_object(1000)}, {deep_object(1000)}]}}'.encode(),
        "duplicate_keys": f'{{"{key}": [], "{key}": {{"a": 1}}}}'.encode(),
        "duplicate_keys_reversed": f'{{"{key}": {{"a": 1}}, "{key}": []}}'.encode(),
        "bom": b"\xef\xbb\xbf" + orjson.dumps({key: [item]}),
        "utf16": json.dumps({key: [item]}).encode("utf-16"),
        "surrogates": (surrogate % key).encode(),
        "tiny_numbers": f'{{"{key}": [{{"sensor": "north.p-a.vibration", "ts": -0, "value": 1e-400, "id": -0}}]}}'.encode(),
        "tz_extremes": orjson.dumps({key: [{**item, "ts": "0001-01-01T00:00:00+14:00"}, {**item, "ts": "9999-12-31T23:59:59-14:00"}, {**item, "ts": "2026-01-05T08:00:00+99:00"}]}),
        "ids_as_floats": orjson.dumps({key: [{**item, "id": 1.5, "assignment": 1.5, "pk": 1e300}]}),
        "unicode_digit_ids": orjson.dumps({key: [{**item, "id": "٣", "assignment": "²", "pk": "１２"}]}),
        "empty": b"",
        "whitespace": b" \n\t ",
        "nul": b"\x00",
    }  # fmt: skip
    return bodies


CSV_FORMULAS = "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(1,1)", "\t=1", "\r=1"


def csv_bodies(sensor_key: str) -> dict[str, bytes]:
    """CSV files in the readings API's columns (sensor, ts, value) and a mapping import's (sensor, topic):
    byte-order mark, other encodings, ragged rows, formulas, long lines."""
    readings = f"sensor,ts,value\n{sensor_key},{T0.isoformat()},1.5\n"
    mapping = f"sensor,topic\n{sensor_key},plant/ünï/t\n"
    formulas = "".join(f'{sensor_key},"{f}","{f}"\n' for f in CSV_FORMULAS)
    return {
        "bom_readings": b"\xef\xbb\xbf" + readings.encode(),
        "bom_mapping": b"\xef\xbb\xbf" + mapping.encode(),
        "only_bom": b"\xef\xbb\xbf",
        "latin1": mapping.encode("latin-1"),
        "utf16": readings.encode("utf-16"),
        "utf16_mapping": mapping.encode("utf-16"),
        "utf16_be_no_bom": mapping.encode("utf-16-be"),
        "ragged": f"sensor,ts,value\n{sensor_key}\n{sensor_key},{T0.isoformat()},1,2,3\n,,\n".encode(),
        "formulas": f"sensor,ts,value\n{formulas}".encode(),
        "formula_header": b"\"=cmd|' /C calc'!A0\",+topic,@x\n1,2,3\n",
        "crlf": readings.replace("\n", "\r\n").encode(),
        "cr_only": readings.replace("\n", "\r").encode(),
        "long_line": f"sensor,topic\n{sensor_key},{LONG}\n".encode(),
        "many_columns": ("sensor," + ",".join(f"c{i}" for i in range(2000)) + "\n").encode(),
        "quote_in_field": f'sensor,topic\n{sensor_key},a"b\n"{sensor_key}"x,"y\n'.encode(),
    }


# --- sending ----------------------------------------------------------------------------------------------


def sweep_pattern(pattern: Pattern, world: World) -> list[str]:
    failures: list[str] = []
    is_token_api = pattern.key in TOKEN_APIS
    is_api = is_token_api or pattern.route.startswith("api/")
    is_admin = pattern.admin_model is not None
    junker = junk_roles(pattern)[-1]
    sensor_key = world.obj("plant.sensor", A).key
    queries = junk_queries()
    form_fields = FORM_FIELDS + project_form_fields() + model_fields(pattern)
    forms = {label: dict.fromkeys(form_fields, value) for label, value in VALUES.items()}
    if is_admin:
        # The console's pages are Django's ModelAdmin views; per model what differs is the add page's
        # initial values from the query string (dates), the change list's filters and the model form.
        queries = {k: v for k, v in queries.items() if k in ADMIN_QUERIES[pattern.admin_view]}
        forms = {k: v for k, v in forms.items() if k in ADMIN_FORMS[pattern.admin_view]}

    def ask(request: Request, guard: bool = False):
        response, body = send(request, world, failures if guard else None)
        failures.extend(failures_of(request, response, body))
        response.sweep_body = body
        return response

    paths = dict(path_variants(world, pattern))
    own, other = paths.get("own"), paths.get("other_site")
    if own is None:
        return failures
    # Methods the views do not take: as nobody, as the role past the checks, and (on site B's object) as
    # site A's users, whose DELETE or PUT must change nothing of site B.
    for method in METHODS if not is_admin else ("PUT", "DELETE"):
        if not is_admin:
            ask(Request("anonymous", method, own, b"{}", "application/json"))
        ask(Request(junker, method, own, b"{}", "application/json"))
        if is_token_api and junker != "gateway":
            ask(Request("gateway", method, own, b"{}", "application/json"))
    for role in SITE_A_ROLES if other is not None else ():
        for method in ("PUT", "DELETE"):
            ask(Request(role, method, other, b"{}", "application/json"), guard=True)

    got = ask(Request(junker, "GET", own))
    posted = ask(Request(junker, "POST", own, {}))
    if passes_checks(got):
        for query in queries.values():
            ask(Request(junker, "GET", f"{own}?{query}"))
        if not is_admin:
            ask(Request(junker, "GET", f"{own}?{queries['arabic_digit']}", htmx=True))
            ask(Request(junker, "GET", f"{own}?{queries['year_9999_west']}", htmx=True))
    if b'type="file"' in got.sweep_body:
        ask(Request(junker, "POST", own, {"note": "no file"}))  # multipart without the file
        for name, content in csv_bodies(sensor_key).items():
            files = {field: SimpleUploadedFile(f"{name}.csv", content) for field in FILE_FIELDS}
            ask(Request(junker, "POST", own, files))
    if passes_checks(posted):
        for form in forms.values():
            ask(Request(junker, "POST", own, form))
        if not is_admin:
            for body, content_type in wrong_content_types({"action": "acknowledge", "note": "x"}).values():
                ask(Request(junker, "POST", own, body, content_type))
        for base in VALID_BODIES.get(pattern.key, ())[:2]:
            for name in base:
                for value in VALUES.values():
                    ask(Request(junker, "POST", own, {**base, name: value}))
        if is_api:
            for raw in extra_json(API_LISTS.get(pattern.key)).values():
                ask(Request(junker, "POST", own, raw, "application/json"))
        if pattern.key == "api:readings":
            for raw in csv_bodies(sensor_key).values():
                ask(Request(junker, "POST", own, raw, "text/csv"))
    if not is_admin:
        # Site A's users with the same key twice, site A's value and site B's: nothing of site B shown
        # or changed.
        for role in SITE_A_ROLES:
            for query in duplicate_queries(world).values():
                ask(Request(role, "GET", f"{own}?{query}"))
            for form in duplicate_forms(world).values():
                ask(Request(role, "POST", own, form), guard=True)
    return failures


# What each console view is asked (see sweep_pattern).
ADMIN_QUERIES = {
    "changelist": ("arabic_digit", "year_9999_west"),
    "add": ("year_1_east", "year_9999_west", "feb_30"),
    "change": (),
}
ADMIN_FORMS = {
    "changelist": (),
    "add": ("year_9999_west", "superscript_digit"),
    "change": ("year_1_east", "float_id"),
}


@pytest.fixture(scope="module")
def edge_rows(world, django_db_blocker):
    """An edge assignment and an edge agent on each site (the world has none), in the world's transaction."""
    with django_db_blocker.unblock():
        rows = {}
        for site in (A, B):
            gateway = world.obj("plant.gateway", site)
            agent = EdgeAgent.objects.create(
                gateway=gateway, agent_version="edge-b" if site == B else "1", last_contact_at=T0
            )
            assignment = EdgeAssignment.objects.create(
                asset=world.obj("plant.asset", site),
                version=world.obj("models_registry.modelversion"),
                bundle=b"bundle-of-" + site.encode(),
                bundle_sha256=("b" if site == B else "a") * 64,
                signature=b"sig",
                outcome_reason="edge-b" if site == B else "",
            )
            rows[site] = (agent, assignment)
    return rows


SWEPT_HERE = [p for p in SWEPT if p.admin_model is None or p.admin_view in ("changelist", "add", "change")]


@pytest.mark.parametrize("pattern", SWEPT_HERE, ids=[p.key for p in SWEPT_HERE])
def test_hostile_sweep_extremes(db, world, tokens, edge_rows, pattern):
    failures = sweep_pattern(pattern, world)
    assert not failures, f"{pattern.key}: {len(failures)} failing requests\n" + "\n".join(failures[:40])


def edge_state(assignment: EdgeAssignment) -> tuple:
    fresh = EdgeAssignment.objects.get(pk=assignment.pk)
    return fresh.stage, fresh.shadow_report, fresh.outcome_reason, fresh.decided_at, fresh.outcome_at


def test_another_sites_edge_assignment_is_neither_shown_nor_changed(db, world, tokens, edge_rows):
    """Site B's assignment id, asked by site A's gateway and engineer in the path and in report bodies."""
    theirs = edge_rows[B][1]
    before = edge_state(theirs)
    failures: list[str] = []

    def ask(request: Request):
        response, body = send(request, world, failures)
        failures.extend(failures_of(request, response, body))
        return response, body

    response, body = ask(Request("gateway", "GET", reverse("api:edge_bundle", kwargs={"pk": theirs.pk})))
    assert response.status_code == 404 and b"bundle-of-B" not in body
    mine, _ = ask(Request("gateway", "GET", reverse("api:edge_bundle", kwargs={"pk": edge_rows[A][1].pk})))
    assert mine.status_code == 200, "site A's own bundle is served (the check above is not vacuous)"
    for action in ("approve", "cancel"):
        path = reverse("models_registry:edge_decide", kwargs={"pk": theirs.pk})
        response, _ = ask(Request("engineer", "POST", path, {"action": action, "reason": "sweep"}))
        assert response.status_code == 404
    report = {"assignment": theirs.pk, "id": theirs.pk, "sha256": theirs.bundle_sha256}
    for key, extra in (
        ("reports", {"verdict": "pass", "windows": 10}),
        ("outcomes", {"outcome": "switched"}),
    ):
        path = reverse(f"api:edge_{'shadow_reports' if key == 'reports' else key}")
        ask(Request("gateway", "POST", path, orjson.dumps({key: [{**report, **extra}]}), "application/json"))
    response, body = ask(Request("gateway", "GET", reverse("api:edge_assignments")))
    assert response.status_code == 200 and b"b" * 64 not in body
    assert edge_state(theirs) == before
    assert not failures, "\n".join(failures)


def test_every_pattern_is_swept_here_too():
    keys = {p.key for p in SWEPT_HERE}
    assert {p.key for p in PATTERNS if p.admin_model is None} - {"readyz"} <= keys
