from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("reviews/", views.queue, name="queue"),
    path("reviews/settings/", views.reviewer_settings, name="settings"),
    path("reviews/cases/<int:pk>/", views.case_review, name="case_review"),
    path("reviews/cases/<int:pk>/verdict/", views.case_verdict, name="case_verdict"),
    path("reviews/cases/<int:pk>/sign-off/", views.case_sign_off, name="case_sign_off"),
    path("reviews/cases/<int:pk>/report/", views.case_report, name="case_report"),
    path("reviews/predictions/", views.prediction_audit, name="prediction_audit"),
    path("reviews/predictions/export.csv", views.prediction_export, name="prediction_export"),
    path("reviews/predictions/<int:pk>/heatmap.png", views.heatmap, name="heatmap"),
    path("reviews/agreement/", views.agreement, name="agreement"),
]
