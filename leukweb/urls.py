from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from authentication import views as authentication_views
from authentication.middleware import second_factor_exempt
from leukweb import views
from leukweb.api.errors import api_not_found

admin.site.site_header = "LeukWeb administration"
# An outage of the database or the storage answers 503, anything else 500.
handler500 = "leukweb.views.server_error"
# Refused before any view (too many files, a malformed request): said plainly.
handler400 = "leukweb.views.bad_request"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", authentication_views.LoginView.as_view(), name="login"),
    path("logout/", second_factor_exempt(auth_views.LogoutView.as_view()), name="logout"),
    path("", include("authentication.urls")),
    # Before the admin's own: its login would skip the second factor.
    path("admin/login/", authentication_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include("leukweb.api.urls")),
    path("", include("clinic.urls")),
    path("", include("reviews.urls")),
    path("", include("registry.urls")),
    # Last: an unknown /api/ path answers in the API's JSON error shape, not HTML.
    re_path(r"^api/", api_not_found, name="api-not-found"),
]
