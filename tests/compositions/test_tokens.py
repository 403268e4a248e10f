"""API tokens: kept as digests, one per device, named, expiring, listed and revoked one by one."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient

from compositions.models import ApiToken
from compositions.services import accounts
from compositions.services.accounts import api_token_create
from tests.conftest import PASSWORD


def _api(key: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Token {key}")


def _sign_in(user: User, *, user_agent: str = "", **extra: Any) -> dict[str, Any]:
    response = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD, **extra},
                                format="json", HTTP_USER_AGENT=user_agent)
    assert response.status_code == 200, response.content
    return dict(response.json())


# -- what is stored -----------------------------------------------------------------------------------


def test_the_database_keeps_a_digest_of_the_key_and_never_the_key(user: User) -> None:
    made = _sign_in(user)
    key = made["token"]
    assert key.startswith("mgt_") and len(key) >= 44
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM compositions_apitoken")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert not any(key in str(value) for value in rows[0])
    token = ApiToken.objects.get(id=made["id"])
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:ApiToken.PREFIX_LENGTH] == made["prefix"]
    assert _api(key).get("/api/v1/auth/tokens/").status_code == 200


def test_a_key_that_shares_a_real_prefix_but_not_the_rest_is_refused(user: User) -> None:
    key = api_token_create(user=user).key
    forged = key[:ApiToken.PREFIX_LENGTH] + "x" * (len(key) - ApiToken.PREFIX_LENGTH)
    response = _api(forged).get("/api/v1/auth/tokens/")
    assert response.status_code == 401 and response.json()["detail"] == "Invalid token."


# -- making one: name and expiry ---------------------------------------------------------------------


def test_each_sign_in_makes_a_named_token_that_expires_after_api_token_days(user: User, settings: Any) -> None:
    settings.API_TOKEN_DAYS = 30
    made = _sign_in(user, name="Alice's phone")
    assert made["name"] == "Alice's phone"
    expires = timezone.now() + timedelta(days=30)
    assert abs(ApiToken.objects.get(id=made["id"]).expires_at - expires) < timedelta(minutes=1)
    assert made["expires_at"] is not None


def test_api_token_days_0_makes_tokens_that_never_expire(user: User, settings: Any) -> None:
    settings.API_TOKEN_DAYS = 0
    made = _sign_in(user)
    assert made["expires_at"] is None and ApiToken.objects.get(id=made["id"]).expires_at is None


def test_without_a_name_the_token_is_named_after_the_client_or_api_token(user: User) -> None:
    assert _sign_in(user, user_agent="curl/8.5.0")["name"] == "curl/8.5.0"
    app = "Musicgen/2.1 (iPhone; iOS 17.2) CFNetwork/1490"
    assert _sign_in(user, user_agent=app)["name"] == "Musicgen/2.1 (iPhone; iOS"
    assert _sign_in(user)["name"] == "API token"


def test_register_returns_its_first_token_and_a_bad_name_creates_no_account(db: None) -> None:
    api = APIClient()
    refused = api.post("/api/v1/auth/register/", {"username": "newbie", "password": PASSWORD, "name": "x" * 101},
                       format="json")
    assert refused.status_code == 400 and "name" in refused.json()["errors"]
    assert not User.objects.filter(username="newbie").exists()
    created = api.post("/api/v1/auth/register/", {"username": "newbie", "password": PASSWORD, "name": "Laptop"},
                       format="json")
    assert created.status_code == 201
    assert created.json()["name"] == "Laptop" and created.json()["token"].startswith("mgt_")
    assert _api(created.json()["token"]).get("/api/v1/compositions/").status_code == 200


def test_past_the_most_tokens_a_user_may_have_the_least_recently_used_goes(
        user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "MAX_TOKENS_PER_USER", 3)
    old, used, recent = (api_token_create(user=user, name=name) for name in ("old", "used", "recent"))
    ApiToken.objects.filter(id=old.token.id).update(created=timezone.now() - timedelta(days=9))
    ApiToken.objects.filter(id=used.token.id).update(created=timezone.now() - timedelta(days=8),
                                                     last_used_at=timezone.now())
    newest = api_token_create(user=user, name="newest")
    assert set(ApiToken.objects.filter(user=user).values_list("name", flat=True)) == {"used", "recent", "newest"}
    assert _api(old.key).get("/api/v1/auth/tokens/").status_code == 401
    assert _api(newest.key).get("/api/v1/auth/tokens/").status_code == 200


# -- using one ----------------------------------------------------------------------------------------


def test_an_expired_token_answers_401_saying_it_expired(user: User) -> None:
    issued = api_token_create(user=user)
    ApiToken.objects.filter(id=issued.token.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _api(issued.key).get("/api/v1/compositions/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"] and "sign in again" in response.json()["detail"]


def test_a_password_change_kills_every_token_of_the_user(user: User, other_user: User) -> None:
    mine = [api_token_create(user=user).key for _ in range(2)]
    theirs = api_token_create(user=other_user).key
    user.set_password("another-Long-pa55word")
    user.save()
    for key in mine:
        response = _api(key).get("/api/v1/compositions/")
        assert response.status_code == 401 and "password change" in response.json()["detail"]
    assert _api(theirs).get("/api/v1/compositions/").status_code == 200


def test_a_token_of_a_deactivated_user_is_refused(user: User) -> None:
    key = api_token_create(user=user).key
    User.objects.filter(id=user.id).update(is_active=False)
    assert _api(key).get("/api/v1/compositions/").status_code == 401


def test_last_used_is_written_at_most_once_a_minute(user: User) -> None:
    issued = api_token_create(user=user)
    assert issued.token.last_used_at is None
    api = _api(issued.key)
    api.get("/api/v1/auth/tokens/")
    first = ApiToken.objects.get(id=issued.token.id).last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=10)
    api.get("/api/v1/auth/tokens/")
    assert ApiToken.objects.get(id=issued.token.id).last_used_at == first
    earlier = first - timedelta(minutes=2)
    ApiToken.objects.filter(id=issued.token.id).update(last_used_at=earlier)
    api.get("/api/v1/auth/tokens/")
    assert ApiToken.objects.get(id=issued.token.id).last_used_at > first


# -- listing and revoking -----------------------------------------------------------------------------


def test_the_list_shows_names_prefixes_and_dates_and_never_a_key(user: User, other_user: User) -> None:
    phone, laptop = api_token_create(user=user, name="Phone"), api_token_create(user=user, name="Laptop")
    api_token_create(user=other_user, name="Not mine")
    response = _api(phone.key).get("/api/v1/auth/tokens/")
    assert response.status_code == 200
    listed = response.json()
    assert [item["name"] for item in listed] == ["Laptop", "Phone"]  # newest first
    assert set(listed[0]) == {"id", "name", "prefix", "created", "last_used_at", "expires_at", "current"}
    assert {item["prefix"] for item in listed} == {phone.key[:10], laptop.key[:10]}
    assert [item["current"] for item in listed] == [False, True]
    body = response.content.decode()
    assert phone.key not in body and laptop.key not in body and "digest" not in body


def test_the_list_leaves_out_tokens_from_before_the_last_password_change(user: User) -> None:
    api_token_create(user=user, name="Before")
    user.set_password("another-Long-pa55word")
    user.save()
    after = api_token_create(user=user, name="After")
    assert [item["name"] for item in _api(after.key).get("/api/v1/auth/tokens/").json()] == ["After"]
    assert list(ApiToken.objects.filter(user=user).values_list("name", flat=True)) == ["After"]  # cleared


def test_revoking_one_of_several_tokens_leaves_the_others_working(user: User) -> None:
    phone, laptop, script = (api_token_create(user=user, name=name) for name in ("Phone", "Laptop", "Script"))
    assert _api(phone.key).delete(f"/api/v1/auth/tokens/{laptop.token.id}/").status_code == 204
    assert _api(laptop.key).get("/api/v1/auth/tokens/").status_code == 401
    remaining = _api(script.key).get("/api/v1/auth/tokens/").json()
    assert [item["name"] for item in remaining] == ["Script", "Phone"]
    assert _api(phone.key).delete(f"/api/v1/auth/tokens/{laptop.token.id}/").status_code == 404  # gone already


def test_another_users_token_cannot_be_revoked_and_keeps_working(user: User, other_user: User) -> None:
    mine = api_token_create(user=user)
    theirs = api_token_create(user=other_user)
    response = _api(mine.key).delete(f"/api/v1/auth/tokens/{theirs.token.id}/")
    assert response.status_code == 404
    assert _api(theirs.key).get("/api/v1/auth/tokens/").status_code == 200


def test_deleting_auth_token_revokes_only_the_token_it_is_sent_with(user: User) -> None:
    phone, laptop = api_token_create(user=user), api_token_create(user=user)
    assert _api(phone.key).delete("/api/v1/auth/token/").status_code == 204
    assert _api(phone.key).get("/api/v1/auth/tokens/").status_code == 401
    assert _api(laptop.key).get("/api/v1/auth/tokens/").status_code == 200


def test_listing_and_revoking_need_a_login(db: None) -> None:
    assert APIClient().get("/api/v1/auth/tokens/").status_code == 401
    assert APIClient().delete("/api/v1/auth/tokens/1/").status_code == 401


# -- the migration that hashed the first keys ------------------------------------------------------------

BEFORE = [("compositions", "0015_version_loudness_and_score")]
AFTER = [("compositions", "0016_hashed_api_tokens")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to `targets`; the app registry of that state."""
    MigrationExecutor(connection).migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_a_clear_text_token_from_before_the_migration_keeps_working_with_the_same_key() -> None:
    key = "7aa07213ca333b2d5cd2f06eded511bb24da63a4"  # what the first tokens looked like: 40 hex digits
    try:
        old = _migrate(BEFORE)
        OldUser = old.get_model("auth", "User")
        alice = OldUser.objects.create(username="before", password=make_password(PASSWORD))
        made = timezone.now() - timedelta(days=100)
        old.get_model("compositions", "ApiToken").objects.create(
            key=key, user_id=alice.id, password_fingerprint=ApiToken.fingerprint_of(alice))
        old.get_model("compositions", "ApiToken").objects.filter(key=key).update(created=made)

        _migrate(AFTER)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM compositions_apitoken")
            rows = cursor.fetchall()
        assert len(rows) == 1 and not any(key in str(value) for value in rows[0])
        token = ApiToken.objects.get(user_id=alice.id)
        assert (token.name, token.prefix, token.created) == ("API token", key[:10], made)
        assert token.digest == hashlib.sha256(key.encode()).hexdigest()

        response = _api(key).get("/api/v1/auth/tokens/")
        assert response.status_code == 200
        assert [(item["prefix"], item["current"]) for item in response.json()] == [(key[:10], True)]
        assert _api(key[:-1] + "5").get("/api/v1/auth/tokens/").status_code == 401
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
