"""Accounts: sign up through the API, API tokens (made, revoked), log out everywhere, e-mail, deletion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from compositions.auth import api_token_digest, api_token_key_new
from compositions.errors import RequestInvalid
from compositions.models import AccountExport, ApiToken, Composition, Primer
from compositions.services.composing import composition_delete

DEFAULT_TOKEN_NAME = "API token"
# A client that signs in on every start and never revokes would pile up tokens: past this many,
# making one revokes the user's least recently used (GitHub does the same with OAuth tokens).
MAX_TOKENS_PER_USER = 100


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


@dataclass(frozen=True)
class IssuedToken:
    """A token just made: its row, and its key, which exists only here and is shown to the user once."""

    token: ApiToken
    key: str


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str = "") -> IssuedToken:
    """A new token for one of `user`'s devices, named `name` ("API token" when blank).

    Tokens that no longer work (expired, or made before the last password change) are cleared out,
    and past MAX_TOKENS_PER_USER the least recently used ones are revoked.
    """
    name = " ".join(name.split())  # one line, whatever the client sent
    if len(name) > ApiToken._meta.get_field("name").max_length:
        raise RequestInvalid.of("name", "Ensure this field has no more than 100 characters.")
    now = timezone.now()
    fingerprint = ApiToken.fingerprint_of(user)
    ApiToken.objects.filter(user=user).filter(~Q(password_fingerprint=fingerprint) | Q(expires_at__lte=now)).delete()
    kept = ApiToken.objects.filter(user=user).order_by(Coalesce("last_used_at", "created").desc(), F("id").desc())
    ApiToken.objects.filter(id__in=list(kept.values_list("id", flat=True)[MAX_TOKENS_PER_USER - 1:])).delete()
    key = api_token_key_new()
    token = ApiToken.objects.create(
        user=user, name=name or DEFAULT_TOKEN_NAME, prefix=key[: ApiToken.PREFIX_LENGTH], digest=api_token_digest(key),
        password_fingerprint=fingerprint,
        expires_at=now + timedelta(days=settings.API_TOKEN_DAYS) if settings.API_TOKEN_DAYS else None,
    )
    return IssuedToken(token=token, key=key)


@transaction.atomic
def user_register_with_token(*, username: str, password: str, token_name: str = "") -> IssuedToken:
    """Create an account and its first token, or neither (RequestInvalid as `user_register` and `api_token_create`)."""
    return api_token_create(user=user_register(username=username, password=password), name=token_name)


@transaction.atomic
def api_token_revoke(*, user: AbstractBaseUser, token_id: int) -> bool:
    """Revoke one of `user`'s tokens; False when `user` has no token `token_id`."""
    deleted, _ = ApiToken.objects.filter(user=user, id=token_id).delete()
    return bool(deleted)


@transaction.atomic
def api_token_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revoke every token of `user` (signing in again makes a new one); returns how many there were."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


@transaction.atomic
def user_logout_everywhere(*, user: AbstractBaseUser) -> int:
    """End every session and API token of `user`; returns how many sessions ended."""
    api_token_revoke_all(user=user)
    # Sessions do not index their user: look inside the live ones (a scan of the session table).
    mine = [
        session.session_key
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    # Through the session engine, not the table: cached_db keeps a copy in the cache that a
    # deleted row alone would leave working.
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for key in mine:
        store(session_key=key).delete()
    return len(mine)


def _password_check(user: AbstractBaseUser, password: str) -> None:
    if not user.check_password(password):
        raise RequestInvalid.of("password", "This is not your password.")


@transaction.atomic
def user_email_set(*, user: AbstractBaseUser, email: str, password: str) -> None:
    """Set the address password reset e-mails go to ("" for none); the password confirms it is the owner."""
    _password_check(user, password)
    email = email.strip()
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise RequestInvalid.of("email", str(exc.messages[0])) from exc
    user.email = email
    user.save(update_fields=["email"])


def user_delete(*, user: AbstractBaseUser, password: str) -> None:
    """Delete `user` with every piece, version, upload, export and stored file, after checking the password.

    Not one transaction: each piece goes as `composition_delete` deletes it, its files after its
    rows are committed. Every session and token ends first, so that no new piece arrives while the
    old ones go; should a step fail, the owner can sign in again and finish.
    """
    _password_check(user, password)
    user_logout_everywhere(user=user)
    for composition in Composition.objects.filter(user=user).order_by("id"):
        composition_delete(composition=composition)
    with transaction.atomic():
        uploads = list(Primer.objects.filter(user=user).values_list("file", flat=True))
        # Locked: an export that finishes meanwhile waits, then finds its row gone and deletes its zip.
        uploads += AccountExport.objects.select_for_update().filter(user=user).values_list("file", flat=True)
        user.delete()  # with it, by cascade, any row made after the loop (its files are left to verify_media)
    for name in uploads:
        if name:
            default_storage.delete(name)
