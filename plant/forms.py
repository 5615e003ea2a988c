"""Forms of the plant pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from plant.params import ParamError, check_date, check_text, parse_id

RANGE_PRESETS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "6h"
MAX_SPAN = timedelta(days=366)


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    preset: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class BoundedModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Several rows by id, each id by plant.params' rule (ASCII digits that fit a bigint) before any query:
    Django hands a 30-digit id to the database, which SQLite refuses with an OverflowError (a 500)."""

    def _check_values(self, value: object) -> object:
        for pk in value:  # the field has made `value` a list or tuple of strings before this is called
            try:
                parse_id(self.label or "id", str(pk))
            except ParamError:
                raise ValidationError(
                    self.error_messages["invalid_choice"], code="invalid_choice", params={"value": pk}
                ) from None
        return super()._check_values(value)


class BoundedDateTimeField(forms.DateTimeField):
    """A date and time by plant.params' rules (printable, between 1970 and a few years ahead), so a hostile
    value is a form error, never a database or overflow error."""

    def to_python(self, value: object) -> datetime | None:
        if isinstance(value, str):
            try:
                value = check_text(self.label or "time", value)
            except ParamError as exc:
                raise ValidationError(exc.message, code="invalid") from None
        return super().to_python(value)

    def validate(self, value: datetime | None) -> None:
        super().validate(value)
        if value is not None:
            try:
                # On the clock it was typed on, as typed: not ISO with the zone's offset in year 1 (-05:50:36).
                written = value.isoformat(sep=" ", timespec="minutes")[:16]
                check_date(self.label or "time", value, written=written)
            except ParamError as exc:
                raise ValidationError(exc.message, code="out_of_range") from None


class ChartRangeForm(forms.Form):
    """The asset chart's time range: a preset length ending now, or explicit ISO start/end.

    With only `start`, the preset length runs from it; with only `end`, the preset length ends at it.
    """

    range = forms.ChoiceField(choices=[(key, key) for key in RANGE_PRESETS], required=False, label="Last")
    start = BoundedDateTimeField(
        required=False, label="From", help_text="e.g. 2026-01-05 08:00, the site's time"
    )
    end = BoundedDateTimeField(required=False, label="To")

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            raise forms.ValidationError("The end of the range must be after its start.")
        if start and end and end - start > MAX_SPAN:
            raise forms.ValidationError(f"The range can span at most {MAX_SPAN.days} days.")
        return data

    def time_range(self, now: datetime | None = None) -> TimeRange:
        """The range asked for, or the default one when the form is invalid (its errors are shown)."""
        now = now or timezone.now()
        data = self.cleaned_data if self.is_valid() else {}
        preset = data.get("range") or DEFAULT_RANGE
        length = RANGE_PRESETS[preset]
        start, end = data.get("start"), data.get("end")
        if start and end:
            return TimeRange(start, end, preset)
        if start:
            return TimeRange(start, start + length, preset)
        end = end or now
        return TimeRange(end - length, end, preset)
