"""The hostile-input sweep: every URL pattern Django resolves, with junk in its path, query string and body,
asked as each role of the access world (tests/access_world.py, two sites).

Where tests/test_access_matrix.py asks each pattern one well-formed question per role and site, this module
asks the same patterns badly formed ones: path arguments of the user's own site, of the other site, of no
object, and junk (ids past 2**63, long strings, unicode, "..", NUL where the converter allows text); query
strings with junk in the parameters the pages read (page, since, until, start, end, site, asset, window,
format, limit, offset, sort, q, ...); POST bodies form-encoded and as JSON with junk in every field a view or
form reads (missing fields, wrong types, ids past 2**63, NaN / Infinity, 1e400, 9999-99-99, NUL); and the
token APIs (readings ingest, edge agent, work-order outcomes) malformed JSON, wrong content types, arrays
where objects are expected, unknown tokens. The app's own forms also get a well-formed body with one field
at a time made junk (VALID_BODIES), pages are asked as htmx asks (their partials), and pages with a file
field get junk uploads (binary, not UTF-8, NUL, another site's sensor, junk columns).

Three rules are checked:

* no answer is a 5xx and no exception escapes a view (the client runs with raise_request_exception=False so
  every failure of the sweep is collected and listed with its method, URL and body);
* a successful (2xx) answer to a user of site A never shows an object of site B: the names, tags and sensor
  keys of site B's rows (MARKERS) are absent from the body, also when the query string or the body names site
  B's objects (unless the answer only quotes what the request sent);
* a POST of site A's users naming site B's objects (in the path or the body) changes no row of site B.

It runs on SQLite and PostgreSQL alike (PostgreSQL refuses NUL and over-long text where SQLite stores them).

The requests are a fixed list (no random draw), so every run sends the same ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import orjson
import pytest
from django import forms
from django.conf import settings as django_settings
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import NoReverseMatch, reverse

from tests.access_world import A, B, World
from tests.test_access_matrix import (
    ADMIN_MODELS,
    MISSING_PK,
    PATTERNS,
    SESSIONS,
    URLS,
    Pattern,
    pk_of,
)
from tests.test_access_matrix import world as world_of_two_sites

world = world_of_two_sites  # the module-scoped fixture `world`, shared with the access matrix

# The roles asked: no session, the gateway token of site A, and site A's technician and engineer (whose
# answers are checked for site B's rows), and a superuser (who passes every access check, so junk reaches
# the code behind them).
ROLES = ("anonymous", "gateway", "cmms", "technician", "engineer", "superuser")
SITE_A_ROLES = ("technician", "engineer")

HUGE_ID = "9" * 30  # an int converter accepts it; no database integer holds it
JUNK_TEXT = {
    "long": "x" * 3000,
    "unicode": "ünï\u202ecødé-😀",
    "traversal": "../../etc/passwd",
    "nul": "a\x00b",
    "negative": "-1",
}

# Values put in every query parameter and form field at once, one request per value.
JUNK_VALUES = {
    "empty": "",
    "negative": "-1",
    "zero": "0",
    "huge": HUGE_ID,
    "float_huge": "1e400",
    "nan": "NaN",
    "inf": "Infinity",
    "bad_date": "9999-99-99",
    "far_date": "9999-12-31T23:59:59",
    "long": "x" * 5000,
    "unicode": "ünï\u202ecødé-😀",
    "nul": "a\x00b",
    "traversal": "../../etc/passwd",
    "list": "[1,2]",
}
# JSON values of the wrong type or out of range, one request per value with every field set to it.
JUNK_JSON = {
    "null": None,
    "true": True,
    "negative": -1,
    "huge_int": 10**30,
    "huge_float": 1e308,
    "string": "x" * 5000,
    "bad_date": "9999-99-99",
    "nul": "a\x00b",
    "list": [1, [2]],
    "object": {"a": {"b": []}},
}
# Bodies that are not JSON objects at all, sent as application/json.
RAW_JSON_BODIES = {
    "malformed": b'{"a": ',
    "array": b"[1, 2, 3]",
    "string": b'"x"',
    "nan_literal": b'{"value": NaN, "readings": [{"value": Infinity}]}',
    "huge_number": b'{"value": 1e400, "readings": [{"ts": 1e400, "value": 1e400}]}',
    "invalid_utf8": b'{"a": "\xff\xfe"}',
    "deep": b"[" * 5000 + b"]" * 5000,
}
# The query parameters and form fields the pages, APIs and forms read (grep of request.GET/POST, the forms'
# fields and the edge reports' keys), plus the common ones a client might try.
QUERY_PARAMS = (
    "page", "since", "until", "from", "to", "start", "end", "site", "asset", "window", "format", "limit",
    "offset", "sort", "q", "o", "period", "group_by", "kpi_period", "metric", "key", "range", "include",
    "state", "severity", "category", "kind", "version", "next", "e", "p", "all",
)  # fmt: skip
FORM_FIELDS = (
    "action", "note", "what", "reason", "kind", "fault_type", "start", "end", "since", "range", "mode",
    "version", "asset", "assets", "asset_type", "site", "sensor", "alert", "shadow_hours", "auto_approve",
    "outcome", "findings", "next", "detector", "n_seeds", "n_estimators", "open_threshold", "clear_threshold",
    "feature_spec", "output_spec", "name", "url", "secret", "credential", "token", "file", "csv", "value",
    "ts", "t", "at", "id", "first_ts", "last_ts", "oldest_ts", "count", "message", "agent_version", "drops",
    "models", "connections", "readings", "events", "reports", "outcomes", "work_order", "stage_id",
    "equipment_id", "to_state", "peak_at", "reported_at", "error", "result", "score_correlation",
)  # fmt: skip


def project_form_fields() -> tuple[str, ...]:
    """Every field name (with its form's prefix) of every form class the project's apps define."""
    names: set[str] = set()
    pending = [forms.BaseForm]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in PROJECT_APPS:
            prefix = getattr(cls, "prefix", None)
            names.update(f"{prefix}-{name}" if prefix else name for name in getattr(cls, "base_fields", {}))
    return tuple(sorted(names - set(FORM_FIELDS)))


PROJECT_APPS = ("plant", "alerts", "models_registry", "notify", "handoff", "demo", "config")

# The list each gateway API reads from its JSON object; its items get junk too.
API_LISTS = {
    "api:readings": "readings",
    "api:edge_events": "events",
    "api:edge_heartbeat": "drops",
    "api:edge_shadow_reports": "reports",
    "api:edge_outcomes": "outcomes",
}
TOKEN_APIS = (
    *API_LISTS,
    "api:edge_assignments",
    "api:edge_bundle",
    "api:work_order_outcome",
    "demo:cmms_orders",
)

# What a 2xx answer shows only if it shows site B: its name, its rows' names and its sensors' keys.
MARKERS = re.compile(r"\bSouth\b|south\.p-b|\bP-B\b|broker-B|inbox-B|hook-B|edge-b")

TOKENS: dict[str, str] = {}  # role -> bearer token, made by the `tokens` fixture
BAD_TOKENS = ("not-a-token", "x" * 5000, "ünïcødé", "Bearer", "a\tb")


@dataclass(frozen=True)
class Request:
    role: str
    method: str
    path: str
    body: bytes | dict | None = None
    content_type: str | None = None
    token: str | None = None  # an Authorization bearer token other than the gateway's
    htmx: bool = False  # sent as htmx sends it (HX-Request), which views answer with a partial

    def sent_text(self) -> str:
        """Everything the request sent, as text."""
        parts = [self.path, self.body.decode("utf-8", "replace") if isinstance(self.body, bytes) else ""]
        for value in (self.body or {}).values() if isinstance(self.body, dict) else ():
            if hasattr(value, "read"):
                value.seek(0)
                parts.append(value.read().decode("utf-8", "replace"))
            else:
                parts.append(str(value))
        return "\n".join(parts)

    def describe(self) -> str:
        body = self.body
        if isinstance(body, bytes | dict):
            body = repr(body)[:300]
        htmx = " (htmx)" if self.htmx else ""
        return f"{self.role} {self.method}{htmx} {self.path[:300]} {self.content_type or ''} {body or ''}"


# --- path arguments -----------------------------------------------------------------------------------------


def own_kwargs(world: World, pattern: Pattern, site: str) -> dict | None:
    """The pattern's arguments naming an object of ``site`` (None when the sweep knows no object for it)."""
    entry = URLS.get(pattern.key)
    if pattern.admin_model is not None:
        objects = world.objects.get(pattern.admin_model, {})
        obj = objects.get(site) or objects.get(None)
        return {"object_id": obj.pk} if obj is not None and "object_id" in pattern.route else {}
    if entry is None:
        return {}
    if entry.kwargs is not None:
        return entry.kwargs(world, site if site in entry.sites else entry.sites[0])
    if entry.obj is not None:
        objects = world.objects[entry.obj]
        return pk_of(entry.obj)(world, site if site in objects else None)
    return {}


def converter_of(pattern: Pattern, name: str) -> str:
    match = re.search(rf"<(?:(\w+):)?{name}>", pattern.route)
    return (match.group(1) or "str") if match else "str"


def path_variants(world: World, pattern: Pattern) -> list[tuple[str, str]]:
    """(label, path): site A's object, site B's object, then each argument in turn missing or junk."""
    if pattern.name is None:
        return [("unnamed", "/" + pattern.route.replace("(?P<url>.*)$", "nowhere/").replace("^", ""))]
    if pattern.name.startswith("admin:") and pattern.admin_model and pattern.admin_view == "redirect":
        return []  # the admin's unnamed redirect to the change page: the change page is asked
    own = own_kwargs(world, pattern, A)
    if own is None:
        return []
    variants: list[tuple[str, dict]] = [("own", own)]
    other = own_kwargs(world, pattern, B)
    if other is not None and other != own:
        variants.append(("other_site", other))
    for name in own:
        converter = converter_of(pattern, name)
        if converter in ("int",):
            junk = {"missing": MISSING_PK, "huge": HUGE_ID, "zero": "0"}
        elif converter == "slug":
            junk = {"missing": "no-such-thing", "long": "x" * 3000, "negative": "-1"}
        elif pattern.admin_model is not None:  # the admin's object id: Django's own parsing, asked briefly
            junk = {"missing": "no-such-thing", "nul": JUNK_TEXT["nul"], "traversal": JUNK_TEXT["traversal"]}
        else:
            junk = {"missing": "no-such-thing", **JUNK_TEXT}
        for label, value in junk.items():
            variants.append((f"{name}={label}", {**own, name: value}))
    paths = []
    for label, kwargs in variants:
        try:
            paths.append((label, reverse(pattern.name, kwargs=kwargs)))
        except NoReverseMatch:
            continue  # a value the converter refuses never reaches a view
    return paths


# --- bodies ---------------------------------------------------------------------------------------------------


def junk_forms(world: World, fields: tuple[str, ...] = FORM_FIELDS) -> dict[str, dict]:
    bodies = {label: dict.fromkeys(fields, value) for label, value in JUNK_VALUES.items()}
    bodies["missing"] = {}
    # Every id field naming site B's objects: an A user must be refused (and see nothing of B).
    asset, sensor, alert = (world.obj(label, B) for label in ("plant.asset", "plant.sensor", "alerts.alert"))
    bodies["other_site"] = {
        **dict.fromkeys(fields, "1"),
        "asset": asset.pk,
        "assets": asset.pk,
        "site": world.sites[B].pk,
        "sensor": sensor.pk,
        "alert": alert.pk,
        "action": "acknowledge",
        "what": "calibration",
        "reason": "sweep",
        "note": "sweep",
    }
    return bodies


def model_fields(pattern: Pattern) -> tuple[str, ...]:
    """The fields of an admin page's model (its add and change forms post them)."""
    if pattern.admin_model is None:
        return ()
    model = next(m for m in admin.site._registry if m._meta.label_lower == pattern.admin_model)
    return tuple(f.name for f in model._meta.get_fields() if f.concrete and not f.auto_created)


def junk_json(list_key: str | None) -> dict[str, bytes]:
    bodies = dict(RAW_JSON_BODIES)
    for label, value in JUNK_JSON.items():
        item = dict.fromkeys(FORM_FIELDS, value)
        document = dict(item)
        if list_key:
            document[list_key] = [item, value, [item]]
        bodies[f"fields={label}"] = json.dumps(document).encode()
    if list_key:
        bodies["list_not_list"] = orjson.dumps({list_key: {"a": 1}})
        bodies["list_of_junk"] = orjson.dumps({list_key: [None, 1, "x", [], {}]})
        bodies["list_of_ranges"] = orjson.dumps(
            {
                list_key: [
                    {"sensor": "north.p-a.vibration", "ts": ts, "value": 1.0, "t": ts, "at": ts}
                    for ts in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-99-99", -1e18, 1e18)
                ]
            }
        )
    return bodies


# Well-formed bodies of the app's own forms: each is sent with one field at a time (and an extra "note")
# replaced by each junk value, so junk reaches the code behind the fields that are valid.
VALID_BODIES: dict[str, list[dict]] = {
    "alerts:feedback": [
        {"action": action, "note": "ok", "next": "detail"}
        for action in ("acknowledge", "confirm:repaired", "false_alarm:sensor_glitch", "snooze:1h")
    ],
    "alerts:asset_missed_failure": [
        {"missed-start": "2026-01-05T08:00", "missed-end": "2026-01-05T09:00", "missed-fault_type": "bearing"}
    ],
    "models_registry:asset_recalibrate": [
        {"calibrate-start": "2026-01-05T08:00", "calibrate-end": "2026-01-05T09:00"}
    ],
    "models_registry:retrain": [{"asset_type": "pump", "kind": "anomaly", "since": "2026-01-05T08:00"}],
    "models_registry:edge_assign": [{"version": "1", "assets": "1", "shadow_hours": "2"}],
    "alerts:noise_apply": [{"what": "calibration"}, {"what": "threshold"}],
    "models_registry:edge_decide": [
        {"action": "approve", "reason": "ok"},
        {"action": "cancel", "reason": "ok"},
    ],
    "demo:cmms_report": [{"outcome": "done", "findings": "ok"}],
}


def mutations(bases: list[dict]) -> list[dict]:
    found = []
    for base in bases:
        for name in (*base, "note"):
            found.extend({**base, name: value} for value in JUNK_VALUES.values())
    return found


FILE_FIELDS = ("file", "onnx_file")
MAPPING_COLUMNS = "sensor,topic,qos,register,unit_id,type,scale,node_id,address,kind,count"


def junk_files(world: World) -> dict[str, bytes]:
    """Uploads for every file field: not text, not UTF-8, NUL, another site's sensor, junk columns."""
    junk_row = ",".join(["-1", "1e400", "NaN", HUGE_ID, "x" * 5000, "9999-99-99", "ünï", "../x", "", "[]"])
    return {
        "binary": bytes(range(256)) * 8,
        "empty": b"",
        "invalid_utf8": b"sensor,topic\n\xff\xfe,a\n",
        "nul": b"sensor,topic\nnorth\x00.p-a.vibration,a/b\n",
        "other_site": f"sensor,topic\n{world.obj('plant.sensor', B).key},a/b\n".encode(),
        "junk_columns": f"{MAPPING_COLUMNS}\nnorth.p-a.vibration,{junk_row}\n".encode(),
        "header_only": f"{MAPPING_COLUMNS}\n".encode(),
        "ragged": b'sensor,topic\n"unterminated,\n,,,,,,\n\r\r\n',
    }


def junk_queries(world: World) -> dict[str, str]:
    queries = {label: urlencode(dict.fromkeys(QUERY_PARAMS, value)) for label, value in JUNK_VALUES.items()}
    queries["invalid_escape"] = "site=%ff%fe&asset=%c0%af&page=%00"
    asset = world.obj("plant.asset", B)
    queries["other_site"] = urlencode(
        {"site": world.sites[B].slug, "asset": asset.pk, "sensor": world.obj("plant.sensor", B).pk}
    )
    queries["other_site_id"] = urlencode({"site": world.sites[B].pk, "site__id__exact": world.sites[B].pk})
    return queries


# --- sending --------------------------------------------------------------------------------------------------


def client_for(role: str, world: World, token: str | None = None) -> Client:
    if token is not None:
        return Client(raise_request_exception=False, headers={"Authorization": f"Bearer {token}"})
    if role in ("gateway", "cmms"):
        token = world.token if role == "gateway" else TOKENS["cmms"]
        return Client(raise_request_exception=False, headers={"Authorization": f"Bearer {token}"})
    client = Client(raise_request_exception=False)
    if role in SESSIONS:
        client.cookies[django_settings.SESSION_COOKIE_NAME] = SESSIONS[role]
    return client


def send(request: Request, world: World, failures: list[str] | None = None):
    """Send the request inside a savepoint rolled back after it; with ``failures``, also check that it
    changed no row of site B (asked for site A's users posting site B's ids)."""
    client = client_for(request.role, world, request.token)
    with transaction.atomic():  # what one request changes, the next does not see
        before = site_b_rows(world) if failures is not None else None
        headers = {"HX-Request": "true"} if request.htmx else {}
        if request.method == "GET":
            response = client.get(request.path, headers=headers)
        elif request.method != "POST" or isinstance(request.body, bytes):
            # PUT, PATCH, DELETE, OPTIONS, HEAD, and bodies sent as they are: the client re-encodes a body
            # to the charset its content type names (tests/test_hostile_sweep_extremes.py)
            response = client.generic(
                request.method, request.path, request.body or b"", request.content_type or "", headers=headers
            )
        elif request.content_type is None:
            response = client.post(request.path, request.body or {}, headers=headers)
        else:
            response = client.post(
                request.path, request.body or b"", content_type=request.content_type, headers=headers
            )
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if before is not None:
            after = site_b_rows(world)
            changed = [label for label in before if before[label] != after[label]]
            if changed:
                failures.append(f"site B's {', '.join(changed)} changed by site A: {request.describe()}")
        transaction.set_rollback(True)
    return response, body


def site_b_rows(world: World) -> dict[str, list]:
    """Every row of site B in every site-scoped console model, with all its values: what a site-A user's
    request must leave as it was."""
    rows = {}
    for model, model_admin in admin.site._registry.items():
        site_path = getattr(model_admin, "site_path", None)
        if site_path is None:
            continue
        lookup = f"{site_path}__in" if site_path else "pk__in"
        rows[model._meta.label] = list(
            model._default_manager.filter(**{lookup: [world.sites[B].pk]}).order_by("pk").values_list()
        )
    return rows


def passes_checks(response) -> bool:
    """Whether an answer came from past the view's access checks (junk is worth sending after it): not a
    refusal, and not a redirect to a login page (a redirect after a POST that was done is past them)."""
    if response.status_code in (301, 302):
        return urlsplit(response["Location"]).path not in (reverse("login"), reverse("admin:login"))
    return response.status_code not in (401, 403, 404, 405)


def failures_of(request: Request, response, body: bytes) -> list[str]:
    found = []
    if response.status_code >= 500 or getattr(response, "exc_info", None):
        exc = response.exc_info[1] if getattr(response, "exc_info", None) else None
        found.append(f"HTTP {response.status_code} {exc!r}: {request.describe()}")
    if request.role in SITE_A_ROLES and 200 <= response.status_code < 300:
        # An error quoting what the request sent (an uploaded file's unknown sensor key) shows nothing new.
        sent = request.sent_text()
        shown = [
            m.group() for m in MARKERS.finditer(body.decode("utf-8", "replace")) if m.group() not in sent
        ]
        if shown:
            found.append(f"site B's {shown[0]!r} shown to site A: {request.describe()}")
    return found


def junk_roles(pattern: Pattern) -> tuple[str, ...]:
    """Who sends the junk: the roles that get past the pattern's access checks (for a console model's
    pages the one that may change it: an engineer for site-scoped models, else a superuser)."""
    if pattern.admin_model is not None:
        entry = ADMIN_MODELS.get(pattern.admin_model)
        return ("engineer",) if entry is not None and entry.who == "engineer" else ("superuser",)
    if pattern.key == "api:work_order_outcome":
        return ("cmms",)
    if pattern.key in TOKEN_APIS:
        return ("gateway",)
    return ("technician", "engineer", "superuser")


# A console page's form is Django's ModelForm; fewer kinds of junk reach it than reach the app's own views.
ADMIN_JUNK = ("missing", "other_site", "huge", "nul", "long", "bad_date", "nan", "float_huge", "unicode")


def sweep_pattern(pattern: Pattern, world: World) -> list[str]:
    failures: list[str] = []
    form_bodies = junk_forms(world, FORM_FIELDS + project_form_fields() + model_fields(pattern))
    queries = junk_queries(world)
    list_key = API_LISTS.get(pattern.key)
    json_bodies = junk_json(list_key)
    is_token_api = pattern.key in TOKEN_APIS
    is_api = is_token_api or pattern.route.startswith("api/")
    if pattern.admin_model is not None:
        form_bodies = {label: form for label, form in form_bodies.items() if label in ADMIN_JUNK}
        if pattern.admin_view != "changelist":
            queries = {label: query for label, query in queries.items() if label in ADMIN_JUNK}
    junkers = junk_roles(pattern)
    mutated: set[str] = set()
    entry = URLS.get(pattern.key)

    def ask(request: Request, guard: bool = False):
        response, body = send(request, world, failures if guard else None)
        failures.extend(failures_of(request, response, body))
        response.sweep_body = body
        return response

    for label, path in path_variants(world, pattern):
        mine = label in ("own", "other_site")
        # Every role asks for site A's and site B's objects; junk arguments are asked by those who pass
        # the access checks (and a technician, whose look-ups are scoped), once each.
        roles = ROLES if mine else junkers if pattern.admin_model else (*junkers, "technician")
        for role in roles:
            if role in ("gateway", "cmms") and not is_token_api:
                continue
            got = ask(Request(role, "GET", path))
            posted = ask(
                Request(role, "POST", path, form_bodies["missing"]), guard=mine and role in SITE_A_ROLES
            )
            if mine and entry is not None and entry.data is not None and role in SITE_A_ROLES:
                # the access matrix's well-formed body, for the object in the path (site B's: refused)
                data = entry.data(world, B if label == "other_site" else A)
                if entry.json:
                    ask(Request(role, "POST", path, orjson.dumps(data), "application/json"), guard=True)
                else:
                    ask(Request(role, "POST", path, data), guard=True)
            if is_api:
                ask(Request(role, "POST", path, b"{}", "application/json"))
            if not mine or role not in junkers + SITE_A_ROLES:
                continue
            if passes_checks(got) and label == "own":
                for query in queries.values():
                    ask(Request(role, "GET", f"{path}?{query}"))
            if passes_checks(got) and label == "own" and role == junkers[-1]:
                # htmx asks for the page's partial: another template, another code path
                ask(Request(role, "GET", path, htmx=True))
                for name in ("nul", "bad_date", "huge", "other_site"):
                    ask(Request(role, "GET", f"{path}?{queries[name]}", htmx=True))
            upload = b'type="file"' in got.sweep_body and "uploads" not in mutated
            if passes_checks(got) and label == "own" and role in junkers and upload:
                mutated.add("uploads")  # one role that passes the checks sends the uploads
                for name, content in junk_files(world).items():
                    files = {field: SimpleUploadedFile(f"{name}.csv", content) for field in FILE_FIELDS}
                    ask(Request(role, "POST", path, files), guard=role in SITE_A_ROLES)
            if passes_checks(posted) and label == "own" and pattern.key in VALID_BODIES:
                if pattern.key not in mutated:
                    mutated.add(pattern.key)  # one role that passes the checks sends them
                    for number, body in enumerate(mutations(VALID_BODIES[pattern.key])):
                        ask(Request(role, "POST", path, body, htmx=number % 2 == 1))  # every other by htmx
            if passes_checks(posted) and (label == "own" or role in SITE_A_ROLES):
                for name, form in form_bodies.items():
                    ask(
                        Request(role, "POST", path, form), guard=role in SITE_A_ROLES and name == "other_site"
                    )
                if label == "own" and is_api:
                    for raw in json_bodies.values():
                        ask(Request(role, "POST", path, raw, "application/json"))
                    if is_token_api:
                        for content_type in ("text/plain", "text/csv", "application/x-www-form-urlencoded"):
                            ask(Request(role, "POST", path, json_bodies["fields=string"], content_type))
        if is_token_api and label == "own":
            for token in BAD_TOKENS:
                ask(Request("anonymous", "GET", path, token=token))
                ask(Request("anonymous", "POST", path, b'{"a": 1}', "application/json", token=token))
    return failures


# readyz takes no input and answers 503 while no worker runs (as in this world), each after waiting for the
# broker: the access matrix asks it.
SWEPT = [
    p
    for p in PATTERNS
    if (p.admin_model is None or p.admin_view in ("changelist", "add", "change")) and p.key != "readyz"
]


@pytest.fixture(scope="module")
def tokens(world, django_db_blocker):
    """Site A's CMMS token for the work-order outcome API (inside the world's transaction, rolled back)."""
    with django_db_blocker.unblock():
        connection = world.obj("handoff.cmmsconnection", A)
        TOKENS["cmms"] = connection.rotate_inbound_token()
        connection.save(update_fields=["inbound_token_hash", "inbound_token_hint"])
    yield TOKENS
    TOKENS.clear()


@pytest.mark.parametrize("pattern", SWEPT, ids=[p.key for p in SWEPT])
def test_hostile_sweep(db, world, tokens, pattern):
    failures = sweep_pattern(pattern, world)
    assert not failures, f"{pattern.key}: {len(failures)} failing requests\n" + "\n".join(failures[:40])


def test_the_sweep_covers_every_pattern():
    """Every pattern is swept but the admin's per-object history, delete and redirect views (the access
    matrix asks those; they take no input beyond the object's id)."""
    swept = {p.key for p in SWEPT}
    assert {p.key for p in PATTERNS if p.admin_model is None} - {"readyz"} <= swept
    assert len(admin.site._registry) * 3 <= len([p for p in SWEPT if p.admin_model])
