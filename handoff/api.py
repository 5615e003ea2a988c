"""The CMMS's outcome webhook: ``POST /api/v1/work-orders/<id>/outcome`` with the site's CMMS token
(``Authorization: Bearer vwo_…``, issued in the console) and ``{"outcome": "done" | "no_fault_found" |
"cancelled", "findings": "…"}``. Every refusal is a 4xx JSON ``{"error": …}`` naming the problem."""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from handoff.cmms import Outcome
from handoff.models import CmmsConnection, WorkOrder
from handoff.work_orders import WorkOrderConflict, WorkOrderError, apply_outcome, parse_outcome
from plant.api import api_error, api_json, bearer_token
from plant.models import hash_token

MAX_BODY_BYTES = 64 * 1024
REALM = "vigil-cmms"


def _connection(request: HttpRequest) -> CmmsConnection | HttpResponse:
    token = bearer_token(request, "site CMMS token", realm=REALM)
    if isinstance(token, HttpResponse):
        return token
    connection = CmmsConnection.objects.filter(inbound_token_hash=hash_token(token)).first()
    if connection is None:
        return api_error(
            "invalid CMMS token: no site's CMMS connection has it",
            401,
            {"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    return connection


def work_order_json(order: WorkOrder) -> dict:
    return {
        "id": order.pk,
        "alert": order.alert_id,
        "status": order.status,
        "outcome": order.outcome or None,
        "external_id": order.external_id or None,
        "corrected": order.corrected or None,
        "verdict": order.feedback.verdict if order.feedback else None,
    }


@csrf_exempt
def work_order_outcome(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method != "POST":
        return api_error(f"method {request.method} not allowed: use POST", 405, {"Allow": "POST"})
    connection = _connection(request)
    if isinstance(connection, HttpResponse):
        return connection
    order = WorkOrder.objects.filter(pk=pk, connection__site_id=connection.site_id).first()
    if order is None:
        return api_error(f"no work order #{pk} on the site of this CMMS token", 404)
    if len(request.body) > MAX_BODY_BYTES:
        return api_error(f"body too large: at most {MAX_BODY_BYTES} bytes", 413)
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        return api_error(f"body is not valid JSON: {exc}", 400)
    if not isinstance(body, dict):
        return api_error('body must be a JSON object: {"outcome": …, "findings": …}', 400)
    findings = body.get("findings", "")
    if findings is None:
        findings = ""
    if not isinstance(findings, str):
        return api_error("findings must be a string", 400)
    try:
        outcome = parse_outcome(body.get("outcome"))
        order = apply_outcome(order, Outcome(outcome, findings), source="webhook")
    except WorkOrderConflict as exc:
        return api_error(str(exc), 409)
    except WorkOrderError as exc:
        return api_error(str(exc), 400)
    return api_json(work_order_json(order))
