from django.conf import settings
from django.db import models

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
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    diagnosis = models.CharField(max_length=64, help_text="The reviewer's final diagnosis.")
    comment = models.TextField(blank=True)
    # Recorded before the reviewer was shown the model's answer.
    blinded = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()}: {self.diagnosis} (case {self.case_id})"


class SignOff(models.Model):
    """The reviewer's signature on a verdict; it locks the case for good."""

    case = models.OneToOneField("cases.Case", on_delete=models.PROTECT, related_name="sign_off")
    review = models.OneToOneField(Review, on_delete=models.PROTECT, related_name="sign_off")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sign_offs"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"Sign-off of case {self.case_id} by {self.reviewer}"
