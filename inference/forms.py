"""Admin forms: a zipped artifact to import, and a confirmed, reasoned registry change."""

import zipfile
from pathlib import Path, PurePosixPath

from django import forms

# A zip that unpacks to more than this is refused before it is unpacked (a zip bomb).
MAX_UNPACKED_BYTES = 4 * 1024**3


class ArtifactImportForm(forms.Form):
    archive = forms.FileField(
        label="Artifact (.zip)",
        help_text="The zipped artifact folder: model.keras, manifest.json and the report.",
    )

    def clean_archive(self):
        upload = self.cleaned_data["archive"]
        if not zipfile.is_zipfile(upload):
            raise forms.ValidationError("This is not a zip file.")
        upload.seek(0)
        with zipfile.ZipFile(upload) as archive:
            members = archive.infolist()
            for member in members:
                path = PurePosixPath(member.filename)
                if path.is_absolute() or ".." in path.parts:
                    raise forms.ValidationError(f"Refused: unsafe path {member.filename!r}.")
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise forms.ValidationError("Refused: the zip unpacks to more than 4 GiB.")
        upload.seek(0)
        return upload


def artifact_unpack(upload, target: Path) -> Path:
    """Unpack a checked zip into ``target``; return the folder that holds manifest.json."""
    with zipfile.ZipFile(upload) as archive:
        archive.extractall(target)
    manifests = sorted(target.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise forms.ValidationError("Refused: the zip holds no manifest.json.")
    return manifests[0].parent


class RegistryChangeForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why: recorded in the deployment history and the audit log.",
    )
    confirm = forms.BooleanField(label="I understand what this changes", required=True)
