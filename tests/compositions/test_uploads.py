"""Hostile MIDI uploads answer 400 with a reason and queue nothing; ordinary files are continued."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from compositions.models import Composition
from tests.compositions.test_apis import token_client
from tests.conftest import current
from tests.ml.hostile_midi import hostile_files, real_files

HOSTILE = hostile_files()
REAL = real_files()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_primer_is_400_with_its_reason_through_the_api(
        name: str, user: User, style: str, settings: Any, queued_tasks: list) -> None:
    settings.PRIMER_MAX_BYTES = 2 * 1024 * 1024  # so that the big ones reach the scan
    data, words = HOSTILE[name]
    response = token_client(user).post(
        "/api/compositions/", {"style": style, "primer": SimpleUploadedFile(f"{name}.mid", data)}, format="multipart"
    )
    assert response.status_code == 400, response.content
    assert words in response.json()["detail"]
    assert not Composition.objects.exists() and queued_tasks == []


@pytest.mark.parametrize("name", ["45 bytes that claim years", "thousands of tracks", "HTML renamed .mid", "tempo 0"])
def test_a_hostile_primer_is_a_form_error_through_the_page(
        name: str, user_client: Client, style: str, settings: Any, queued_tasks: list) -> None:
    settings.PRIMER_MAX_BYTES = 2 * 1024 * 1024
    data, words = HOSTILE[name]
    response = user_client.post(
        "/compositions/new/", {"style": style, "seconds": 5, "primer": SimpleUploadedFile("x.mid", data)}
    )
    assert response.status_code == 400
    assert words in str(response.context["form"].errors["primer"])
    assert not Composition.objects.exists()


def test_an_upload_over_the_cap_is_refused_without_being_read(user: User, style: str, queued_tasks: list) -> None:
    upload = SimpleUploadedFile("big.mid", b"MThd" + b"\0" * (1024 * 1024))
    response = token_client(user).post("/api/compositions/", {"style": style, "primer": upload}, format="multipart")
    assert response.status_code == 400 and "larger than 1 MB" in response.json()["detail"]


@pytest.mark.parametrize("name", list(REAL))
def test_ordinary_midi_files_are_accepted_to_continue(name: str, user: User, style: str, queued_tasks: list) -> None:
    response = token_client(user).post(
        "/api/compositions/", {"style": style, "primer": SimpleUploadedFile("tune.mid", REAL[name])},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    assert current(Composition.objects.get()).primer_file
