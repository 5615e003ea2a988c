"""Look-ups shared by the registry's commands, turning bad arguments into CommandErrors."""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import CommandError
from django.utils import timezone

from models_registry.choices import ModelKind
from models_registry.models import ModelVersion
from plant.models import AssetType


def get_version(name: str, version: str) -> ModelVersion:
    try:
        number = int(version.lstrip("vV"))
    except ValueError:
        raise CommandError(f"version {version!r} is not a number") from None
    found = ModelVersion.objects.select_related("asset_type").filter(name=name, version=number).first()
    if found is None:
        known = list(ModelVersion.objects.filter(name=name).values_list("version", flat=True))
        if not known:
            raise CommandError(f"no model named {name!r}")
        raise CommandError(
            f"{name!r} has no version {number} (versions: {', '.join(map(str, sorted(known)))})"
        )
    return found


def get_asset_type(slug: str) -> AssetType:
    found = AssetType.objects.filter(slug=slug).first()
    if found is None:
        known = ", ".join(AssetType.objects.values_list("slug", flat=True)) or "none"
        raise CommandError(f"no asset type {slug!r} (known: {known})")
    return found


def check_kind(kind: str) -> str:
    if kind not in ModelKind.values:
        raise CommandError(f"unknown kind {kind!r}; choose one of {', '.join(ModelKind.values)}")
    return kind


def parse_moment(text: str | None, option: str) -> datetime | None:
    """ISO date or date-time; a naive value is taken in the server's time zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} {text!r} is not an ISO date or date-time") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment
