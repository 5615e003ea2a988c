"""Forms of the registry pages: start a retrain, pick a comparison period, move a version with a reason."""

from __future__ import annotations

from datetime import datetime

from django import forms

from models_registry.comparison import BACKTEST, RECORDED
from models_registry.retrain import RETRAINABLE_KINDS
from plant.forms import BoundedDateTimeField, BoundedModelMultipleChoiceField
from models_registry.models import ModelVersion
from plant.models import Asset, AssetType

LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class RetrainForm(forms.Form):
    """Which asset type and kind to retrain from feedback, and optionally from when on."""

    asset_type = forms.ModelChoiceField(
        queryset=AssetType.objects.order_by("name"),
        to_field_name="slug",
        empty_label=None,
        error_messages={"invalid_choice": "Unknown asset type; pick one from the list."},
    )
    kind = forms.ChoiceField(choices=[(kind.value, kind.label) for kind in RETRAINABLE_KINDS])
    since = BoundedDateTimeField(
        required=False, widget=LOCAL, help_text="Leave empty to use all readings and feedback."
    )


class PeriodForm(forms.Form):
    """The comparison period (naive times are the server's time zone) and where the alerts come from."""

    start = BoundedDateTimeField(required=False, widget=LOCAL)
    end = BoundedDateTimeField(required=False, widget=LOCAL)
    mode = forms.ChoiceField(
        label="Alerts from",
        required=False,
        choices=[
            (BACKTEST, "Backtest both versions on the stored readings"),
            (RECORDED, "Recorded alerts (champion: real, challenger: shadow)"),
        ],
    )

    def clean(self) -> dict:
        data = super().clean()
        start: datetime | None = data.get("start")
        end: datetime | None = data.get("end")
        if start and end and end <= start:
            raise forms.ValidationError("The end of the period must be after its start.")
        data["mode"] = data.get("mode") or BACKTEST
        return data


class ReasonForm(forms.Form):
    """Every status move says why; the reason is kept in the version's history."""

    reason = forms.CharField(max_length=300, strip=True, error_messages={"required": "Say why (required)."})


class RecalibrateForm(forms.Form):
    """The asset page's "recalibrate from a normal period" form (engineers). Naive times are the site's
    local wall-clock times (the view activates the site's time zone)."""

    prefix = "calibrate"  # the asset page has other start/end fields

    start = BoundedDateTimeField(label="Normal from", widget=LOCAL)
    end = BoundedDateTimeField(label="Normal until", widget=LOCAL)

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and end <= start:
            raise forms.ValidationError("The end of the calibration period must be after its start.")
        return data


class EdgeAssignForm(forms.Form):
    """Assign a version to some assets' edge agents (one first, then the rest: a staged rollout)."""

    version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        error_messages={"invalid_choice": "Unknown model version; pick one from the list."},
    )
    assets = BoundedModelMultipleChoiceField(
        queryset=Asset.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one asset.", "invalid_choice": "Unknown asset."},
    )
    shadow_hours = forms.FloatField(
        min_value=0.1,
        max_value=24 * 30,
        initial=24.0,
        help_text="Hours in shadow on the agent before a switch.",
    )
    auto_approve = forms.BooleanField(
        required=False, help_text="Switch automatically when the shadow trial is within the policy's bounds."
    )

    def __init__(self, *args, assets=None, versions=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assets"].queryset = assets if assets is not None else Asset.objects.none()
        self.fields["version"].queryset = versions if versions is not None else ModelVersion.objects.none()

    def clean(self) -> dict:
        data = super().clean()
        version, assets = data.get("version"), data.get("assets")
        if version is not None and assets:
            wrong = [a.tag for a in assets if a.asset_type_id != version.asset_type_id]
            if wrong:
                raise forms.ValidationError(
                    f"{version} is for {version.asset_type}; not for {', '.join(wrong[:5])}"
                )
        return data
