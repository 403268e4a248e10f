"""Accounts: sign up through the API, the API token (made, revoked), log out everywhere."""

from __future__ import annotations

import binascii
import os

from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from compositions.auth import password_fingerprint
from compositions.errors import RequestInvalid
from compositions.models import ApiToken


@transaction.atomic
def user_register(*, username: str, password: str) -> AbstractBaseUser:
    """Create an account; RequestInvalid names every bad field (`username`, `password`).

    The checks are the sign-up page's: Django's user name rules and the password validators.
    """
    form = UserCreationForm({"username": username, "password1": password, "password2": password})
    if not form.is_valid():
        errors: dict[str, list[str]] = {}
        for field, messages in form.errors.items():
            # The API takes one password; the form's two fields report to it.
            name = "password" if field.startswith("password") else field
            errors.setdefault(name, []).extend(str(m) for m in messages if str(m) not in errors.get(name, []))
        raise RequestInvalid(errors)
    user: AbstractBaseUser = form.save()
    return user


@transaction.atomic
def api_token_get_or_create(*, user: AbstractBaseUser) -> ApiToken:
    """The user's API token, made anew when there is none or the password changed since."""
    fingerprint = password_fingerprint(user)
    token = ApiToken.objects.filter(user=user).first()
    if token is not None and constant_time_compare(token.password_fingerprint, fingerprint):
        return token
    ApiToken.objects.filter(user=user).delete()
    return ApiToken.objects.create(
        key=binascii.hexlify(os.urandom(20)).decode(), user=user, password_fingerprint=fingerprint
    )


@transaction.atomic
def api_token_delete(*, user: AbstractBaseUser) -> int:
    """Revoke `user`'s API token (signing in again makes a new one); returns how many were deleted."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


@transaction.atomic
def user_logout_everywhere(*, user: AbstractBaseUser) -> int:
    """End every session and API token of `user`; returns how many sessions ended."""
    api_token_delete(user=user)
    # Sessions do not index their user: look inside the live ones (a scan of the session table).
    mine = [
        session.session_key
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    Session.objects.filter(session_key__in=mine).delete()
    return len(mine)
