"""Forms of the alert pages."""

from __future__ import annotations

from django import forms


LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class MissedFailureForm(forms.Form):
    """The asset page's "report a failure that had no alert" form: when it happened, what failed and a note.

    Naive times are the site's local wall-clock times (the view activates the site's time zone).
    """

    prefix = "missed"  # the asset page's chart range form has start/end fields too

    start = forms.DateTimeField(label="Started", widget=LOCAL)
    end = forms.DateTimeField(label="Ended", widget=LOCAL)
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
