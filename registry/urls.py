from django.urls import path

from registry import views

app_name = "registry"

urlpatterns = [
    path("registry/", views.registry_list, name="list"),
    path("registry/import/", views.registry_import, name="import"),
    path("registry/rollback/", views.registry_rollback, name="rollback"),
    path("registry/<int:pk>/", views.registry_detail, name="detail"),
    path("registry/<int:pk>/evaluate/", views.registry_evaluate, name="evaluate"),
    path("registry/<int:pk>/evaluations/", views.registry_evaluations, name="evaluations"),
    path("registry/<int:pk>/variant/", views.registry_variant, name="variant"),
    path("registry/<int:pk>/<slug:action>/", views.registry_action, name="action"),
]
