"""Verdicts and sign-offs are filed on the review pages; the Django admin shows their
field history and where each reviewer was shown a model's answer, read-only."""

from django.contrib import admin

from audit.admin import FieldHistoryAdmin, ReadOnlyAdmin
from reviews.models import AnswerShown, Review, SignOff

for model in (Review, SignOff):
    admin.site.register(model.history.model, FieldHistoryAdmin)


@admin.register(AnswerShown)
class AnswerShownAdmin(ReadOnlyAdmin):
    list_display = ("created", "reviewer", "case", "where")
    list_filter = ("created",)
    search_fields = ("reviewer__username", "case__id")
    list_select_related = ("reviewer",)
