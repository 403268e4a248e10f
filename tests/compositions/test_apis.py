from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from compositions.models import Composition


@pytest.fixture
def api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_create_answers_202_with_a_status_url(api: APIClient, user: User, style: str, queued_tasks: list) -> None:
    response = api.post("/api/compositions/", {"style": style, "seconds": 5, "variations": 2}, format="json")
    assert response.status_code == 202
    first = Composition.objects.filter(user=user).order_by("variation_index").first()
    assert response["Location"] == response.data["status_url"] == f"/api/compositions/{first.public_id}/"
    assert [c["status"] for c in response.data["compositions"]] == ["pending", "pending"]


@pytest.mark.parametrize(
    "payload",
    [
        {"seconds": 5},
        {"style": "polka-metal", "seconds": 5},
        {"style": "{style}", "seconds": "five"},
        {"style": "{style}", "seconds": 1000},
        {"style": "{style}", "seconds": 5, "tempo_bpm": 5},
        {"style": "{style}", "seconds": 5, "temperature": 0},
        {"style": "{style}", "seconds": 5, "mode": "lydian"},
    ],
    ids=["no-style", "unknown-style", "non-numeric", "too-long", "tempo", "temperature", "mode"],
)
def test_create_answers_400_for_bad_input(
    api: APIClient, user: User, style: str, queued_tasks: list, payload: dict[str, Any]
) -> None:
    payload = {k: (style if v == "{style}" else v) for k, v in payload.items()}
    response = api.post("/api/compositions/", payload, format="json")
    assert response.status_code == 400
    assert not Composition.objects.filter(user=user).exists()


def test_create_requires_authentication(db: None, style: str) -> None:
    response = APIClient().post("/api/compositions/", {"style": style, "seconds": 5}, format="json")
    assert response.status_code == 401


def test_status_of_another_users_composition_is_404(
    api: APIClient, other_user: User, composition_factory: Callable
) -> None:
    theirs = composition_factory(other_user)
    assert api.get(f"/api/compositions/{theirs.public_id}/").status_code == 404


def test_status_reports_progress(api: APIClient, user: User, composition_factory: Callable) -> None:
    mine = composition_factory(user, status=Composition.Status.RENDERING, progress=90)
    data = api.get(f"/api/compositions/{mine.public_id}/").json()
    assert (data["status"], data["progress"]) == ("rendering", 90)


def test_schema_is_served(api: APIClient) -> None:
    assert api.get("/api/schema/").status_code == 200
