"""The REST API's URLs: the token, the schema, its documentation page and every resource."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from clinic.api import views
from leukweb.api import docs
from leukweb.api.auth import TokenView

app_name = "api"

router = DefaultRouter()
# JSON is chosen by the Accept header (or ?format=); ".json" twins of every route add nothing.
router.include_format_suffixes = False
router.register("patients", views.PatientViewSet, basename="patient")
router.register("cases", views.CaseViewSet, basename="case")
router.register("images", views.ImageViewSet, basename="image")
router.register("predictions", views.PredictionViewSet, basename="prediction")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs.api_docs, name="docs"),
    *router.urls,
]
