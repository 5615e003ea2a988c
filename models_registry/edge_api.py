"""The edge agent's model-update endpoints (gateway token; models_registry.edge_rollout does the work):

- GET  /api/v1/edge/assignments      what each asset's agent should run (sha256, signature, stage)
- GET  /api/v1/edge/bundles/<id>      the assigned bundle's bytes (only to a gateway of the asset's site)
- POST /api/v1/edge/shadow-reports   {"reports": [...]}: shadow trials; may approve by policy
- POST /api/v1/edge/outcomes         {"outcomes": [...]}: active / refused / rolled_back with the reason
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from models_registry.edge_rollout import agent_assignments, record_outcomes, record_shadow_reports
from models_registry.models import EdgeAssignment
from plant.api import api_error, api_json, authenticate, gateway_json
from plant.edge_agents import EdgeReportError


def _get_gateway(request: HttpRequest):
    if request.method != "GET":
        return api_error(f"method {request.method} not allowed: use GET", 405, {"Allow": "GET"})
    return authenticate(request)


def assignments(request: HttpRequest) -> HttpResponse:
    gateway = _get_gateway(request)
    if isinstance(gateway, HttpResponse):
        return gateway
    return api_json({"assignments": agent_assignments(gateway)})


def bundle(request: HttpRequest, pk: int) -> HttpResponse:
    gateway = _get_gateway(request)
    if isinstance(gateway, HttpResponse):
        return gateway
    row = (
        EdgeAssignment.objects.filter(pk=pk, asset__site=gateway.site).only("bundle", "bundle_sha256").first()
    )
    if row is None:
        return api_error(f"no assignment {pk} for this gateway's site", 404)
    response = HttpResponse(bytes(row.bundle), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{row.bundle_sha256[:16]}.zip"'
    return response


def _posted(request: HttpRequest, key: str, record) -> HttpResponse:
    checked = gateway_json(request, key)
    if isinstance(checked, HttpResponse):
        return checked
    gateway, payload = checked
    try:
        return api_json({"results": record(gateway, payload[key])})
    except EdgeReportError as exc:
        return api_error(f"{key}{exc}" if str(exc).startswith("[") else str(exc), 400)


@csrf_exempt
def shadow_reports(request: HttpRequest) -> HttpResponse:
    return _posted(request, "reports", record_shadow_reports)


@csrf_exempt
def outcomes(request: HttpRequest) -> HttpResponse:
    return _posted(request, "outcomes", record_outcomes)
