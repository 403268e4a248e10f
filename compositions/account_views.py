"""The account page: API tokens, e-mail address, password, exporting everything, signing out everywhere,
deleting the account."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compositions import exporting
from compositions.auth import password_resets_allowed
from compositions.errors import RequestInvalid
from compositions.forms import AccountDeleteForm, ApiTokenForm, EmailForm
from compositions.models import ApiToken
from compositions.services import accounts, exports


def _show_errors(form: forms.Form, exc: RequestInvalid) -> None:
    for field, field_messages in exc.errors.items():
        for message in field_messages:
            form.add_error(field if field in form.fields else None, message)


def _account_page(request: HttpRequest, *, token_form: ApiTokenForm | None = None,
                  email_form: EmailForm | None = None, issued: accounts.IssuedToken | None = None,
                  status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {
        "tokens": ApiToken.objects.of_current_password(request.user),
        "now": timezone.now(),
        "token_form": token_form or ApiTokenForm(),
        "email_form": email_form or EmailForm(initial={"email": request.user.email}),
        "issued": issued,
        "export": exporting.account_export_latest(user=request.user),
        "export_keep_hours": settings.EXPORT_KEEP_HOURS,
    }
    return render(request, "registration/account.html", context, status=status)


# never_cache on every page that may show a key or a form with the password: no copy in any cache.
@never_cache
@login_required
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request)


@never_cache
@login_required
@require_POST
def account_token_create(request: HttpRequest) -> HttpResponse:
    """Make a token and show its key on this one answer; it is not kept anywhere to show again."""
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _account_page(request, token_form=form, status=400)
    try:
        issued = accounts.api_token_create(user=request.user, name=form.cleaned_data["name"])
    except RequestInvalid as exc:
        _show_errors(form, exc)
        return _account_page(request, token_form=form, status=400)
    return _account_page(request, issued=issued)


@login_required
@require_POST
def account_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if not accounts.api_token_revoke(user=request.user, token_id=token_id):
        raise Http404("You have no token with this id.")
    messages.success(request, "The token is revoked: requests made with it are refused from now on.")
    return redirect("account")


@never_cache
@login_required
@require_POST
def account_email(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST)
    if not form.is_valid():
        return _account_page(request, email_form=form, status=400)
    try:
        accounts.user_email_set(user=request.user, email=form.cleaned_data["email"],
                                password=form.cleaned_data["password"])
    except RequestInvalid as exc:
        _show_errors(form, exc)
        return _account_page(request, email_form=form, status=400)
    messages.success(request, "Your e-mail address is saved." if form.cleaned_data["email"]
                     else "Your e-mail address is removed: a forgotten password can no longer be reset.")
    return redirect("account")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request: HttpRequest) -> HttpResponse:
    """Ask for the password, then delete the account with everything in it, and sign out."""
    form = AccountDeleteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            accounts.user_delete(user=request.user, password=form.cleaned_data["password"])
        except RequestInvalid as exc:
            _show_errors(form, exc)
        else:
            logout(request)
            messages.success(request, "Your account, your pieces and their files are deleted.")
            return redirect("home")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/account_delete.html", {"form": form}, status=status)


@login_required
@require_POST
def account_export_create(request: HttpRequest) -> HttpResponse:
    """Ask for an export of everything; the account page shows its progress, then its download link."""
    requested = exports.account_export_request(user=request.user)
    if requested.created:
        messages.success(request, "Your export is being made: it appears below when it is ready.")
    else:
        messages.info(request, "Your export is being made already: it appears below when it is ready.")
    return redirect(reverse("account") + "#export")


@login_required
@require_GET
def account_export_download(request: HttpRequest, public_id: uuid.UUID) -> FileResponse | HttpResponse:
    """The zip of one of the user's exports: 404 for anyone else's, 409 while it is made, 410 once gone."""
    export = exporting.account_export_get_for_user(user=request.user, public_id=public_id)
    unavailable = exporting.account_export_unavailable(export=export)
    if unavailable is not None:
        code, reason = unavailable
        return HttpResponse(reason, status=code, content_type="text/plain; charset=utf-8")
    return exporting.account_export_file_response(export=export)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset form, with a limit on the e-mails it sends (per address asking, per e-mail asked for)."""

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if not password_resets_allowed(self.request, form.cleaned_data["email"]):
            form.add_error(None, "Too many reset e-mails were asked for; try again in an hour.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().form_valid(form)
