"""The access matrix: every URL pattern Django resolves × every role, generated from one declarative table.

Walks ``get_resolver()`` recursively (app views, the API, the docs, login/logout and every admin view of
every registered model, including their unnamed redirects and the admin's catch-all), fills each pattern's
arguments from a world of two sites (tests/access_world.py) — once with site A's object and once with site
B's when the object belongs to a site — and asks it as each role. A pattern without an entry in ``URLS``
or ``ADMIN_MODELS`` fails ``test_every_url_pattern_has_an_entry``: a new URL needs a line here.

The answer of a request is reduced to an outcome:

* ``ok``: 2xx, or a redirect that is not to a login page and not the admin's "no such object" redirect;
* ``login``: a redirect to /accounts/login/ or /admin/login/;
* ``forbidden`` (403), ``hidden`` (404, or the admin's redirect to its index saying the object does not
  exist), ``unauthorized`` (401), ``invalid`` (400: the request passed every access check and was refused
  for its content). A 5xx is never expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from notify.services import ack_token
from plant.admin_scoping import ScopedChoicesMixin, SiteScopedAdmin
from tests.access_world import A, B, ROLES, World, build_world
from tests.conftest import T0

OK, LOGIN, FORBIDDEN, HIDDEN, UNAUTHORIZED, INVALID = (
    "ok",
    "login",
    "forbidden",
    "hidden",
    "unauthorized",
    "invalid",
)
ANONYMOUS = ("anonymous", "gateway")  # the gateway token is no session: human pages treat it as anonymous
TECHNICIANS = ("technician", "outsider")
STAFF = ("engineer", "engineer_both", "superuser")
SITES_OF = {"technician": {A}, "outsider": {B}, "engineer": {A}, "engineer_both": {A, B}}
MISSING_PK = "999999999"
SESSIONS: dict[str, str] = {}  # role -> session key, made by the `world` fixture

Policy = Callable[[str, str | None], str]


def sees(role: str, site: str | None) -> bool:
    return site is None or role == "superuser" or site in SITES_OF.get(role, set())


# --- policies: (role, site of the object or None) -> expected outcome -----------------------------------------


def public(role: str, site: str | None) -> str:
    return OK


def to_login(role: str, site: str | None) -> str:
    return LOGIN


def signed_in(role: str, site: str | None) -> str:
    """Any signed-in user (technician or engineer) on their own sites' objects."""
    if role in ANONYMOUS:
        return LOGIN
    return OK if sees(role, site) else HIDDEN


def engineer_page(role: str, site: str | None) -> str:
    """Engineers' pages: technicians 403, engineers on their own sites' objects."""
    if role in ANONYMOUS:
        return LOGIN
    if role in TECHNICIANS:
        return FORBIDDEN
    return OK if sees(role, site) else HIDDEN


def engineer_api(role: str, site: str | None) -> str:
    """Session JSON API for engineers: a 403 JSON answer (never a login redirect) to everyone else."""
    return OK if role in STAFF else FORBIDDEN


def gateway_api(role: str, site: str | None) -> str:
    return OK if role == "gateway" else UNAUTHORIZED


def version_move(role: str, site: str | None) -> str:
    """Promote / shadow / roll back: only an engineer of every site running the asset type (or a superuser)."""
    if role in ANONYMOUS:
        return LOGIN
    return OK if role in ("engineer_both", "superuser") else FORBIDDEN


def admin_site_view(role: str, site: str | None) -> str:
    """An admin page of the site itself (index, password change): staff only."""
    return OK if role in STAFF else LOGIN


def admin_not_found(role: str, site: str | None) -> str:
    return HIDDEN if role in STAFF else LOGIN


# --- the table of app and admin-site URLs -----------------------------------------------------------------


@dataclass(frozen=True)
class Url:
    policy: Policy
    method: str = "GET"
    obj: str | None = None  # the world object whose pk fills the pattern (one case per site it exists on)
    kwargs: Callable[[World, str | None], dict] | None = None  # or the pattern's kwargs, built per site
    sites: tuple[str | None, ...] = (None,)
    path: Callable[[World, str | None], str] | None = None  # for unnamed patterns
    query: str = ""
    data: Callable[[World, str | None], dict] | None = None
    json: bool = False
    ok: str = OK  # what an allowed role gets (e.g. `invalid` for a form posted empty on purpose)


def readings(world: World, site: str | None) -> dict:
    return {"readings": [{"sensor": world.obj("plant.sensor", A).key, "ts": T0.isoformat(), "value": 1.5}]}


def noise_key(world: World, site: str | None) -> dict:
    alert = world.obj("alerts.alert", site)
    return {"key": f"{alert.asset_id}-{alert.model_version_id}-{alert.dominant_role}"}


def pk_of(label: str) -> Callable[[World, str | None], dict]:
    return lambda world, site: {"pk": world.obj(label, site).pk}


def reason(world: World, site: str | None) -> dict:
    return {"reason": "access matrix"}


PER_SITE = (A, B)

URLS: dict[str, Url] = {
    # authentication and documentation
    "login": Url(public),
    "logout": Url(to_login, "POST"),  # everyone ends on the login page
    "api-docs": Url(public),
    "favicon": Url(public),  # a redirect to the static icon
    "api:openapi": Url(public),
    # Operations endpoints: open to a load balancer; this world has no worker, so never ready.
    "healthz": Url(public),
    "readyz": Url(lambda role, site: "HTTP 503"),
    # Prometheus metrics: off (404) unless VIGIL_METRICS_TOKEN / _ALLOWED_NETWORKS are set; no session
    # opens them, whatever the role (the token and network checks: tests/test_metrics_endpoint.py).
    "metrics": Url(lambda role, site: HIDDEN),
    # gateway API
    "api:readings": Url(gateway_api, "POST", data=readings, json=True),
    "api:edge_events": Url(gateway_api, "POST", data=lambda w, s: {"events": []}, json=True),
    "api:edge_heartbeat": Url(gateway_api, "POST", data=lambda w, s: {"drops": []}, json=True),
    "api:edge_assignments": Url(gateway_api),
    # No assignment in this world: the gateway is told there is none (site scoping: tests/alerts/test_edge_rollout.py).
    "api:edge_bundle": Url(gateway_api, kwargs=lambda w, s: {"pk": int(MISSING_PK)}, ok=HIDDEN),
    "api:edge_shadow_reports": Url(gateway_api, "POST", data=lambda w, s: {"reports": []}, json=True),
    "api:edge_outcomes": Url(gateway_api, "POST", data=lambda w, s: {"outcomes": []}, json=True),
    # A CMMS's work-order outcome: its site's CMMS token only (none in this world; tests/handoff checks it)
    "api:work_order_outcome": Url(
        lambda role, site: UNAUTHORIZED,
        "POST",
        obj="handoff.workorder",
        data=lambda w, s: {"outcome": "done"},
        json=True,
    ),
    # metrics API (session)
    "api:metrics": Url(engineer_api),
    "api:metrics_csv": Url(engineer_api),
    # plant pages
    "plant:home": Url(signed_in),
    "plant:site": Url(signed_in, kwargs=lambda w, s: {"slug": w.sites[s].slug}, sites=PER_SITE),
    "plant:asset": Url(signed_in, obj="plant.asset"),
    "plant:asset_chart": Url(signed_in, obj="plant.asset"),
    "alerts:asset_missed_failure": Url(signed_in, "POST", obj="plant.asset", ok=INVALID),
    "alerts:asset_past_alerts": Url(signed_in, obj="plant.asset"),
    # alerts pages
    "alerts:board": Url(signed_in),
    "alerts:board_list": Url(signed_in),
    "alerts:detail": Url(signed_in, obj="alerts.alert"),
    "alerts:feedback": Url(
        signed_in, "POST", obj="alerts.alert", data=lambda w, s: {"action": "acknowledge"}
    ),
    # Undoing a verdict the alert does not have: the alert is looked up first (404 off-site), then a 400.
    "alerts:undo": Url(
        signed_in,
        "POST",
        kwargs=lambda w, s: {"pk": w.obj("alerts.alert", s).pk, "feedback_id": 999_999},
        sites=PER_SITE,
        ok=INVALID,
    ),
    # The alert already has a work order open: a member is sent back to the alert page with the message.
    "handoff:create_work_order": Url(signed_in, "POST", obj="alerts.alert"),
    # The demo's stand-in CMMS (demo.cmms_inbox): members of the demo site only (none in this world); the
    # orders endpoint takes the demo CMMS's credential only.
    "demo:cmms_inbox": Url(lambda role, site: LOGIN if role in ANONYMOUS else HIDDEN),
    "demo:cmms_report": Url(
        lambda role, site: LOGIN if role in ANONYMOUS else HIDDEN,
        "POST",
        kwargs=lambda w, s: {"number": 1},
        data=lambda w, s: {"outcome": "done"},
    ),
    "demo:cmms_orders": Url(lambda role, site: UNAUTHORIZED, "POST", data=lambda w, s: {}, json=True),
    "alerts:health": Url(engineer_page),
    "alerts:health_alerts": Url(engineer_page, query="?period=2026-01"),
    "alerts:health_kpis": Url(engineer_page),
    "alerts:export": Url(engineer_page),
    "alerts:noise": Url(engineer_page),
    "alerts:noise_apply": Url(
        engineer_page, "POST", kwargs=noise_key, sites=PER_SITE, data=lambda w, s: {"what": "calibration"}
    ),
    "alerts:noise_undo_threshold": Url(engineer_page, "POST", obj="alerts.thresholdoverride"),
    "alerts:noise_calibrated": Url(engineer_page, "POST", obj="plant.sensor"),
    # model registry pages
    "models_registry:index": Url(engineer_page),
    "models_registry:edge": Url(engineer_page),
    "models_registry:edge_assign": Url(engineer_page, "POST", ok=INVALID),  # posted empty: a form error
    # No assignment in this world: an engineer is told there is none (site scoping: tests/alerts/test_edge_page.py).
    "models_registry:edge_decide": Url(
        engineer_page, "POST", kwargs=lambda w, s: {"pk": int(MISSING_PK)}, ok=HIDDEN
    ),
    "models_registry:retrain": Url(engineer_page, "POST", ok=INVALID),  # posted empty: a form error
    "models_registry:run": Url(engineer_page, obj="models_registry.retrainrun"),
    # posted empty: a form error (400) for an engineer of the asset's site
    "models_registry:asset_recalibrate": Url(engineer_page, "POST", obj="plant.asset", ok=INVALID),
    "models_registry:compare": Url(engineer_page, obj="models_registry.modelversion"),
    "models_registry:shadow": Url(version_move, "POST", obj="models_registry.modelversion", data=reason),
    "models_registry:promote": Url(version_move, "POST", obj="models_registry.modelversion", data=reason),
    "models_registry:rollback": Url(version_move, "POST", obj="models_registry.modelversion", data=reason),
    # notifications: the signed acknowledge link's confirm page (a fresh token per request)
    "notify:ack": Url(
        signed_in, kwargs=lambda w, s: {"token": ack_token(w.obj("alerts.alert", s))}, sites=PER_SITE
    ),
    # the inbox page lists the messages of the user's own sites (tests/notify/test_admin_and_health.py)
    "notify:inbox": Url(signed_in),
    # the admin site's own views
    "admin:index": Url(admin_site_view),
    "admin:login": Url(public),  # staff are sent on to the index
    # staff are logged out and sent to the login page; anyone else is sent to the admin index
    "admin:logout": Url(lambda role, site: LOGIN if role in STAFF else OK, "POST"),
    "admin:password_change": Url(admin_site_view),
    "admin:password_change_done": Url(admin_site_view),
    "admin:jsi18n": Url(admin_site_view),
    "admin:app_list": Url(admin_site_view, kwargs=lambda w, s: {"app_label": "alerts"}),
    # Django answers a lookup for any foreign key whose target admin has search fields, from that admin's
    # (scoped) queryset; tests/alerts/test_admin.py checks which assets it lists
    "admin:autocomplete": Url(
        admin_site_view, query="?app_label=alerts&model_name=maintenancewindow&field_name=asset"
    ),
    # "view on site" redirects only to objects the user's admin shows (plant.admin_scoping.ScopedAdminSite)
    "admin:view_on_site": Url(
        lambda role, site: LOGIN if role not in STAFF else OK if sees(role, site) else HIDDEN,
        kwargs=lambda w, s: {
            "content_type_id": ContentType.objects.get_for_model(w.sites[s]).pk,
            "object_id": w.sites[s].pk,
        },
        sites=PER_SITE,
    ),
    "admin/(?P<url>.*)$": Url(admin_not_found, path=lambda w, s: "/admin/nowhere/"),
    # custom admin views
    "admin:auth_user_password_change": Url(
        lambda role, site: LOGIN if role not in STAFF else OK if role == "superuser" else FORBIDDEN,
        kwargs=lambda w, s: {"id": w.obj("auth.user").pk},
    ),
    # a connection's point mappings as CSV (export) and their import form: staff of the connection's site
    "admin:plant_connection_mappings_export": Url(
        lambda role, site: LOGIN if role not in STAFF else OK if sees(role, site) else HIDDEN,
        obj="plant.connection",
    ),
    "admin:plant_connection_mappings_import": Url(
        lambda role, site: LOGIN if role not in STAFF else OK if sees(role, site) else HIDDEN,
        obj="plant.connection",
    ),
    "admin:models_registry_modelversion_download": Url(
        lambda role, site: OK if role in STAFF else LOGIN,
        kwargs=lambda w, s: {"object_id": w.obj("models_registry.modelversion").pk},
    ),
}


# --- the table of admin models --------------------------------------------------------------------------


@dataclass(frozen=True)
class Admin:
    """What an admin model lets a permitted user do; rows of a site-scoped model follow the user's sites."""

    scoped: bool
    add: bool = True
    delete: bool = True
    who: str = "engineer"  # or "superuser": engineers hold no permission on the model


SUPERUSER_ONLY = Admin(scoped=False, who="superuser")

ADMIN_MODELS: dict[str, Admin] = {
    "auth.user": SUPERUSER_ONLY,
    "auth.group": SUPERUSER_ONLY,
    "plant.site": Admin(scoped=True),
    "plant.assettype": Admin(scoped=False),
    "plant.asset": Admin(scoped=True),
    "plant.sensor": Admin(scoped=True),
    "plant.gateway": Admin(scoped=True),
    "plant.label": Admin(scoped=True),
    "plant.reading": Admin(scoped=True, add=False, delete=False),
    "plant.connection": Admin(scoped=True),
    "plant.pointmapping": Admin(scoped=True),
    "alerts.alert": Admin(scoped=True, add=False),
    "alerts.maintenancewindow": Admin(scoped=True),
    "alerts.score": Admin(scoped=True, add=False),
    "alerts.thresholdoverride": Admin(scoped=True, add=False),
    "alerts.noiseaction": Admin(scoped=True, add=False),
    "handoff.webhookendpoint": Admin(scoped=True),
    "handoff.webhookdelivery": Admin(scoped=True, add=False),
    "handoff.cmmsconnection": Admin(scoped=True),
    "handoff.workorder": Admin(scoped=True, add=False),
    "models_registry.modelversion": Admin(scoped=False, delete=False),
    "models_registry.modelincident": Admin(scoped=False, add=False, delete=False),
    "models_registry.retrainrun": Admin(scoped=False, add=False),
    "models_registry.assetbaseline": Admin(scoped=True, delete=False),
    "notify.channel": Admin(scoped=True),
    "notify.rule": Admin(scoped=True),
    "notify.shift": Admin(scoped=True),
    "notify.quiethours": Admin(scoped=True),
    "notify.notification": Admin(scoped=True, add=False),
    # django-axes (login throttling): lockouts are a superuser's business; rows are written by axes only
    "axes.accessattempt": Admin(scoped=False, add=False, who="superuser"),
    "axes.accesslog": Admin(scoped=False, add=False, who="superuser"),
    "axes.accessfailurelog": Admin(scoped=False, add=False, who="superuser"),
}
ADMIN_VIEWS = ("changelist", "add", "history", "delete", "change", "redirect")
OBJECT_VIEWS = ("history", "delete", "change", "redirect")


def admin_policy(entry: Admin, view: str, has_object: bool) -> Policy:
    def policy(role: str, site: str | None) -> str:
        if role not in STAFF:
            return LOGIN
        if view == "redirect":
            return OK  # a plain redirect to the change page, which decides
        if role != "superuser" and entry.who != "engineer":
            return FORBIDDEN
        if (view == "add" and not entry.add) or (view == "delete" and not entry.delete):
            return FORBIDDEN
        if view in OBJECT_VIEWS and (not has_object or not sees(role, site)):
            return HIDDEN
        return OK

    return policy


# --- the URL patterns Django resolves -------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    key: str  # "namespace:name", or the full route of an unnamed pattern
    route: str
    name: str | None
    admin_model: str | None = None  # "app_label.model_name" for the views of a registered model's admin
    admin_view: str | None = None


def url_patterns() -> list[Pattern]:
    registered = {
        f"{m._meta.app_label}/{m._meta.model_name}/": m._meta.label_lower for m in admin.site._registry
    }
    found: list[Pattern] = []

    def walk(resolver: URLResolver, prefix: str, namespace: str) -> None:
        for item in resolver.url_patterns:
            if isinstance(item, URLResolver):
                ns = f"{namespace}{item.namespace}:" if item.namespace else namespace
                walk(item, prefix + str(item.pattern), ns)
                continue
            assert isinstance(item, URLPattern)
            route = prefix + str(item.pattern)
            name = f"{namespace}{item.name}" if item.name else None
            model = view = None
            if route.startswith("admin/") and route[len("admin/") :].count("/") >= 2:
                model = registered.get("/".join(route[len("admin/") :].split("/")[:2]) + "/")
            if model is not None:
                standard = re.fullmatch(
                    rf"admin:{model.replace('.', '_')}_({'|'.join(ADMIN_VIEWS)})", name or ""
                )
                if standard:
                    view = standard.group(1)
                elif name is None and route.endswith("<path:object_id>/"):
                    view = "redirect"
                else:
                    model = None  # a custom admin view: an entry of URLS
            found.append(Pattern(name or route, route, name, model, view))

    walk(get_resolver(), "", "")
    return found


PATTERNS = url_patterns()


def entry_of(pattern: Pattern) -> Url | None:
    if pattern.admin_model is not None:
        entry = ADMIN_MODELS.get(pattern.admin_model)
        if entry is None:
            return None
        return Url(
            admin_policy(entry, pattern.admin_view, True),
            obj=pattern.admin_model if pattern.admin_view in OBJECT_VIEWS else None,
            sites=PER_SITE if entry.scoped and pattern.admin_view in OBJECT_VIEWS else (None,),
        )
    return URLS.get(pattern.key)


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a pattern with its arguments filled for one site's object; asked of every role."""

    pattern: Pattern
    url: Url
    site: str | None

    @property
    def id(self) -> str:
        return f"{self.pattern.key}[{self.site or '-'}]"


def cases() -> list[Case]:
    generated = []
    for pattern in PATTERNS:
        url = entry_of(pattern)
        if url is None:
            continue  # test_every_url_pattern_has_an_entry fails
        sites = PER_SITE if url.obj in SCOPED_OBJECTS else url.sites
        generated.extend(Case(pattern, url, site) for site in sites)
    return generated


# Models whose world objects exist once per site (the others are shared by every site).
SCOPED_OBJECTS = {label for label, entry in ADMIN_MODELS.items() if entry.scoped}
CASES = cases()


# --- running a case -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    """One world for the module, inside a transaction rolled back at the end; each case runs in its own
    savepoint (pytest-django's `db`), so a POST that changes something changes it for that case only."""
    settings = override_settings(
        MEDIA_ROOT=tmp_path_factory.mktemp("media"),
        VIGIL_NOISE_DISMISSALS=1,
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    )
    with django_db_blocker.unblock(), settings, transaction.atomic():
        world = build_world()
        # One session per role, made before any case runs so no case's savepoint rolls it back.
        for role, user in world.users.items():
            if user is not None:
                client = Client()
                client.force_login(user)
                SESSIONS[role] = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        yield world
        transaction.set_rollback(True)
        SESSIONS.clear()


def request_path(case: Case, world: World) -> str:
    url, pattern = case.url, case.pattern
    if url.path is not None:
        return url.path(world, case.site)
    if pattern.admin_model is not None and pattern.admin_view in OBJECT_VIEWS:
        label = pattern.admin_model
        obj_pk = world.objects[label][case.site].pk if label in world.objects else MISSING_PK
        if pattern.admin_view == "redirect":
            return f"/{pattern.route.replace('<path:object_id>/', f'{obj_pk}/')}"
        return reverse(pattern.name, kwargs={"object_id": obj_pk})
    if url.kwargs is not None:
        kwargs = url.kwargs(world, case.site)
    elif url.obj is not None:
        kwargs = pk_of(url.obj)(world, case.site)
    else:
        kwargs = {}
    return reverse(pattern.name, kwargs=kwargs)


def outcome(response) -> str:
    status = response.status_code
    if status in (301, 302, 303):
        path = urlsplit(response["Location"]).path
        if path in (reverse("login"), reverse("admin:login")):
            return LOGIN
        missing = any("exist" in str(m) for m in get_messages(response.wsgi_request))
        if path == reverse("admin:index") and missing:
            return HIDDEN
        return OK
    if 200 <= status < 300:
        return OK
    return {400: INVALID, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: HIDDEN}.get(status, f"HTTP {status}")


def ask(case: Case, role: str, world: World):
    client = Client()
    if role == "gateway":
        client = Client(headers={"Authorization": f"Bearer {world.token}"})
    elif role in SESSIONS:
        client.cookies[django_settings.SESSION_COOKIE_NAME] = SESSIONS[role]
    path = request_path(case, world) + case.url.query
    data = case.url.data(world, case.site) if case.url.data else {}
    if case.url.method == "GET":
        response = client.get(path)
    elif case.url.json:
        response = client.post(path, orjson.dumps(data), content_type="application/json")
    else:
        response = client.post(path, data)
    if response.streaming:
        b"".join(response.streaming_content)  # a streamed body fails while it is read, not before
    return response


def expected_outcome(case: Case, role: str, world: World) -> str:
    expected = case.url.policy(role, case.site)
    if expected == OK:
        expected = case.url.ok
    view = case.pattern.admin_view
    if case.pattern.admin_model not in world.objects and view in ("history", "delete", "change"):
        # A model the world has no row of (one another app registers) is asked with a missing pk: the
        # admin says "no such object" to whoever passes its checks, and the history page says so first.
        if expected == OK or (view == "history" and role in STAFF):
            expected = HIDDEN
    return expected


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_access(db, world, case):
    wrong = []
    for role in ROLES:
        expected = expected_outcome(case, role, world)
        with transaction.atomic():  # what one role's POST changes, the next role does not see
            response = ask(case, role, world)
            transaction.set_rollback(True)
        got = outcome(response)
        if got != expected:
            wrong.append(
                f"{role}: expected {expected}, got {got} (HTTP {response.status_code} {response.get('Location', '')})"
            )
    assert not wrong, f"{case.id}\n" + "\n".join(wrong)


# --- the table is complete and the admins are scoped ----------------------------------------------------


def test_every_url_pattern_has_an_entry():
    missing = [p.key for p in PATTERNS if entry_of(p) is None]
    assert not missing, (
        "URL patterns without an access-matrix entry (add them to URLS or ADMIN_MODELS in "
        f"tests/test_access_matrix.py): {missing}"
    )


def test_no_entry_names_a_url_that_does_not_exist():
    keys = {p.key for p in PATTERNS}
    models = {p.admin_model for p in PATTERNS if p.admin_model}
    # An entry of an app that is not installed is inert (it is declared ahead of the app landing).
    app_labels = {config.label for config in apps.get_app_configs()}
    installed = {label for label in ADMIN_MODELS if label.split(".")[0] in app_labels}
    assert not set(URLS) - keys and not installed - models


def test_every_admin_of_the_domain_apps_is_site_scoped():
    """A new admin of the project's apps (plant, alerts, the registry, notifications, hand-off) must say how
    its model reaches a site (or None)."""
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ("plant", "alerts", "models_registry", "notify", "handoff"):
            continue
        assert isinstance(model_admin, SiteScopedAdmin), model
        assert (model_admin.site_path is not None) == ADMIN_MODELS[model._meta.label_lower].scoped, model
        for inline in model_admin.inlines:
            assert issubclass(inline, ScopedChoicesMixin), inline


def test_the_matrix_size(capsys):
    asked = len(CASES) * len(ROLES)
    with capsys.disabled():
        print(
            f"\naccess matrix: {len(PATTERNS)} URL patterns, {len(CASES)} with their site variants, × {len(ROLES)} roles = {asked} requests"
        )
    assert len(CASES) >= len(PATTERNS)
