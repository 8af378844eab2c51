from __future__ import annotations

from typing import Any, cast

from django import forms

from accounts.models import Team
from cases.models import Case, Patient


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files under one name; their content is judged by cases.uploads, not here."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data] if data else []
        if self.required and not files:
            raise forms.ValidationError("Choose at least one image.")
        return [super(MultipleImageField, self).clean(file, initial) for file in files]


class CaseFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Patient identifier")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Case.Status.choices])
    predicted = forms.ChoiceField(required=False, label="Predicted subtype")
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    mine = forms.BooleanField(required=False, label="Only cases I submitted")

    def __init__(self, *args, labels: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        # self.fields holds copies of the fields declared above, typed only as Field.
        predicted = cast(forms.ChoiceField, self.fields["predicted"])
        predicted.choices = [("", "Any prediction")] + [(x, x) for x in labels]


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["team", "identifier", "sex", "year_of_birth", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        # self.fields holds copies of the fields declared above, typed only as Field.
        team = cast(forms.ModelChoiceField, self.fields["team"])
        team.queryset = teams
        team.empty_label = None
        if self.instance.pk:
            # The identifier and team are what other records point at: fixed once made.
            del self.fields["team"]
            del self.fields["identifier"]


class CaseEditForm(forms.ModelForm):
    class Meta:
        model = Case
        fields = ["specimen", "stain", "clinical_notes"]
        widgets = {"clinical_notes": forms.Textarea(attrs={"rows": 4})}


class CaseCreateForm(forms.Form):
    """A case for an existing patient, or for a new one described in the same form."""

    patient = forms.ModelChoiceField(
        queryset=Patient.objects.none(), required=False, empty_label="New patient…"
    )
    # The teams are the user's: set in __init__.
    team: forms.ModelChoiceField[Team] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label=None
    )
    identifier = forms.CharField(max_length=64, required=False, label="New patient identifier")
    sex = forms.ChoiceField(choices=Patient.Sex.choices, initial=Patient.Sex.UNKNOWN)
    year_of_birth = forms.IntegerField(min_value=1900, max_value=2100, required=False)
    specimen = forms.ChoiceField(choices=Case.Specimen.choices)
    stain = forms.ChoiceField(choices=Case.Stain.choices)
    clinical_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    images = MultipleImageField(required=False)
    submit = forms.BooleanField(required=False, initial=True, label="Submit for analysis now")

    def __init__(self, *args, patients, teams, **kwargs):
        super().__init__(*args, **kwargs)
        # self.fields holds copies of the fields declared above, typed only as Field.
        cast(forms.ModelChoiceField, self.fields["patient"]).queryset = patients
        cast(forms.ModelChoiceField, self.fields["team"]).queryset = teams

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not data.get("patient") and not data.get("identifier"):
            self.add_error("identifier", "Choose a patient or give the new one an identifier.")
        return data

    def new_patient(self) -> dict | None:
        if self.cleaned_data["patient"]:
            return None
        return {
            "team": self.cleaned_data["team"],
            "identifier": self.cleaned_data["identifier"],
            "sex": self.cleaned_data["sex"],
            "year_of_birth": self.cleaned_data["year_of_birth"],
        }


class ImagesForm(forms.Form):
    images = MultipleImageField(required=True)
