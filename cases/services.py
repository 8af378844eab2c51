"""Writes for patients, cases and smear images. Each one is audited.

Callers check access first (through selectors); these functions check the rules
of the data itself. They must not run inside an outer transaction: a stored file
is removed when the transaction that would have recorded it fails, and only the
transaction opened here can tell.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Team, User
from audit.models import AuditEvent
from audit.services import audit_record
from cases.files import field_file_save, files_delete, storage_trouble
from cases.models import Case, Patient, SmearImage
from cases.signals import case_submitted
from cases.uploads import CleanImage, UploadRejected, image_clean, image_header_pixels

CASE_EDITABLE_FIELDS = ("specimen", "stain", "clinical_notes")
CASE_LOCKED = "A reviewed case can no longer be changed: its diagnosis is signed off."
WITHDRAW_TOO_LATE = (
    "The case is already {status}: once analysis has started nothing can be withdrawn, "
    "so that what the model and the reviewers saw stays on record."
)
PATIENT_EDITABLE_FIELDS = ("sex", "year_of_birth", "notes")
_NOT_SAVED = (
    "so nothing was saved. Please try again in a few minutes; if it keeps failing, tell your "
    "administrator."
)
UPLOAD_NOT_STORED = f"The images could not be stored right now, {_NOT_SAVED}"

logger = logging.getLogger(__name__)


class UploadNotStored(Exception):
    """The file store failed (unreachable, refusing, full) while an upload was being kept:
    nothing of the request was recorded, and sending it again later is safe."""

    def __init__(self, message: str = UPLOAD_NOT_STORED, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def because(cls, exc: OSError) -> "UploadNotStored":
        """Saying what happened where the error tells (a full or read-only disk)."""
        trouble = storage_trouble(exc)
        if trouble is None:
            return cls()
        return cls(f"{trouble.what}, {_NOT_SAVED}", trouble.code)


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: a stream and the name the uploader gave it."""

    stream: BinaryIO
    name: str


def patient_create(
    *,
    user: User,
    team: Team,
    identifier: str,
    sex: str = Patient.Sex.UNKNOWN,
    year_of_birth: int | None = None,
    notes: str = "",
) -> Patient:
    patient = _patient_build(
        user=user,
        team=team,
        identifier=identifier,
        sex=sex,
        year_of_birth=year_of_birth,
        notes=notes,
    )
    with transaction.atomic():
        _patient_save(patient=patient, user=user)
    return patient


def _patient_build(*, user: User, team: Team, identifier: str, **fields) -> Patient:
    """An unsaved, validated patient; its identifier must be new in the team."""
    identifier = identifier.strip()
    patient = Patient(team=team, identifier=identifier, created_by=user, **fields)
    patient.full_clean(validate_unique=False, validate_constraints=False)
    if Patient.objects.filter(team=team, identifier=identifier).exists():
        raise ValidationError({"identifier": f"{team} already has a patient {identifier}."})
    return patient


def _patient_save(*, patient: Patient, user: User) -> None:
    patient._history_user = user  # type: ignore[attr-defined]
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError as exc:
        raise ValidationError(
            {"identifier": f"{patient.team} already has a patient {patient.identifier}."}
        ) from exc
    audit_record(actor=user, action=AuditEvent.Action.CREATE, target=patient)


def patient_update(*, user: User, patient: Patient, **changes) -> Patient:
    """Change the patient's sex, year of birth or notes; the identifier is fixed."""
    changed = _apply_changes(patient, changes, PATIENT_EDITABLE_FIELDS)
    if changed:
        patient.full_clean(validate_unique=False, validate_constraints=False)
        # The field history names who changed it, called from a request or not.
        patient._history_user = user  # type: ignore[attr-defined]
        with transaction.atomic():
            patient.save(update_fields=list(changed))
            audit_record(
                actor=user,
                action=AuditEvent.Action.CHANGE,
                target=patient,
                detail={"changed": sorted(changed)},
            )
    return patient


def case_create(
    *,
    user: User,
    patient: Patient | None = None,
    new_patient: dict | None = None,
    specimen: str = Case.Specimen.PERIPHERAL_BLOOD,
    stain: str = Case.Stain.WRIGHT_GIEMSA,
    clinical_notes: str = "",
    uploads: Sequence[Upload] = (),
    submit: bool = False,
) -> Case:
    """Open a case for a patient (an existing one, or `new_patient`: the keyword
    arguments of patient_create but user), optionally with images, optionally
    submitted at once.

    Everything is validated before anything is written: one bad file refuses the
    whole request and leaves no patient, case, row or file behind.
    """
    if (patient is None) == (new_patient is None):
        raise ValidationError("Choose a patient or describe a new one.")
    if new_patient is not None:
        patient = _patient_build(user=user, **new_patient)
    # Exactly one of the two was given (checked above), and a new one is built by now.
    assert patient is not None
    cleaned = _clean_all(uploads)
    if submit and not cleaned:
        raise ValidationError("Add at least one image before submitting the case.")
    case = Case(
        submitted_by=user,
        specimen=specimen,
        stain=stain,
        clinical_notes=clinical_notes,
    )
    case.full_clean(exclude=["patient", "team", "submitted_by"])

    def write(stored: list[str]) -> None:
        if patient.pk is None:
            _patient_save(patient=patient, user=user)
        case.patient = patient
        case.team_id = patient.team_id
        case._history_user = user  # type: ignore[attr-defined]
        case.save()
        audit_record(actor=user, action=AuditEvent.Action.CREATE, target=case, case=case)
        _store_images(case=case, user=user, cleaned=cleaned, stored=stored)
        if submit:
            _mark_submitted(case=case, user=user)

    _write_with_files(write)
    return case


def case_update(*, user: User, case: Case, **changes) -> Case:
    """Change a case's specimen, stain or clinical notes (not once it is reviewed)."""
    _require_open(case)
    changed = _apply_changes(case, changes, CASE_EDITABLE_FIELDS)
    if changed:
        case.full_clean(exclude=["patient", "team", "submitted_by"])
        # The field history names who changed it, called from a request or not.
        case._history_user = user  # type: ignore[attr-defined]
        with transaction.atomic():
            case.save(update_fields=[*changed, "updated"])
            audit_record(
                actor=user,
                action=AuditEvent.Action.CHANGE,
                target=case,
                case=case,
                detail={"changed": sorted(changed)},
            )
    return case


def case_images_add(*, user: User, case: Case, uploads: Sequence[Upload]) -> list[SmearImage]:
    """Add images to a case; a case already submitted goes back to the workers.

    All or nothing, like case_create: one refused file and none is kept.
    """
    _require_open(case)
    cleaned = _clean_all(uploads)
    if not cleaned:
        raise ValidationError("Choose at least one image.")
    images: list[SmearImage] = []

    def write(stored: list[str]) -> None:
        # Lock the case so that two uploads of the same file cannot both pass the check.
        locked = Case.objects.select_for_update().get(pk=case.pk)
        images.extend(_store_images(case=locked, user=user, cleaned=cleaned, stored=stored))
        if locked.status != Case.Status.DRAFT:
            _mark_submitted(case=locked, user=user)
            case.status = locked.status

    _write_with_files(write)
    return images


def case_submit(*, user: User, case: Case) -> Case:
    """Hand a draft case to the workers once its images are stored."""
    if case.status != Case.Status.DRAFT:
        raise ValidationError(f"The case is already {case.get_status_display().lower()}.")
    if case.withdrawn is not None:
        raise ValidationError("The case is withdrawn.")
    # Withdrawn images are not counted: case.images holds the current ones only.
    if not case.images.exists():
        raise ValidationError("Add at least one image before submitting the case.")
    with transaction.atomic():
        _mark_submitted(case=case, user=user)
    return case


def smear_image_withdraw(*, user: User, image: SmearImage) -> SmearImage:
    """Take an image uploaded by mistake out of its draft case. Nothing is deleted: the
    row and its file stay, marked withdrawn, and the same file may be uploaded again."""
    with transaction.atomic():
        # Lock the case so that a submission cannot slip in between the check and the write.
        case = Case.objects.select_for_update().get(pk=image.case_id)
        _require_draft(case)
        locked = SmearImage.all_objects.select_for_update().get(pk=image.pk)
        if locked.withdrawn is not None:
            raise ValidationError(f"{locked} is already withdrawn.")
        locked.withdrawn = timezone.now()
        locked.withdrawn_by = user
        locked.save(update_fields=["withdrawn", "withdrawn_by"])
        audit_record(actor=user, action=AuditEvent.Action.WITHDRAW, target=locked, case=case)
        case.save(update_fields=["updated"])
    image.withdrawn, image.withdrawn_by = locked.withdrawn, locked.withdrawn_by
    return image


def case_withdraw(*, user: User, case: Case) -> Case:
    """Withdraw a draft case opened by mistake: gone from the lists, kept in the database
    and the audit log. Its images stay as they are: they go wherever the case goes."""
    with transaction.atomic():
        locked = Case.objects.select_for_update().get(pk=case.pk)
        _require_draft(locked)
        if locked.withdrawn is not None:
            raise ValidationError("The case is already withdrawn.")
        locked.withdrawn = timezone.now()
        locked.withdrawn_by = user
        locked.save(update_fields=["withdrawn", "withdrawn_by", "updated"])
        audit_record(actor=user, action=AuditEvent.Action.WITHDRAW, target=locked, case=locked)
    case.withdrawn, case.withdrawn_by = locked.withdrawn, locked.withdrawn_by
    return case


def _require_draft(case: Case) -> None:
    if case.status != Case.Status.DRAFT:
        raise ValidationError(WITHDRAW_TOO_LATE.format(status=case.get_status_display().lower()))


def _require_open(case: Case) -> None:
    if case.status == Case.Status.REVIEWED:
        raise PermissionDenied(CASE_LOCKED)
    if case.withdrawn is not None:
        raise ValidationError("The case is withdrawn.")


def _apply_changes(instance, changes: dict, allowed: Sequence[str]) -> set[str]:
    unknown = set(changes) - set(allowed)
    if unknown:
        raise TypeError(f"cannot change {', '.join(sorted(unknown))}")
    changed = set()
    for field, value in changes.items():
        if getattr(instance, field) != value:
            setattr(instance, field, value)
            changed.add(field)
    return changed


def _clean_all(uploads: Sequence[Upload]) -> list[tuple[Upload, CleanImage]]:
    """Validate every upload, and refuse duplicates within the request itself."""
    if len(uploads) > settings.UPLOAD_MAX_FILES:
        raise ValidationError(f"At most {settings.UPLOAD_MAX_FILES} images at once.")
    # Decoding costs by the pixel, whatever the file size: small files whose headers claim
    # huge images are refused together before any of them is decoded.
    pixels = sum(image_header_pixels(upload.stream) for upload in uploads)
    if pixels > settings.UPLOAD_MAX_REQUEST_PIXELS:
        raise ValidationError(
            f"These {len(uploads)} images have {pixels:,} pixels together; at most "
            f"{settings.UPLOAD_MAX_REQUEST_PIXELS:,} are accepted in one upload. "
            "Upload them in smaller groups."
        )
    cleaned: list[tuple[Upload, CleanImage]] = []
    seen: dict[str, str] = {}
    for upload in uploads:
        try:
            image = image_clean(
                upload.stream,
                name=upload.name,
                max_bytes=settings.UPLOAD_MAX_BYTES,
                max_pixels=settings.UPLOAD_MAX_PIXELS,
            )
        except UploadRejected as exc:
            raise ValidationError(str(exc)) from exc
        if image.sha256 in seen:
            raise ValidationError(f"{upload.name} is the same image as {seen[image.sha256]}.")
        seen[image.sha256] = upload.name
        cleaned.append((upload, image))
    return cleaned


def _store_images(
    *, case: Case, user: User, cleaned: list[tuple[Upload, CleanImage]], stored: list[str]
) -> list[SmearImage]:
    existing = dict(
        case.images.filter(sha256__in=[image.sha256 for _, image in cleaned]).values_list(
            "sha256", "original_name"
        )
    )
    for upload, image in cleaned:
        if image.sha256 in existing:
            raise ValidationError(
                f"{upload.name} is already in this case (as {existing[image.sha256]})."
            )
    rows = []
    for upload, image in cleaned:
        row = SmearImage(
            case=case,
            original_name=upload.name[:255],
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            format=image.format,
            size_bytes=len(image.content),
            uploaded_by=user,
        )
        _file_keep(row, "file", image.content, stored)
        _file_keep(row, "thumbnail", image.thumbnail, stored)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError as exc:
            # Another request stored the same image between our check and now.
            raise ValidationError(f"{upload.name} is already in this case.") from exc
        audit_record(
            actor=user,
            action=AuditEvent.Action.CREATE,
            target=row,
            case=case,
            detail={"original_format": image.original_format, "stored_format": image.format},
        )
        rows.append(row)
    return rows


def _file_keep(row: SmearImage, field_name: str, content: bytes, stored: list[str]) -> None:
    """Write one file of an upload; its name goes on `stored` as soon as it exists, so a
    failure anywhere after this point can remove it, and a write that fails removes its
    own partial file (cases.files)."""
    try:
        stored.append(field_file_save(row, field_name, ContentFile(content, field_name)))
    except OSError as exc:
        logger.error("upload not stored: %s", exc)
        raise UploadNotStored.because(exc) from exc


def _mark_submitted(*, case: Case, user: User) -> None:
    case.status = Case.Status.SUBMITTED
    case.failure_reason = ""
    case.save(update_fields=["status", "failure_reason", "updated"])
    # The clock of how long its new images wait, which re-queuing does not restart.
    case.images.filter(status=SmearImage.Status.PENDING, queued__isnull=True).update(
        queued=timezone.now()
    )
    audit_record(actor=user, action=AuditEvent.Action.SUBMIT, target=case, case=case)
    # The inference app queues the analysis once this transaction commits.
    case_submitted.send(sender=Case, case_id=case.pk)


def _write_with_files(write) -> None:
    """Run `write(stored)` in a transaction; if it fails, delete the files it stored."""
    stored: list[str] = []
    try:
        with transaction.atomic():
            write(stored)
    except BaseException:
        # The store may have gone away mid-request: what cannot be removed is logged by
        # name, and the original error is what the uploader must hear.
        files_delete(default_storage, stored)
        raise
