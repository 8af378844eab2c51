"""Cases and patients are worked on in the app's own pages; the Django admin shows only
their field history, read-only."""

from django.contrib import admin

from audit.admin import FieldHistoryAdmin
from cases.models import Case, Patient

for model in (Patient, Case):
    admin.site.register(model.history.model, FieldHistoryAdmin)
