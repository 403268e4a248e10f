"""Who may sign in: login throttling, and API tokens that die with the password.

Both the login page and the API's token endpoint authenticate through `ThrottledModelBackend`,
so a guesser gets the same few tries on either door. Counters live in the shared cache (Redis,
or the database), keyed by user name and by client address.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework import authentication, exceptions

from compositions.models import ApiToken


def _keys(request: HttpRequest | None, username: str | None) -> list[str]:
    address = (request.META.get("REMOTE_ADDR", "") if request is not None else "") or "unknown"
    keys = [f"login-fail:addr:{address}"]
    if username:
        keys.append(f"login-fail:user:{username.strip().lower()}")
    return keys


def login_locked_for(request: HttpRequest | None, username: str | None) -> int:
    """Seconds until this user name or address may try again; 0 when it may now."""
    for key in _keys(request, username):
        if (cache.get(key) or 0) >= settings.LOGIN_ATTEMPTS:
            return settings.LOGIN_LOCKOUT_SECONDS
    return 0


def _record_failure(request: HttpRequest | None, username: str | None) -> None:
    for key in _keys(request, username):
        # add() then incr() is atomic in both cache backends; the window starts at the first failure.
        cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


def _clear_failures(request: HttpRequest | None, username: str | None) -> None:
    cache.delete(f"login-fail:user:{(username or '').strip().lower()}")


class ThrottledModelBackend(ModelBackend):
    """ModelBackend that refuses everyone, right password or not, after LOGIN_ATTEMPTS failures."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> AbstractBaseUser | None:
        if login_locked_for(request, username):
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            _record_failure(request, username)
        else:
            _clear_failures(request, username)
        return user


def password_fingerprint(user: AbstractBaseUser) -> str:
    """A digest of the user's password hash: it changes whenever the password does."""
    return salted_hmac("compositions.ApiToken", user.password, algorithm="sha256").hexdigest()


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token scheme over ApiToken: a token made before the last password change is dead."""

    model = ApiToken

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, ApiToken]:
        user, token = super().authenticate_credentials(key)
        if not constant_time_compare(token.password_fingerprint, password_fingerprint(user)):
            raise exceptions.AuthenticationFailed("This token was revoked by a password change; sign in again.")
        return user, token
