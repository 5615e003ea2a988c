"""The demo's CMMS: a stand-in for a plant's maintenance system that speaks the generic contract
(docs/cmms-generic.md), so the demo closes the work-order loop without an external system.

``seed_demo_cmms`` points the demo site's CMMS connection at ``/demo/cmms/orders`` with automatic work
orders on a confirmed fault, and keeps the credential and the outcome token in VAR_DIR/demo/cmms-inbox.json
(a demo file, mode 0600). Vigil's outbound worker POSTs work orders there over HTTP; the inbox page
(``/demo/cmms/``) lists them and its buttons report the outcome as the outcome webhook records it.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from demo.seed import DEMO_SITE
from handoff.choices import WorkOrderOutcome
from handoff.cmms import Outcome, priority_words
from handoff.models import CmmsConnection, WorkOrder
from handoff.work_orders import WorkOrderError, apply_outcome, parse_outcome
from plant.access import site_ids_for_user
from plant.connections.secrets import encrypt
from plant.models import Site


def inbox_path() -> Path:
    return Path(settings.VAR_DIR) / "demo" / "cmms-inbox.json"


@contextmanager
def _inbox() -> Iterator[dict[str, Any]]:
    """The inbox file, locked for the block (web workers and the seed share it); written back after."""
    path = inbox_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        raw = handle.read()
        data = json.loads(raw) if raw.strip() else {"orders": []}
        yield data
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(data, indent=1))


def seed_demo_cmms(public_url: str) -> CmmsConnection | None:
    """The demo site's CMMS connection to this inbox (automatic work orders), with a fresh credential kept
    in the inbox file; None without the demo site."""
    site = Site.objects.filter(slug=DEMO_SITE[0]).first()
    if site is None:
        return None
    credential = secrets.token_urlsafe(24)
    connection, _ = CmmsConnection.objects.update_or_create(
        site=site,
        defaults={
            "kind": "generic",
            "url": public_url.rstrip("/") + "/demo/cmms/orders",
            "auto_create": True,
        },
    )
    connection.credential_encrypted = encrypt(credential)
    connection.enabled = True
    connection.save()
    with _inbox() as inbox:
        inbox["credential"] = credential
    return connection


@csrf_exempt
@require_POST
def orders(request: HttpRequest) -> HttpResponse:
    """The CMMS side of docs/cmms-generic.md §1: store the order, answer its id."""
    if not inbox_path().exists():
        return JsonResponse({"error": "the demo CMMS is not set up (the demo command seeds it)"}, status=401)
    with _inbox() as inbox:
        expected = inbox.get("credential")
        if not expected or request.headers.get("Authorization") != f"Bearer {expected}":
            return JsonResponse({"error": "invalid credential"}, status=401)
        try:
            order = json.loads(request.body)["work_order"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested ~1000 deep
            return JsonResponse({"error": 'expected {"work_order": {...}}'}, status=400)
        # The outcome buttons find Vigil's work order by this id (report()): anything else fails there.
        if not isinstance(order, dict) or type(order.get("id")) is not int:
            return JsonResponse({"error": 'expected {"work_order": {"id": <integer>, ...}}'}, status=400)
        number = len(inbox["orders"]) + 1
        inbox["orders"].append(
            {"number": number, "received_at": timezone.now().isoformat(), "order": order, "reported": None}
        )
    return JsonResponse({"id": f"DEMO-{number}"}, status=201)


def _demo_member(request: HttpRequest) -> Site:
    site = Site.objects.filter(slug=DEMO_SITE[0]).first()
    if site is None or site.pk not in site_ids_for_user(request.user):
        raise Http404("the demo CMMS belongs to the demo site")
    return site


@require_GET
@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    site = _demo_member(request)
    with _inbox() as data:
        received = list(reversed(data["orders"]))
    for entry in received:
        entry["received"] = datetime.fromisoformat(entry["received_at"])  # stored as ISO text, in UTC
        order = entry.get("order")  # an object since this inbox refuses others; an older one stored any value
        entry["priority_text"] = priority_words(order.get("priority") if isinstance(order, dict) else None)
        entry["alert_link"] = _web_link(order.get("alert") if isinstance(order, dict) else None)
    context = {"orders": received, "outcomes": WorkOrderOutcome.choices, "site": site}
    return render(request, "demo/cmms_inbox.html", context)


def _web_link(alert: Any) -> str:
    """The order's link to its Vigil alert if it is a web address (http, https or a path on this server),
    else "": a poster of the credential could send ``javascript:…``, which the page must not make a link."""
    link = alert.get("link") if isinstance(alert, dict) else None
    if not isinstance(link, str):
        return ""
    scheme = urlsplit(link).scheme.lower()
    return link if scheme in ("http", "https") or (not scheme and link.startswith("/")) else ""


@require_POST
@login_required
def report(request: HttpRequest, number: int) -> HttpResponse:
    """A button of the inbox: the outcome the demo CMMS reports, through the outcome webhook's own service
    (handoff.work_orders.apply_outcome; an HTTP call back into a one-thread demo server would wait on
    itself)."""
    _demo_member(request)
    with _inbox() as data:
        entry = next((o for o in data["orders"] if o["number"] == number), None)
    if entry is None:
        raise Http404(f"no order DEMO-{number} in the demo CMMS")
    # An object with an integer id since the inbox refuses others (orders()); an older inbox stored any value.
    order_id = entry["order"].get("id") if isinstance(entry.get("order"), dict) else None
    if type(order_id) is not int:
        raise Http404(f"DEMO-{number} names no Vigil work order")
    order = WorkOrder.objects.filter(pk=order_id, alert__asset__site__slug=DEMO_SITE[0]).first()
    if order is None:
        raise Http404(f"Vigil has no work order #{order_id} on the demo site")
    try:
        outcome = parse_outcome(request.POST.get("outcome"))
        apply_outcome(order, Outcome(outcome, request.POST.get("findings", "")), source="webhook")
    except WorkOrderError as exc:
        messages.error(request, f"DEMO-{number}: Vigil refused the outcome: {exc}")
        return redirect("demo:cmms_inbox")
    with _inbox() as data:
        for stored in data["orders"]:
            if stored["number"] == number:
                stored["reported"] = outcome.label
    messages.success(request, f"DEMO-{number}: reported “{outcome.label}” to Vigil (work order #{order.pk}).")
    return redirect("demo:cmms_inbox")
