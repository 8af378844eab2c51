"""Sign-in pages: the password, the second factor and its enrolment, recovery codes; the
account page with the user's API tokens; the lockout page."""

from base64 import b32encode
from http import HTTPStatus
from math import ceil

import django_otp
import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.settings import knox_settings

from accounts import policies
from accounts.http import AuthenticatedHttpRequest
from authentication import selectors, services
from authentication.forms import CodeForm, EnrolmentForm
from authentication.http import SECOND_FACTOR_PENDING, client_address, second_factor_missing
from authentication.middleware import second_factor_exempt

# The recovery codes just made, kept in the session only until the page shows them once.
FRESH_CODES = "recovery_codes_fresh"
FRESH_CODES_NEXT = "recovery_codes_next"


def _next(request: HttpRequest) -> str:
    """Where to go after this step: the ``next`` asked for, when it is on this site."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return settings.LOGIN_REDIRECT_URL


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def _verified(request: HttpRequest, device) -> None:
    """The session has passed its second factor: a new session key for the higher trust."""
    django_otp.login(request, device)
    request.session.pop(SECOND_FACTOR_PENDING, None)
    request.session.cycle_key()


class LoginView(auth_views.LoginView):
    """The password step. Someone with an authenticator is asked for a code next; a
    reviewer or administrator without one is sent to enrol."""

    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        response = super().form_valid(form)
        if selectors.authenticator_of(user) is not None:
            self.request.session[SECOND_FACTOR_PENDING] = True
            return redirect(_with_next("account:verify", self.get_success_url()))
        if policies.second_factor_required(user):
            return redirect(_with_next("account:enrol", self.get_success_url()))
        return response


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """What django-axes answers to a locked-out login (AXES_LOCKOUT_CALLABLE): the login
    page saying for how long. The same words whether or not the username exists."""
    if request.path_info.startswith("/api/") and original_response is not None:
        return original_response  # the token endpoint answers in the API's own shape
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    remaining = selectors.lockout_remaining(username=username, address=client_address(request))
    seconds = max(60, ceil(remaining.total_seconds()))
    response = render(
        request,
        "registration/login.html",
        {
            "form": AuthenticationForm(request),
            "lockout_minutes": ceil(seconds / 60),
            "next": _next(request),
        },
        status=HTTPStatus.TOO_MANY_REQUESTS,
    )
    response["Retry-After"] = str(seconds)
    return response


@login_not_required
def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin signs in through the site's own login, second factor included."""
    return redirect_to_login(_next(request) if request.GET.get("next") else reverse("admin:index"))


@never_cache
@second_factor_exempt
def verify(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The second step of a login: a code from the authenticator app or a recovery code."""
    next_url = _next(request)
    if not second_factor_missing(request):
        return redirect(next_url)
    if selectors.authenticator_of(request.user) is None:
        return redirect(_with_next("account:enrol", next_url))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            check = services.code_check(
                user=request.user,
                code=form.cleaned_data["code"],
                address=client_address(request),
                via="login",
            )
        except services.SecondFactorThrottled as exc:
            form.add_error("code", f"Too many wrong codes: wait {exc.seconds} s, then try again.")
        else:
            if check is None:
                form.add_error("code", "That code is not right. Type the one the app shows now.")
            else:
                _verified(request, check.device)
                if check.recovery_code:
                    messages.warning(
                        request,
                        f"You used a recovery code: {check.recovery_codes_left} left. "
                        "Make new ones on your account page when you run low.",
                    )
                return redirect(next_url)
    return render(request, "authentication/verify.html", {"form": form, "next": next_url})


def _qr_svg(device: TOTPDevice) -> str:
    """The authenticator's set-up link as an inline SVG QR code (no script, no request)."""
    image = qrcode.make(
        device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2
    )
    svg = image.to_string(encoding="unicode")
    return svg[svg.index("<svg") :]


@never_cache
@second_factor_exempt
def enrol(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Set up an authenticator app: scan the QR code or type the key, confirm with a code.
    Replacing one needs a session that passed the old one."""
    next_url = _next(request)
    existing = selectors.authenticator_of(request.user)
    if existing is not None and second_factor_missing(request):
        return redirect(_with_next("account:verify", next_url))
    device = services.enrolment_start(user=request.user)
    form = EnrolmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.enrolment_confirm(
                user=request.user,
                device=device,
                code=form.cleaned_data["code"],
                address=client_address(request),
            )
        except services.SecondFactorThrottled as exc:
            form.add_error("code", f"Too many wrong codes: wait {exc.seconds} s, then try again.")
        else:
            if codes is None:
                form.add_error("code", "That code is not right. Type the one the app shows now.")
            else:
                _verified(request, device)
                request.session[FRESH_CODES] = codes
                request.session[FRESH_CODES_NEXT] = next_url
                return redirect("account:recovery_codes")
    key = b32encode(device.bin_key).decode()
    return render(
        request,
        "authentication/enrol.html",
        {
            "form": form,
            "next": next_url,
            "qr_svg": mark_safe(_qr_svg(device)),  # noqa: S308 - generated here, no user text
            "key_groups": [key[i : i + 4] for i in range(0, len(key), 4)],
            "replacing": existing is not None,
            "required": policies.second_factor_required(request.user),
        },
    )


@never_cache
def recovery_codes(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The recovery codes just made, shown this once."""
    codes = request.session.pop(FRESH_CODES, None)
    next_url = request.session.pop(FRESH_CODES_NEXT, reverse("account:home"))
    if not codes:
        messages.info(request, "Recovery codes are shown only once, when they are made.")
        return redirect("account:home")
    return render(
        request,
        "authentication/recovery_codes.html",
        {"codes": [f"{code[:4]}-{code[4:]}" for code in codes], "next": next_url},
    )


@require_POST
def recovery_codes_renew(request: AuthenticatedHttpRequest) -> HttpResponse:
    try:
        codes = services.recovery_codes_renew(user=request.user, address=client_address(request))
    except ValueError:
        return redirect("account:enrol")
    request.session[FRESH_CODES] = codes
    request.session[FRESH_CODES_NEXT] = reverse("account:home")
    return redirect("account:recovery_codes")


@require_POST
def second_factor_off(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if not policies.second_factor_optional(request.user):
        messages.error(request, "Your role needs a second factor: it stays on.")
    elif not form.is_valid():
        messages.error(request, "Type a current code to turn two-step verification off.")
    else:
        try:
            done = services.second_factor_turn_off(
                user=request.user, code=form.cleaned_data["code"], address=client_address(request)
            )
        except services.SecondFactorThrottled as exc:
            messages.error(request, f"Too many wrong codes: wait {exc.seconds} s.")
        else:
            if done:
                messages.success(request, "Two-step verification is off.")
            else:
                messages.error(request, "That code is not right: two-step verification is on.")
    return redirect("account:home")


@never_cache
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The signed-in user's own page: second factor, API tokens, password, session."""
    user = request.user
    return render(
        request,
        "authentication/account.html",
        {
            "authenticator": selectors.authenticator_of(user),
            "recovery_codes_left": selectors.recovery_codes_left(user),
            "required": policies.second_factor_required(user),
            "tokens": selectors.tokens_of(user),
            "token_hours": int(knox_settings.TOKEN_TTL.total_seconds() // 3600),
            "idle_minutes": settings.SESSION_IDLE_TIMEOUT // 60,
            "code_form": CodeForm(),
        },
    )


@require_POST
def token_revoke(request: AuthenticatedHttpRequest, prefix: str) -> HttpResponse:
    token = selectors.tokens_of(request.user).filter(token_key=prefix).first()
    if token is None:
        raise Http404("No such token of yours.")
    services.token_revoke(actor=request.user, token=token, reason="revoked by its owner")
    messages.success(request, f"Token {prefix}… is revoked: it no longer works.")
    return redirect("account:home")


@require_POST
def tokens_revoke_all(request: AuthenticatedHttpRequest) -> HttpResponse:
    count = services.tokens_revoke_all(
        user=request.user, actor=request.user, reason="revoked by its owner"
    )
    messages.success(request, f"{count} token{'s' if count != 1 else ''} revoked.")
    return redirect("account:home")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's, with the password rules; the user's API tokens are revoked with it."""

    template_name = "authentication/password_change.html"
    success_url = reverse_lazy("account:home")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is changed; your API tokens are revoked.")
        return response


@never_cache
def session_keepalive(request: AuthenticatedHttpRequest) -> HttpResponse:
    """'Stay logged in' on the idle warning: a request from the person, nothing more."""
    return HttpResponse(status=HTTPStatus.NO_CONTENT)
