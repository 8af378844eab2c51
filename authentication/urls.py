from django.urls import path

from authentication import views

app_name = "account"

urlpatterns = [
    path("login/verify/", views.verify, name="verify"),
    path("account/", views.account, name="home"),
    path("account/session/", views.session_keepalive, name="keepalive"),
    path("account/two-factor/", views.enrol, name="enrol"),
    path("account/two-factor/recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path(
        "account/two-factor/recovery-codes/new/",
        views.recovery_codes_renew,
        name="recovery_codes_renew",
    ),
    path("account/two-factor/off/", views.second_factor_off, name="second_factor_off"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password"),
    path("account/tokens/revoke-all/", views.tokens_revoke_all, name="tokens_revoke_all"),
    path("account/tokens/<str:prefix>/revoke/", views.token_revoke, name="token_revoke"),
]
