from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.history import field_history


class ModelVersionQuerySet(models.QuerySet["ModelVersion"]):
    def deployed(self) -> "ModelVersion | None":
        return self.filter(status=ModelVersion.Status.DEPLOYED).first()

    def shadow(self) -> "ModelVersion | None":
        return self.filter(status=ModelVersion.Status.SHADOW).first()


class Variant(models.TextChoices):
    """The ONNX graphs an artifact may carry: full precision, and the quantised one."""

    FP32 = "fp32", "fp32"
    INT8 = "int8", "int8 (quantised)"


class ModelVersion(models.Model):
    """One imported, immutable model artifact and where it stands in the registry."""

    class Status(models.TextChoices):
        REGISTERED = "registered", "Registered"
        DEPLOYED = "deployed", "Deployed"
        SHADOW = "shadow", "Shadow"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    architecture = models.CharField(max_length=50)
    classes = models.JSONField(help_text="Ordered class labels, as the model outputs them.")
    input_size = models.PositiveIntegerField()
    artifact = models.CharField(max_length=500, help_text="Folder in the models storage.")
    content_hash = models.CharField(max_length=80)
    manifest = models.JSONField()
    report = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REGISTERED)
    # Which of the artifact's ONNX graphs the analysis workers run; an admin's audited choice.
    variant = models.CharField(max_length=8, choices=Variant.choices, default=Variant.FP32)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_version"),
            # The registry's central promise: at most one deployed and one shadow model.
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="deployed"), name="one_deployed_model"
            ),
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="shadow"), name="one_shadow_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def is_synthetic(self) -> bool:
        """Trained on generated images: a demo, never for clinical use."""
        return bool(self.manifest.get("synthetic"))

    @property
    def int8(self) -> dict:
        """The int8 variant's figures and verdict from the manifest ({} when none was made)."""
        return dict(self.manifest.get("int8") or {})

    @property
    def int8_available(self) -> bool:
        return self.int8.get("status") == "accepted"

    @property
    def class_meanings(self) -> dict[str, str]:
        """What each of the model's labels means, as its manifest says (may be empty)."""
        meanings = (self.manifest.get("extra") or {}).get("class_meanings") or {}
        return {label: str(meanings[label]) for label in self.classes if label in meanings}

    def clinical_label(self, label: str) -> str | None:
        """The diagnosis (settings.CLINICAL_DIAGNOSES) that one of the model's labels
        stands for: its manifest's mapping, or the label itself when it is one; None
        when the model's label names nothing a reviewer diagnoses."""
        mapped = ((self.manifest.get("extra") or {}).get("clinical_labels") or {}).get(label)
        if mapped in settings.CLINICAL_DIAGNOSES:
            return mapped
        return label if label in settings.CLINICAL_DIAGNOSES else None


class DeploymentEvent(models.Model):
    """A recorded change of which model serves: who, when, why."""

    class Action(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        ROLLBACK = "rollback", "Roll back"
        SHADOW = "shadow", "Set as shadow"
        RETIRE = "retire", "Retire"
        VARIANT = "variant", "Choose variant"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.model_version}"


class ModelEvaluation(models.Model):
    """A version scored on a labelled image set of this site (``manage.py evaluate_model``
    or the registry page, which queues it for a worker).

    Kept beside the training report: that one speaks for the training data, this one for
    the images the model would meet here. Rows are only added; a failed run keeps why.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="evaluations"
    )
    dataset = models.CharField(max_length=500, help_text="The labelled folder.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    dataset_fingerprint = models.CharField(max_length=64, blank=True)
    images_count = models.PositiveIntegerField(default=0)
    accuracy = models.FloatField(null=True)
    macro_f1 = models.FloatField(null=True, help_text="Over the classes present in the set.")
    result = models.JSONField(
        default=dict, help_text="Everything training.local_evaluation computed."
    )
    note = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    # The worker process running a queued evaluation and until when its claim holds (see
    # SmearImage): a second delivery of the message leaves a live run alone.
    claimed_by = models.CharField(max_length=255, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.model_version} on {self.dataset}"


class HeatmapState(models.TextChoices):
    PENDING = "pending", "Pending"
    MADE = "made", "Made"
    IMPOSSIBLE = "impossible", "Impossible"


#: What each of the guard's input checks (runtime.guard.INPUT_CHECKS) says about an image
#: it flagged, for the pages; a "layer X" check is described by ood_reason_explained.
OOD_REASONS = {
    "blank": "next to no cell outlines: an empty or near-white field",
    "blur": "out of focus",
    "fine texture": "finer texture than a smear: noise, a screen's pixels or print",
    "high contrast": "far more contrast than a smear: a dark border, a desk, a scene",
    "halftone": "a printed picture's dot grid: a photo of paper",
}


class Prediction(models.Model):
    """One model version's answer for one image. Never overwritten (its heatmap is added)."""

    image = models.ForeignKey(
        "cases.SmearImage", on_delete=models.PROTECT, related_name="predictions"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions"
    )
    probabilities = models.JSONField(help_text="Calibrated probability per class label.")
    label = models.CharField(max_length=64, db_index=True)
    confidence = models.FloatField()
    # Out-of-scope guard: the score, whether it crossed the model's threshold, and why.
    ood_score = models.FloatField(null=True, blank=True)
    out_of_scope = models.BooleanField(default=False)
    ood_reason = models.CharField(
        max_length=100,
        blank=True,
        help_text=(
            "Out of scope: the guard's check that scored the image highest, such as "
            '"blank" (an empty field), "blur", "fine texture", "high contrast" or '
            '"layer bn4" (unlike the training images in that layer of the model). Empty '
            "when in scope, and for predictions made before the reason was stored."
        ),
    )
    heatmap = models.FileField(upload_to="heatmaps/", blank=True, max_length=255)
    # The Grad-CAM overlay's own life (inference.services.heatmaps): pending until a heatmap
    # worker attaches it, or impossible with the reason a reviewer is shown. The sweep
    # queues pending ones again by heatmap_changed, and by their claim's lease like images.
    heatmap_state = models.CharField(
        max_length=12, choices=HeatmapState.choices, default=HeatmapState.PENDING, db_index=True
    )
    heatmap_reason = models.TextField(blank=True)
    heatmap_changed = models.DateTimeField(null=True, blank=True)
    heatmap_claimed_by = models.CharField(max_length=255, blank=True)
    heatmap_lease_expires = models.DateTimeField(null=True, blank=True)
    # The file a claimed run is writing, named in the database before the write: what a run
    # that died between its write and its attach left behind is found and deleted by name.
    heatmap_draft = models.CharField(max_length=255, blank=True)
    inference_ms = models.FloatField()
    worker_host = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="one_prediction_per_image_and_model"
            )
        ]
        indexes = [
            # The reviewers' audit of predictions, newest first, and one version's.
            models.Index(fields=["-created", "-id"], name="prediction_newest"),
            models.Index(fields=["model_version", "-created"], name="prediction_version_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.confidence:.0%}) by {self.model_version}"

    @property
    def ood_reason_explained(self) -> str:
        """The flagging check in words ("" where none was stored)."""
        if self.ood_reason.startswith("layer "):
            layer = self.ood_reason.removeprefix("layer ")
            return f"unlike the training smears in what the model's layer {layer} sees"
        return OOD_REASONS.get(self.ood_reason, "")


#: A case result whose every image was out of scope: the model gave no subtype for the
#: case, and its label is only the highest of probabilities that mean nothing. The
#: queries' form of :attr:`CaseResult.abstained`.
ABSTAINED = Q(images_count__gt=0, out_of_scope_count__gte=F("images_count"))


class CaseResult(models.Model):
    """A model version's aggregate answer for a whole case (the rule is in services)."""

    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="results")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="case_results"
    )
    label = models.CharField(max_length=64, db_index=True)
    confidence = models.FloatField()
    probabilities = models.JSONField()
    needs_review = models.BooleanField(default=False, db_index=True)
    images_count = models.PositiveIntegerField()
    out_of_scope_count = models.PositiveIntegerField(default=0)
    # The case's answer, the one every page and the API show: the result of the version
    # the case is analysed with (CaseAnalysis). At most one per case; shadow results and
    # those of an earlier or unfinished analysis are kept beside it, never shown as it.
    primary = models.BooleanField(default=True, db_index=True)
    created = models.DateTimeField(auto_now_add=True)
    # The case's answer is clinical: which result was primary when is kept.
    history = field_history()

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "model_version"], name="one_result_per_case_and_model"
            ),
            models.UniqueConstraint(
                fields=["case"], condition=Q(primary=True), name="one_primary_result_per_case"
            ),
        ]
        indexes = [
            # The review queue's order: cases needing review first, then least confident.
            models.Index(
                fields=["-needs_review", "confidence"],
                condition=Q(primary=True),
                name="caseresult_queue_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case}: {self.label}"

    @property
    def abstained(self) -> bool:
        """Every image was out of scope (:data:`ABSTAINED`, for one loaded row)."""
        return self.images_count > 0 and self.out_of_scope_count >= self.images_count


class CaseAnalysis(models.Model):
    """Which model version analyses a case: the one deployed when the case was submitted,
    or one an administrator asked for with a reason (a re-analysis). The newest row is the
    case's; deploying or rolling back a model never changes it, so neither can a stray
    queued message that runs after a deploy. Rows are only added."""

    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="analyses")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="case_analyses"
    )
    # None for the analysis made at submission; the administrator for a re-analysis.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-pk"]
        verbose_name_plural = "case analyses"

    def __str__(self) -> str:
        return f"{self.case} by {self.model_version}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker, written by the worker itself.

    The database is the one thing web and workers always share, whatever the
    broker, so /healthz and the case pages read worker liveness from here.
    """

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField()
    started = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.hostname
