"""Who may sign in: login throttling, and API tokens kept as digests that die with the password.

Both the login page and the API's token endpoint authenticate through `ThrottledModelBackend`,
so a guesser gets the same few tries on either door. Counters live in the shared cache (Redis,
or the database), keyed by user name and by client address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare
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


def count_in_window(key: str, seconds: int) -> int:
    """Add one to the shared counter `key`, which lasts `seconds` from its first count; the new count.

    add() then incr() is atomic in both cache backends (Redis, the database), so processes on
    every host count together."""
    cache.add(key, 0, timeout=seconds)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between the two calls
        cache.set(key, 1, timeout=seconds)
        return 1


def _record_failure(request: HttpRequest | None, username: str | None) -> None:
    for key in _keys(request, username):
        count_in_window(key, settings.LOGIN_LOCKOUT_SECONDS)


def password_resets_allowed(request: HttpRequest, email: str) -> bool:
    """Whether another reset e-mail may go out now: at most PASSWORD_RESETS_PER_HOUR per address
    asking and per e-mail address asked for, so that the form sends no one a flood of mail."""
    address = request.META.get("REMOTE_ADDR", "") or "unknown"
    counts = [count_in_window(f"reset:addr:{address}", 3600),
              count_in_window(f"reset:email:{email.strip().lower()}", 3600)]
    return max(counts) <= settings.PASSWORD_RESETS_PER_HOUR


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


# Marks a key as this site's, for the people and secret scanners who find one pasted somewhere.
API_TOKEN_KEY_PREFIX = "mgt_"
# last_used_at is written at most this often per token: one write a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_key_new() -> str:
    """A new API key: the marker and 256 random bits (43 URL-safe characters)."""
    return API_TOKEN_KEY_PREFIX + secrets.token_urlsafe(32)


def api_token_digest(key: str) -> str:
    """What the database keeps of an API key: its SHA-256, in hex.

    A plain hash, not an HMAC with SECRET_KEY: the keys are random (256 bits; the first keys, 160),
    so there is nothing to guess from a digest and nothing a salt or a pepper would add, and the
    digest does not change when SECRET_KEY is rotated (the migration that hashed the first keys
    needs no secret either). This is what GitHub and django-rest-knox do.
    """
    return hashlib.sha256(key.encode()).hexdigest()


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>` scheme over ApiToken, where only the key's digest is stored.

    A token that expired, or was made before the last password change, is refused with a 401 that
    says why.
    """

    model = ApiToken

    def authenticate_credentials(self, key: str) -> tuple[AbstractBaseUser, ApiToken]:
        digest = api_token_digest(key)
        candidates = ApiToken.objects.select_related("user").filter(prefix=key[: ApiToken.PREFIX_LENGTH])
        token = next((t for t in candidates if hmac.compare_digest(t.digest, digest)), None)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        now = timezone.now()
        if token.expires_at is not None and token.expires_at <= now:
            raise exceptions.AuthenticationFailed(
                f"This token expired on {timezone.localtime(token.expires_at):%Y-%m-%d}; sign in again for a new one.")
        if not constant_time_compare(token.password_fingerprint, ApiToken.fingerprint_of(user)):
            raise exceptions.AuthenticationFailed("This token was revoked by a password change; sign in again.")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            # Bookkeeping of the sign-in itself, as Django's update_last_login is: one UPDATE, no save().
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return user, token
