"""The alert page's "Create work order" button (any member of the alert's site)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect
from django.views.decorators.http import require_POST

from alerts.services import alerts_for_user
from handoff.work_orders import WorkOrderError, create_work_order
from plant.access import get_or_404


@require_POST
@login_required
def create_work_order_view(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_or_404(alerts_for_user(request.user).select_related("asset__site"), "alert", pk=pk)
    try:
        order = create_work_order(alert, user=request.user)
    except WorkOrderError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Work order #{order.pk} is being sent to the site's CMMS.")
    detail = reverse("alerts:detail", args=[alert.pk])
    # From a board card pushed live (htmx: its CSRF token comes from the page's header, not the form), the
    # browser is sent to the alert page the way a plain form post is redirected.
    return HttpResponseClientRedirect(detail) if request.htmx else redirect(detail)
