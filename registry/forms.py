from typing import cast

from django import forms

from inference.models import Variant


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with the change in the deployment history and the audit log.",
    )
    accept_new_classes = forms.BooleanField(
        required=False,
        label="I understand that clinicians and reviewers will see these new labels",
    )

    def __init__(self, *args, class_change: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if class_change:
            self.fields["accept_new_classes"].required = True
        else:
            del self.fields["accept_new_classes"]


class EvaluationRequestForm(forms.Form):
    dataset = forms.ChoiceField(label="Labelled set")
    note = forms.CharField(required=False, max_length=200, help_text="What this set is.")

    def __init__(self, *args, datasets: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # self.fields holds copies of the fields declared above, typed only as Field.
        cast(forms.ChoiceField, self.fields["dataset"]).choices = [(d, d) for d in datasets]


class ArtifactImportForm(forms.Form):
    archive = forms.FileField(
        label="Artifact (.zip)",
        help_text="The zipped artifact folder: model.keras, model.onnx with its verification "
        "batch, manifest.json and the report.",
    )


class VariantForm(forms.Form):
    variant = forms.ChoiceField(choices=Variant.choices)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded with the change in the deployment history and the audit log.",
    )
