from typing import cast

from django import forms

from reviews.models import INCONCLUSIVE


class QueueFilterForm(forms.Form):
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    subtype = forms.ChoiceField(required=False)
    model_version = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    created_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, teams, subtypes, model_versions, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # self.fields holds copies of the fields declared above, typed only as Field.
        cast(forms.ChoiceField, self.fields["team"]).choices = [
            ("", "All teams"),
            *((t.pk, t.name) for t in teams),
        ]
        cast(forms.ChoiceField, self.fields["subtype"]).choices = [
            ("", "All subtypes"),
            *((s, s) for s in subtypes),
        ]
        cast(forms.ChoiceField, self.fields["model_version"]).choices = [
            ("", "All models"),
            *((m.pk, str(m)) for m in model_versions),
        ]


class VerdictForm(forms.Form):
    diagnosis = forms.ChoiceField()
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, choices: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["diagnosis"]).choices = [
            (c, "Inconclusive" if c == INCONCLUSIVE else c) for c in choices
        ]
