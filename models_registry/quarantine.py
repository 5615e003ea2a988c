"""A version's quarantine: taken out of scoring after a run-time failure (with a ModelIncident saying why),
put back by an engineer once its artifact validates again. The scorer (alerts.scoring) quarantines; the
registry's admin and views clear."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from models_registry.models import ModelIncident, ModelVersion
from models_registry.validation import validate_version

logger = logging.getLogger(__name__)


def quarantine(version: ModelVersion, kind: str, message: str) -> bool:
    """Take a failing version out of scoring and record why; False if it was already quarantined."""
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk, quarantined_at__isnull=True).update(
            quarantined_at=timezone.now()
        )
        if changed:
            ModelIncident.objects.create(version=version, kind=kind, message=message[:2000])
    if changed:
        logger.error("model %s quarantined (%s): %s", version, kind, message)
    return bool(changed)


def clear_quarantine(version: ModelVersion, *, actor=None) -> None:
    """Re-validate the artifact (raises validation.ModelRejected naming the failed check), then put the
    version back into scoring and mark its open incidents resolved by `actor`."""

    validate_version(version)
    now = timezone.now()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(quarantined_at=None)
        ModelIncident.objects.filter(version=version, resolved_at__isnull=True).update(
            resolved_at=now, resolved_by=user
        )
    version.quarantined_at = None
