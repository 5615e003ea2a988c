"""Look-ups shared by the registry's commands, turning bad arguments into CommandErrors."""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import CommandError
from django.utils import timezone

from models_registry.choices import ModelKind
from models_registry.models import ModelVersion
from plant.models import Asset, AssetType
from plant.params import ParamError, check_date, parse_id


def get_version(name: str, version: str) -> ModelVersion:
    try:
        number = parse_id("version", version.strip().lstrip("vV"))
    except ParamError:
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


def get_asset(value: str) -> Asset:
    """An asset by tag, SITE/TAG or id (ASCII digits); a tag on several sites asks for SITE/TAG or the id."""
    assets = Asset.objects.select_related("site", "asset_type")
    if "/" in value:
        site, _, tag = value.partition("/")
        matches = list(assets.filter(site__slug=site, tag=tag)[:1])
    else:
        matches = list(assets.filter(tag=value)[:2])
        if not matches:
            try:
                matches = list(assets.filter(pk=parse_id("asset", value)))
            except ParamError:
                pass
    if not matches:
        raise CommandError(f"no asset with tag or id {value!r}")
    if len(matches) > 1:
        raise CommandError(f"tag {value!r} exists on several sites; give SITE/TAG or the asset's id")
    return matches[0]


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
    """ISO date or date-time; a naive value is taken in the server's time zone. Dates outside the years Vigil
    holds readings for (plant.params.check_date) are refused: the year 1 or 9999 with an offset does not
    convert to UTC. An option left out is None; an empty one is refused like any other text that is not a
    date (read as "left out", it widened a training or calibration period to all time)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        check_date(option, moment)
    except ParamError as exc:
        raise CommandError(f"{option}: {exc.message}") from None
    except ValueError:
        raise CommandError(f"{option} {text!r} is not an ISO date or date-time") from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment
