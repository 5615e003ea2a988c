"""Site scoping of the engineering console, for the admins of every app (plant is the lowest app).

A ModelAdmin says how its model reaches a Site with ``site_path`` (``"asset__site"``; ``""`` for Site itself;
``None`` for models that belong to no site, such as asset types and model versions). From that one lookup
and the pages' site rule (plant.access.scope_to_sites) a non-superuser gets only the rows of the sites they
are a member of — in the change list, its filters and actions, the change / delete / history pages (object
permissions) — and only those sites' objects as the choices of every foreign key or many-to-many field that
points at another scoped model (drop-downs, raw-id fields and autocomplete alike, because the choices come
from the related model's own admin).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.contrib.contenttypes import views as contenttype_views
from django.contrib.contenttypes.models import ContentType
from django.contrib.admin.utils import NotRelationField, get_fields_from_path
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models import DateField, Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path
from django.utils.dateparse import parse_date, parse_datetime

from plant.access import scope_to_sites, sees_every_site
from plant.forms import BoundedModelMultipleChoiceField
from plant.params import ParamError, check_date, check_text, shown

# A console query value may be longer than a page's (a change list's saved filters ride in one), but it
# holds no control character: a NUL in a field lookup (?key=%00) reaches PostgreSQL, which refuses it.
MAX_CONSOLE_PARAM = 2000


class ScopedRawIdWidget(ForeignKeyRawIdWidget):
    """A raw-id field that names the object of its value only when it is among the field's (scoped) choices.

    Django's raw-id widget looks the value up in the related model's whole table to print its name beside
    the box, so ``/admin/plant/sensor/add/?asset=<another site's asset>``, or a form posted with one and
    shown again with its error, named another site's asset to an engineer of one site.
    """

    def __init__(self, rel: Any, admin_site: admin.AdminSite, queryset: QuerySet, **kwargs: Any) -> None:
        super().__init__(rel, admin_site, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value: Any) -> tuple[str, str]:
        key = self.rel.get_related_field().name
        try:
            visible = self.queryset.filter(**{key: value}).exists()
        except (ValueError, TypeError, OverflowError, ValidationError):
            visible = False
        return super().label_and_url_for_value(value) if visible else ("", "")


class ScopedChoicesMixin:
    """Foreign-key / many-to-many choices limited to what the related model's admin shows the user."""

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """Ids checked before any query: a 30-digit id was an OverflowError on SQLite (a 500)."""
        kwargs.setdefault("form_class", BoundedModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        widget = getattr(formfield, "widget", None)
        if type(widget) is ForeignKeyRawIdWidget and self._scoped_admin_for(db_field.remote_field.model):
            formfield.widget = ScopedRawIdWidget(
                widget.rel, widget.admin_site, formfield.queryset, attrs=widget.attrs, using=widget.db
            )
        return formfield

    def _scoped_admin_for(self, model: type[Model]) -> SiteScopedAdmin | None:
        related = self.admin_site._registry.get(model)  # type: ignore[attr-defined]
        if isinstance(related, SiteScopedAdmin) and related.site_path is not None:
            return related
        return None

    def get_field_queryset(self, db: str | None, db_field: Any, request: HttpRequest) -> QuerySet | None:
        queryset = super().get_field_queryset(db, db_field, request)  # type: ignore[misc]
        related_admin = self._scoped_admin_for(db_field.remote_field.model)
        if related_admin is None or sees_every_site(request.user):
            return queryset
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.using(db).all()
        return related_admin.scope(queryset, request)


class SiteScopedAdmin(ScopedChoicesMixin, admin.ModelAdmin):
    """A ModelAdmin whose rows, filters, choices and object permissions follow the user's sites."""

    site_path: str | None = "site"

    def scope(self, queryset: QuerySet, request: HttpRequest) -> QuerySet:
        return scope_to_sites(queryset, request.user, self.site_path)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.scope(super().get_queryset(request), request)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """Prefill from the query string, as Django does, keeping only dates and times it can show.

        Django hands a date-time field's query value to the split date/time widget as a string, which
        fails (a 500) for any ``?start=`` on an add page; here it is parsed first and dropped if unusable.
        """
        initial = super().get_changeform_initial_data(request)
        for name, value in list(initial.items()):
            try:
                field = self.model._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            if isinstance(field, DateField) and isinstance(value, str):  # DateTimeField is a DateField
                parse = parse_datetime if isinstance(field, models.DateTimeField) else parse_date
                try:
                    # check_date: a year-1 time at +14:00 or a year-9999 one at -14:00 is well formed but
                    # overflows when the widget shows it in the server's time zone (a 500)
                    parsed = parse(value)
                    if parsed is not None:
                        check_date(name, parsed)
                except ValueError:  # well formed but impossible (month 13), or out of check_date's range
                    parsed = None
                if parsed is None:
                    del initial[name]
                else:
                    initial[name] = parsed
        return initial

    def get_list_filter(self, request: HttpRequest) -> Any:
        # A plain related filter lists every site's objects; RelatedOnlyFieldListFilter lists only the
        # values present in the (scoped) change list.
        return [self._visible_choices_only(item) for item in super().get_list_filter(request)]

    def _visible_choices_only(self, item: Any) -> Any:
        if not isinstance(item, str):
            return item
        try:
            field = get_fields_from_path(self.model, item)[-1]
        except (FieldDoesNotExist, NotRelationField):
            return item
        if field.is_relation and self._scoped_admin_for(field.related_model) is not None:
            return (item, admin.RelatedOnlyFieldListFilter)
        return item

    def in_scope(self, request: HttpRequest, obj: Model | None) -> bool:
        """Whether `obj` is on one of the user's sites (asked once per object and request)."""
        if obj is None or obj.pk is None or self.site_path is None or sees_every_site(request.user):
            return True
        cache = request.__dict__.setdefault("_vigil_in_scope", {})
        key = (obj._meta.label, obj.pk)
        if key not in cache:
            cache[key] = self.scope(self.model._default_manager.filter(pk=obj.pk), request).exists()
        return cache[key]

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_view_permission(request, obj) and self.in_scope(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_change_permission(request, obj) and self.in_scope(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self.in_scope(request, obj)


class ScopedTabularInline(ScopedChoicesMixin, admin.TabularInline):
    """An inline whose foreign-key choices follow the user's sites (its rows belong to a visible parent)."""


def _check_lookup(model_admin: admin.ModelAdmin, name: str, value: str) -> None:
    """ParamError when ``name`` is an exact lookup of one of the model's plain fields and the field refuses
    ``value`` (to_python or its validators); other parameters, a custom filter's among them, are the change
    list's to judge."""
    custom = {
        item.parameter_name
        for item in model_admin.list_filter
        if isinstance(item, type) and issubclass(item, admin.SimpleListFilter)
    }
    if name in custom:
        return
    field_name, _, lookup = name.partition("__")
    if lookup not in ("", "exact"):
        return
    try:
        field = model_admin.model._meta.get_field(field_name)
    except FieldDoesNotExist:
        return
    if field.is_relation or not field.concrete:
        return
    try:
        field.run_validators(field.to_python(value))
    except (ValidationError, ValueError, OverflowError):
        raise ParamError(name, f"{shown(value)} is not a valid {field.verbose_name}") from None


class ScopedAdminSite(admin.AdminSite):
    """The engineering console, whose "view on site" redirect answers only for objects the user may see.

    Django's /admin/r/<content type>/<id>/ redirects any staff user to any object's page, which names
    another site's objects (a site's slug, an asset's URL); here it asks the model's admin first.
    """

    site_header = "Vigil — engineering console"
    site_title = "Vigil console"

    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        """Every change list, once the admin's own checks pass, first refuses a query-string value that
        plant.params rejects (a control character, or longer than MAX_CONSOLE_PARAM) or that a field lookup's
        field refuses, with a 400 that names the parameter: Django hands a change list's lookups to the
        database unchecked (``?key=%00``, ``?ip_address=abc``, ``?escalate_after=abc`` failed there, a 500).
        Other views only show query values (an add page's initial data: SiteScopedAdmin drops bad ones)."""
        if getattr(view, "__name__", "") != "changelist_view":
            return super().admin_view(view, cacheable)
        model_admin = view.__self__  # type: ignore[attr-defined]

        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                for name, values in request.GET.lists():
                    check_text("a parameter name", name, max_length=MAX_CONSOLE_PARAM)
                    for value in values:
                        check_text(name, value, max_length=MAX_CONSOLE_PARAM)
                        _check_lookup(model_admin, name, value)
            except ParamError as exc:
                return HttpResponseBadRequest(
                    f"Bad query string: {exc}", content_type="text/plain; charset=utf-8"
                )
            return view(request, *args, **kwargs)

        return super().admin_view(checked, cacheable)

    def get_urls(self) -> list:
        urls = super().get_urls()
        scoped = path(
            "r/<int:content_type_id>/<path:object_id>/",
            self.admin_view(self.view_on_site),
            name="view_on_site",
        )
        return [scoped if getattr(url, "name", None) == "view_on_site" else url for url in urls]

    def view_on_site(self, request: HttpRequest, content_type_id: int, object_id: str) -> HttpResponse:
        try:
            model = ContentType.objects.get_for_id(content_type_id).model_class()
        except ContentType.DoesNotExist:
            raise Http404("no such content type") from None
        model_admin = self._registry.get(model)
        if model_admin is None:
            if not sees_every_site(request.user):  # a model with no admin has no site scoping
                raise Http404("no such object")
        else:
            try:
                visible = model_admin.get_queryset(request).filter(pk=object_id).exists()
            except (ValueError, ValidationError):
                visible = False
            if not visible or not model_admin.has_view_or_change_permission(request):
                raise Http404("no such object")
        return contenttype_views.shortcut(request, content_type_id, object_id)
