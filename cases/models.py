import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Upper

from audit.history import field_history


class Patient(models.Model):
    """A pseudonymous patient: a lab's identifier, no name. Unique within a team."""

    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="patients")
    identifier = models.CharField(max_length=64, help_text="Pseudonymous identifier, not a name.")
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    year_of_birth = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1900), MaxValueValidator(2100)]
    )
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    # Every saved version, with who saved it: a change of notes keeps the old text.
    history = field_history()

    class Meta:
        ordering = ["identifier"]
        constraints = [
            models.UniqueConstraint(fields=["team", "identifier"], name="unique_patient_per_team")
        ]
        indexes = [
            # `?q=` finds part of an identifier anywhere in it (icontains compares
            # UPPER(identifier)): trigrams of that expression, on PostgreSQL only (the
            # migration skips it elsewhere; SQLite scans, fine at its scale).
            GinIndex(
                OpClass(Upper("identifier"), name="gin_trgm_ops"), name="patient_identifier_trgm"
            ),
            # The patients page: one team's (or all) patients in identifier order.
            models.Index(fields=["identifier", "id"], name="patient_identifier_order"),
        ]

    def __str__(self) -> str:
        return self.identifier


class Case(models.Model):
    class Specimen(models.TextChoices):
        PERIPHERAL_BLOOD = "peripheral_blood", "Peripheral blood"
        BONE_MARROW = "bone_marrow", "Bone marrow"

    class Stain(models.TextChoices):
        WRIGHT_GIEMSA = "wright_giemsa", "Wright-Giemsa"
        MAY_GRUNWALD_GIEMSA = "may_grunwald_giemsa", "May-Grünwald-Giemsa"
        GIEMSA = "giemsa", "Giemsa"
        WRIGHT = "wright", "Wright"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        ANALYSING = "analysing", "Analysing"
        ANALYSED = "analysed", "Analysed"
        REVIEWED = "reviewed", "Reviewed"
        FAILED = "failed", "Failed"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    # The patient's team, copied so that access checks filter one column without a join.
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="cases")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="cases"
    )
    specimen = models.CharField(
        max_length=32, choices=Specimen.choices, default=Specimen.PERIPHERAL_BLOOD
    )
    stain = models.CharField(max_length=32, choices=Stain.choices, default=Stain.WRIGHT_GIEMSA)
    clinical_notes = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    failure_reason = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    # A draft opened by mistake is withdrawn, never deleted: the row and the audit log stay.
    withdrawn = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Every saved version (clinical notes, specimen, stain, status), with who saved it.
    history = field_history()

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["team", "-created"]),
            # Case lists newest first (ties by id), and the same for one status: what
            # the case list, its status filter and a blinded reviewer's queue walk.
            models.Index(fields=["-created", "-id"], name="case_newest"),
            models.Index(fields=["status", "-created", "-id"], name="case_status_newest"),
            models.Index(fields=["team", "status", "-created"], name="case_team_status_newest"),
            # The API's exact count of a user's cases, read from the index alone.
            models.Index(
                fields=["team"],
                condition=models.Q(withdrawn__isnull=True),
                name="case_current_team",
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.patient})"


def smear_upload_to(instance: "SmearImage", filename: str) -> str:
    """A generated name: the uploader's file name is kept in a column, never on disk."""
    return f"smears/{instance.case_id}/{uuid.uuid4().hex}.{instance.format.lower()}"


def smear_thumbnail_upload_to(instance: "SmearImage", filename: str) -> str:
    return f"smears/{instance.case_id}/thumbs/{uuid.uuid4().hex}.jpg"


class CurrentImageManager(models.Manager["SmearImage"]):
    """Images not withdrawn. The default manager, so `case.images`, the workers' claims,
    the sweep and every count leave a withdrawn image out without having to remember to."""

    def get_queryset(self) -> models.QuerySet["SmearImage"]:
        return super().get_queryset().filter(withdrawn__isnull=True)


class SmearImage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ANALYSING = "analysing", "Analysing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="images")
    file = models.FileField(upload_to=smear_upload_to, max_length=255)
    # A small JPEG preview made at upload, so that pages never decode full images.
    thumbnail = models.FileField(upload_to=smear_thumbnail_upload_to, max_length=255, blank=True)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8, help_text="Stored format: JPEG, PNG, TIFF or BMP.")
    size_bytes = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    failure_reason = models.TextField(blank=True)
    # When the status last changed: the sweeper re-queues images pending for too long.
    status_changed = models.DateTimeField(auto_now_add=True, db_index=True)
    # When the image was handed to the workers for its current analysis (submission, or a
    # re-analysis request): how long it has waited, whatever was re-queued meanwhile.
    queued = models.DateTimeField(null=True, blank=True)
    # The worker process analysing it, and until when its claim holds unless renewed: a
    # claim whose worker died lapses within seconds and the sweep hands the image on.
    claimed_by = models.CharField(max_length=255, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    # An image uploaded by mistake is withdrawn from its draft case; row and file are kept.
    withdrawn = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = CurrentImageManager()
    # Withdrawn images too, for the audit trail. (Forward relations such as a prediction's
    # image use Django's plain base manager, so they reach a withdrawn image as well.)
    all_objects = models.Manager["SmearImage"]()

    class Meta:
        ordering = ["uploaded", "pk"]
        constraints = [
            # The same file may be uploaded again once the first copy is withdrawn.
            models.UniqueConstraint(
                fields=["case", "sha256"],
                condition=models.Q(withdrawn__isnull=True),
                name="unique_image_per_case",
            )
        ]

    def __str__(self) -> str:
        return self.original_name
