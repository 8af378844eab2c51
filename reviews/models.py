from django.conf import settings
from django.db import models

from audit.history import field_history

# Beside the model's classes a reviewer may conclude that the smear does not decide.
INCONCLUSIVE = "inconclusive"


class Review(models.Model):
    """One reviewer's verdict on a case's model answer. Rows are only added: the latest counts.

    The model's answer is copied in (version, label, confidence) so that the verdict keeps
    saying what was judged even if the case is analysed again by another model later.
    """

    class Verdict(models.TextChoices):
        AGREE = "agree", "Agree"
        OVERRIDE = "override", "Override"

    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    model_version = models.ForeignKey(
        "inference.ModelVersion", on_delete=models.PROTECT, related_name="reviews"
    )
    model_label = models.CharField(max_length=64)
    model_confidence = models.FloatField()
    # The model gave no subtype (every image out of scope): model_label is then only its
    # top class, which no page may show as its answer, and no diagnosis agrees with it.
    model_abstained = models.BooleanField(default=False)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    diagnosis = models.CharField(max_length=64, help_text="The reviewer's final diagnosis.")
    comment = models.TextField(blank=True)
    # Recorded before the reviewer was shown the model's answer: asked for, and true (the
    # answer was never shown to this reviewer on this case before, see AnswerShown).
    blinded = models.BooleanField(default=False)
    # Whether the model's answer had been shown to this reviewer on this case before the
    # verdict, whatever was asked for; None for verdicts filed before this was recorded.
    answer_shown_before = models.BooleanField(null=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    history = field_history()

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.verdict_shown}: {self.diagnosis} (case {self.case_id})"

    @property
    def verdict_shown(self) -> str:
        """The verdict as pages name it: where the model gave no subtype there was nothing
        to agree with or override, only the reviewer's diagnosis."""
        return "Diagnosis" if self.model_abstained else self.get_verdict_display()


class SignOff(models.Model):
    """The reviewer's signature on a verdict; it locks the case for good."""

    case = models.OneToOneField("cases.Case", on_delete=models.PROTECT, related_name="sign_off")
    review = models.OneToOneField(Review, on_delete=models.PROTECT, related_name="sign_off")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sign_offs"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    history = field_history()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Sign-off of case {self.case_id} by {self.reviewer}"


class AnswerShown(models.Model):
    """The model's answer for a case was shown to a reviewer (a page or an API response
    that carries it): what a verdict's ``answer_shown_before`` is computed from, so that a
    peek (``?blinded=0``, the case page, the API) cannot pass for a blinded verdict."""

    case = models.ForeignKey("cases.Case", on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # Where it was shown: the request's path.
    where = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["case", "reviewer"])]
        verbose_name = "answer shown to a reviewer"
        verbose_name_plural = "answers shown to reviewers"

    def __str__(self) -> str:
        return f"Case {self.case_id}'s answer shown to {self.reviewer_id} ({self.where})"
