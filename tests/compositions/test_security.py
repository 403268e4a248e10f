"""Production settings, headers, CSRF, login throttling and token revocation."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from compositions.models import Composition, CompositionVersion
from compositions.services.accounts import api_token_create
from tests.conftest import PASSWORD, current

ROOT = Path(__file__).resolve().parents[2]


def production_environment() -> dict[str, str]:
    """.env.example with its Production block applied, and a freshly generated key."""
    env: dict[str, str] = {}
    production = False
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("# --- Production"):
            production = True
            continue
        match = re.fullmatch(r"(?:# )?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match and (production or not line.startswith("#")):
            env[match.group(1)] = match.group(2)
    env["SECRET_KEY"] = "x" * 10 + os.urandom(32).hex()
    return env


def test_the_production_environment_passes_the_deploy_check() -> None:
    # The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process; production has no such thing.
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {**inherited, **production_environment(), "DJANGO_SETTINGS_MODULE": "musicgen.settings"}
    assert env["DEBUG"] == "false"
    # The check must not need the production database or Redis to be reachable.
    env["DATABASE_URL"] = "sqlite:///:memory:"
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_pages_cannot_be_framed_and_say_so(user_client: Client) -> None:
    response = user_client.get(reverse("compositions:new"))
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.fixture
def done_piece(user: User, composition_factory: Callable[..., Composition]) -> Composition:
    return composition_factory(user, status=CompositionVersion.Status.DONE, progress=100, files=True)


@pytest.mark.parametrize("kind, content_type", [("mp3", "audio/mpeg"), ("midi", "audio/midi")])
def test_files_have_their_content_type_nosniff_and_no_shared_caching(
        kind: str, content_type: str, user_client: Client, done_piece: Composition) -> None:
    response = user_client.get(reverse(f"compositions:{kind}", args=[done_piece.public_id]))
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"].startswith("private")


def test_with_an_accel_prefix_the_web_server_sends_the_file_after_the_permission_check(
        user_client: Client, client_for: Callable, other_user: User, done_piece: Composition, settings: Any) -> None:
    settings.MEDIA_ACCEL_REDIRECT_PREFIX = "/protected-media/"
    response = user_client.get(reverse("compositions:mp3", args=[done_piece.public_id]))
    assert response["X-Accel-Redirect"] == f"/protected-media/{current(done_piece).mp3_file.name}"
    assert response["Content-Type"] == "audio/mpeg" and response.content == b""
    assert client_for(other_user).get(reverse("compositions:mp3", args=[done_piece.public_id])).status_code == 404


def test_stored_files_are_not_world_readable_or_writable(done_piece: Composition) -> None:
    version = current(done_piece)
    for file in (version.mp3_file, version.midi_file):
        mode = stat.S_IMODE(Path(file.path).stat().st_mode)
        assert mode & 0o007 == 0, oct(mode)
    assert stat.S_IMODE(Path(version.mp3_file.path).parent.stat().st_mode) & 0o002 == 0


def test_session_authenticated_api_writes_need_the_csrf_token(user: User, style: str, queued_tasks: list) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post("/api/compositions/", {"style": style}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not Composition.objects.exists()
    # A token client is not a browser: no cookie, no CSRF.
    assert APIClient(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}").post(
        "/api/compositions/", {"style": style}, format="json").status_code == 202


def test_logins_are_throttled_after_repeated_failures_even_with_the_right_password(
        user: User, settings: Any) -> None:
    client = Client()
    for _ in range(settings.LOGIN_ATTEMPTS):
        response = client.post(reverse("login"), {"username": user.username, "password": "wrong"})
        assert response.status_code == 200 and b"Too many" not in response.content
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200 and b"Too many failed sign-ins" in response.content
    api = APIClient().post("/api/auth/token/", {"username": user.username, "password": PASSWORD})
    assert api.status_code == 429 and int(api["Retry-After"]) == settings.LOGIN_LOCKOUT_SECONDS


def test_a_good_login_is_not_held_back_by_a_few_failures(user: User, settings: Any) -> None:
    client = Client()
    for _ in range(settings.LOGIN_ATTEMPTS - 1):
        client.post(reverse("login"), {"username": user.username, "password": "wrong"})
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302


def _token(username: str) -> str:
    response = APIClient().post("/api/auth/token/", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return str(response.json()["token"])


def test_a_token_dies_when_the_password_changes(user: User) -> None:
    token = _token(user.username)
    api = APIClient(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/schema/").status_code == 200
    user.set_password("another-Long-pa55word")
    user.save()
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 401 and b"password change" in response.content
    assert APIClient().post("/api/auth/token/", {"username": user.username, "password": "another-Long-pa55word"}
                            ).json()["token"] != token


def test_each_sign_in_gets_a_token_of_its_own_and_the_earlier_ones_keep_working(user: User) -> None:
    first, second = _token(user.username), _token(user.username)
    assert first != second
    for token in (first, second):
        assert APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/auth/tokens/").status_code == 200


def test_log_out_everywhere_ends_every_session_and_the_token(user: User) -> None:
    token = _token(user.username)
    laptop, phone = Client(), Client()
    for device in (laptop, phone):
        assert device.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
    assert phone.get(reverse("compositions:list")).status_code == 200
    assert laptop.post(reverse("logout-everywhere")).status_code == 302
    assert phone.get(reverse("compositions:list")).status_code == 302  # back to the login page
    assert APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/schema/").status_code == 401
