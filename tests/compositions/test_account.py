"""The account page (tokens, e-mail, password), password reset by e-mail, and deleting an account."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from compositions.models import ApiToken, Composition, CompositionVersion, Primer
from compositions.services.accounts import api_token_create
from tests.conftest import PASSWORD, midi_bytes

NEW_PASSWORD = "another-Long-pa55word"


def _works(key: str) -> bool:
    status = APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/auth/tokens/").status_code
    assert status in (200, 401)
    return status == 200


# -- the page -----------------------------------------------------------------------------------------


def test_the_account_page_lists_the_users_tokens_with_a_revoke_button_and_never_a_key(
        user: User, other_user: User, user_client: Client) -> None:
    phone, laptop = api_token_create(user=user, name="Alice's phone"), api_token_create(user=user, name="Laptop")
    api_token_create(user=other_user, name="Mallory's tablet")
    response = user_client.get(reverse("account"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Alice&#x27;s phone" in page and "Laptop" in page and "Mallory" not in page
    assert phone.key[:10] in page and laptop.key[:10] in page
    assert phone.key not in page and laptop.key not in page
    for issued in (phone, laptop):
        assert reverse("account-token-revoke", args=[issued.token.id]) in page
    assert 'name="csrfmiddlewaretoken"' in page
    for name in ("password_change", "logout-everywhere", "account-delete"):
        assert reverse(name) in page


def test_the_header_links_to_the_account_page(user_client: Client) -> None:
    assert f'href="{reverse("account")}"' in user_client.get(reverse("compositions:list")).content.decode()


@pytest.mark.parametrize("name", ["account", "account-delete"])
def test_anonymous_visitors_are_sent_to_log_in(client: Client, db: None, name: str) -> None:
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_anonymous_visitors_cannot_make_or_revoke_tokens(client: Client, user: User) -> None:
    issued = api_token_create(user=user)
    assert client.post(reverse("account-token-create"), {"name": "x"}).status_code == 302
    assert client.post(reverse("account-token-revoke", args=[issued.token.id])).status_code == 302
    assert ApiToken.objects.filter(user=user).count() == 1 and _works(issued.key)


def test_a_token_made_on_the_page_is_shown_once_and_works(user: User, user_client: Client) -> None:
    response = user_client.post(reverse("account-token-create"), {"name": "Build server"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=user)
    assert token.name == "Build server"
    key = re.search(r'id="new-token"[^>]*value="([^"]+)"', response.content.decode())
    assert key is not None and key.group(1).startswith(token.prefix) and _works(key.group(1))
    again = user_client.get(reverse("account")).content.decode()
    assert "Build server" in again and key.group(1) not in again


def test_a_token_needs_a_name_on_the_page(user: User, user_client: Client) -> None:
    response = user_client.post(reverse("account-token-create"), {"name": ""})
    assert response.status_code == 400 and not ApiToken.objects.filter(user=user).exists()


def test_revoking_on_the_page_ends_that_token_only(user: User, user_client: Client) -> None:
    phone, laptop = api_token_create(user=user, name="Phone"), api_token_create(user=user, name="Laptop")
    response = user_client.post(reverse("account-token-revoke", args=[phone.token.id]))
    assert response.status_code == 302 and response["Location"] == reverse("account")
    assert not _works(phone.key) and _works(laptop.key)


def test_another_users_token_cannot_be_revoked_on_the_page(other_user: User, user_client: Client) -> None:
    theirs = api_token_create(user=other_user)
    assert user_client.post(reverse("account-token-revoke", args=[theirs.token.id])).status_code == 404
    assert _works(theirs.key)


def test_the_e_mail_address_is_saved_only_with_the_password(user: User, user_client: Client) -> None:
    refused = user_client.post(reverse("account-email"), {"email": "thief@example.com", "password": "wrong"})
    assert refused.status_code == 400 and "not your password" in refused.content.decode()
    user.refresh_from_db()
    assert user.email == ""
    saved = user_client.post(reverse("account-email"), {"email": "alice@example.com", "password": PASSWORD})
    assert saved.status_code == 302
    user.refresh_from_db()
    assert user.email == "alice@example.com"


# -- password change and reset ---------------------------------------------------------------------------


def _logged_in(user: User) -> Client:
    client = Client()
    assert client.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
    return client


def test_a_password_change_ends_the_other_sessions_and_every_token_but_not_this_session(user: User) -> None:
    here, elsewhere = _logged_in(user), _logged_in(user)
    keys = [api_token_create(user=user).key for _ in range(2)]
    page = here.get(reverse("password_change"))
    assert page.status_code == 200 and "revokes every API token" in page.content.decode()
    response = here.post(reverse("password_change"), {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    assert here.get(reverse("account")).status_code == 200
    assert elsewhere.get(reverse("account")).status_code == 302
    assert not any(_works(key) for key in keys)


def test_the_login_page_links_to_the_password_reset(client: Client, db: None) -> None:
    page = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}"' in page and "Forgot your password?" in page


def test_a_password_reset_by_e_mail_sets_the_password_and_kills_every_token(user: User, client: Client) -> None:
    user.email = "alice@example.com"
    user.save()
    key = api_token_create(user=user).key
    elsewhere = _logged_in(user)
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert client.get(reverse("password_reset_done")).status_code == 200
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"] and message.subject == "Reset your musicgen password"
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message.body)
    assert link is not None and user.username in message.body

    form = client.get(link.group(1), follow=True)  # Django swaps the token for a session and redirects
    assert form.status_code == 200 and form.context["validlink"]
    done = client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    assert client.get(reverse("password_reset_complete")).status_code == 200

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not _works(key)
    assert elsewhere.get(reverse("account")).status_code == 302
    # The link works once.
    assert not client.get(link.group(1), follow=True).context["validlink"]


def test_a_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client: Client, user: User) -> None:
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_the_reset_form_sends_no_one_a_flood_of_mail(client: Client, user: User, settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_HOUR = 2
    user.email = "alice@example.com"
    user.save()
    codes = [client.post(reverse("password_reset"), {"email": "alice@example.com"}).status_code for _ in range(3)]
    assert codes == [302, 302, 429] and len(mail.outbox) == 2
    # Another address asking for the same account is held back by the e-mail's own count.
    elsewhere = Client(REMOTE_ADDR="10.7.7.7")
    refused = elsewhere.post(reverse("password_reset"), {"email": "Alice@Example.com"})
    assert refused.status_code == 429 and b"try again in an hour" in refused.content and len(mail.outbox) == 2


# -- deleting the account ---------------------------------------------------------------------------------


@pytest.fixture
def belongings(user: User, composition_factory: Callable[..., Composition],
               version_factory: Callable[..., CompositionVersion]) -> dict[str, Any]:
    """Two pieces of `user` (one with two versions), an uploaded primer and a token; their stored files."""
    first = composition_factory(user, files=True, status=CompositionVersion.Status.DONE)
    version_factory(first)
    second = composition_factory(user, files=True, status=CompositionVersion.Status.DONE)
    primer = Primer(user=user, notes=3, seconds=1.5)
    primer.file.save("upload.mid", ContentFile(midi_bytes([60, 62, 64])))
    files = [getattr(version, field).name for version in CompositionVersion.objects.filter(composition__user=user)
             for field in CompositionVersion.FILE_FIELDS if getattr(version, field)]
    files.append(primer.file.name)
    assert len(files) == 7 and all(default_storage.exists(name) for name in files)
    return {"pieces": [first.id, second.id], "files": files, "key": api_token_create(user=user).key}


@pytest.fixture
def theirs(other_user: User, composition_factory: Callable[..., Composition]) -> Composition:
    return composition_factory(other_user, files=True, status=CompositionVersion.Status.DONE)


def _gone(user: User, belongings: dict[str, Any]) -> None:
    assert not User.objects.filter(id=user.id).exists()
    assert not Composition.objects.filter(id__in=belongings["pieces"]).exists()
    assert not CompositionVersion.objects.filter(composition_id__in=belongings["pieces"]).exists()
    assert not Primer.objects.filter(user_id=user.id).exists() and not ApiToken.objects.filter(user_id=user.id).exists()
    assert not any(default_storage.exists(name) for name in belongings["files"])


def _kept(user: User, belongings: dict[str, Any]) -> None:
    assert User.objects.get(id=user.id).is_active
    assert Composition.objects.filter(id__in=belongings["pieces"]).count() == 2
    assert CompositionVersion.objects.filter(composition_id__in=belongings["pieces"]).count() == 3
    assert all(default_storage.exists(name) for name in belongings["files"])
    assert _works(belongings["key"])


def _untouched(piece: Composition) -> None:
    version = CompositionVersion.objects.get(composition=piece)
    assert default_storage.exists(version.mp3_file.name) and default_storage.exists(version.midi_file.name)


def test_deleting_the_account_on_the_page_removes_the_user_pieces_versions_and_files_and_signs_out(
        user: User, user_client: Client, belongings: dict[str, Any], theirs: Composition) -> None:
    page = user_client.get(reverse("account-delete"))
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    response = user_client.post(reverse("account-delete"), {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    _gone(user, belongings)
    assert not _works(belongings["key"])
    assert user_client.get(reverse("compositions:list")).status_code == 302  # signed out
    _untouched(theirs)


def test_a_wrong_password_on_the_page_keeps_everything(
        user: User, user_client: Client, belongings: dict[str, Any]) -> None:
    response = user_client.post(reverse("account-delete"), {"password": "wrong"})
    assert response.status_code == 400 and "not your password" in response.content.decode()
    _kept(user, belongings)
    assert user_client.get(reverse("account")).status_code == 200  # still signed in


def test_deleting_the_account_through_the_api(user: User, belongings: dict[str, Any], theirs: Composition) -> None:
    api = APIClient(HTTP_AUTHORIZATION=f"Token {belongings['key']}")
    wrong = api.delete("/api/v1/auth/account/", {"password": "wrong"}, format="json")
    assert wrong.status_code == 400 and "password" in wrong.json()["errors"]
    assert api.delete("/api/v1/auth/account/", {}, format="json").status_code == 400
    _kept(user, belongings)
    assert api.delete("/api/v1/auth/account/", {"password": PASSWORD}, format="json").status_code == 204
    _gone(user, belongings)
    assert api.get("/api/v1/compositions/").status_code == 401
    _untouched(theirs)
    assert APIClient().delete("/api/v1/auth/account/", {"password": PASSWORD}, format="json").status_code == 401
