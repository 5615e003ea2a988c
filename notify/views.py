"""The signed acknowledge link (a confirm page, then a POST that acknowledges) and the built-in inbox."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import F
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from alerts.choices import AlertState
from alerts.models import TRANSITIONS, Alert
from alerts.services import FeedbackError, alerts_for_user
from alerts.writeback import alert_words
from notify.models import InboxMessage, Notification
from notify.services import AckLinkError, acknowledge_by_link, read_ack
from plant.access import get_or_404, is_engineer, sites_for_user

INBOX_SHOWN = 200


@require_http_methods(["GET", "POST"])
@login_required
def ack(request: HttpRequest, token: str) -> HttpResponse:
    """GET: what the link acknowledges and a button (a mail scanner that follows links acknowledges
    nothing); POST: acknowledge as the signed-in user, once. The alert must be on one of the user's sites
    (404 otherwise); an expired, used or forged link gets a 400 page that says which."""
    try:
        token_row = read_ack(token)
    except AckLinkError as exc:
        return render(request, "notify/ack.html", {"error": str(exc)}, status=400)
    alerts = alerts_for_user(request.user).select_related("asset__site", "asset__asset_type")
    alert = get_or_404(alerts, "alert", pk=token_row.alert_id)
    if request.method == "GET" and AlertState.ACKNOWLEDGED not in TRANSITIONS[alert.state]:
        # Answered or closed since the message went out: say so and by whom, rather than offer a button
        # that can only fail (the link stays unused).
        last = (
            alert.events.exclude(from_state=F("to_state"))
            .select_related("actor")
            .order_by("-at", "-pk")
            .first()
        )
        return render(request, "notify/ack.html", {"alert": alert, "nothing_to_do": True, "answered": last})
    if request.method == "POST":
        try:
            acknowledge_by_link(token, request.user)
        except (AckLinkError, FeedbackError) as exc:
            return render(request, "notify/ack.html", {"error": str(exc), "alert": alert}, status=400)
        messages.success(request, f"Alert #{alert.pk} acknowledged.")
        return redirect("alerts:detail", pk=alert.pk)
    return render(request, "notify/ack.html", {"alert": alert, "words": alert_words(alert)})


@require_GET
@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    """The messages delivered to the inboxes (vigil://<site slug>/<box>) of the user's sites, newest first:
    for everyone they are addressed to (the technicians' and the supervisor's boxes), as the board of the
    same sites is; each names its site and is timed on that site's clock."""
    sites = {site.slug: site for site in sites_for_user(request.user).only("slug", "name", "timezone")}
    shown = list(InboxMessage.objects.filter(inbox__in=list(sites))[:INBOX_SHOWN])
    for message in shown:
        message.site_name = sites[message.inbox].name
        message.site_zone = sites[message.inbox].zone  # its time on the clock of the site it was sent to
    return render(request, "notify/inbox.html", {"inbox": shown, "limit": INBOX_SHOWN})


def alert_section(request: HttpRequest, alert: Alert) -> str:
    """The alert page's delivery log (engineers: the reasons name mail servers and hosts), with a link to
    the console's log of the alert; nothing for others or when no message was written."""
    if not is_engineer(request.user):
        return ""
    messages_of = list(
        Notification.objects.filter(alert=alert).select_related("channel").order_by("created_at", "pk")
    )
    if not messages_of:
        return ""
    log_url = reverse("admin:notify_notification_changelist") + f"?q={alert.pk}"
    return render_to_string(
        "notify/_alert_log.html", {"notifications": messages_of, "log_url": log_url, "site": alert.asset.site}
    )
