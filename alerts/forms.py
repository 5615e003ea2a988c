"""Forms of the alert pages."""

from __future__ import annotations

from django import forms

from plant.forms import BoundedDateTimeField

LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class MissedFailureForm(forms.Form):
    """The asset page's "report a failure that had no alert" form: when it happened, what failed and a note.

    Naive times are the site's local wall-clock times (the view activates the site's time zone).
    """

    prefix = "missed"  # the asset page's chart range form has start/end fields too

    # Between 1970 and a few years ahead (plant.params): the year 1 in a zone east of UTC overflowed.
    start = BoundedDateTimeField(label="Started", widget=LOCAL)
    end = BoundedDateTimeField(label="Ended", widget=LOCAL)
    fault_type = forms.CharField(label="What failed", max_length=60, help_text="e.g. bearing wear")
    note = forms.CharField(
        label="Note", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            raise forms.ValidationError("The end of the failure must be after its start.")
        return data
