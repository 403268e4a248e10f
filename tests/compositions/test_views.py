from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from compositions.models import Composition
from tests.conftest import PASSWORD, midi_bytes


@pytest.fixture
def done_composition(user: User, composition_factory: Callable) -> Composition:
    composition = composition_factory(user, status=Composition.Status.DONE, progress=100, duration_seconds=5.2)
    composition.mp3_file.save("piece.mp3", ContentFile(b"ID3fake-mp3"), save=False)
    composition.midi_file.save("piece.mid", ContentFile(midi_bytes([60, 64, 67])), save=False)
    composition.notes_json = [[60, 0.0, 0.5, 80], [64, 0.5, 0.5, 80]]
    composition.save()
    return composition


def form_data(default_style: str, /, **overrides: Any) -> dict[str, Any]:
    return {"style": default_style, "seconds": "5", "key": "any", "mode": "major", "temperature": "1.0", **overrides}


# -- accounts ----------------------------------------------------------------------------------


def test_sign_up_creates_the_account_and_logs_in(client: Client, db: None) -> None:
    response = client.post(
        "/signup/", {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD}, follow=True
    )
    assert response.status_code == 200
    assert response.context["user"].username == "newbie"
    assert User.objects.filter(username="newbie").exists()


def test_sign_up_rejects_a_common_password(client: Client, db: None) -> None:
    response = client.post("/signup/", {"username": "newbie", "password1": "password", "password2": "password"})
    assert response.status_code == 200
    assert "too common" in response.content.decode()
    assert not User.objects.filter(username="newbie").exists()


def test_log_in_and_log_out_by_post(client: Client, user: User) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/compositions/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405  # a link cannot log you out
    client.post("/accounts/logout/")
    assert client.get("/compositions/").status_code == 302


@pytest.mark.parametrize(
    "url", ["/compositions/", "/compositions/new/"], ids=["list", "new"]
)
def test_pages_require_login(client: Client, db: None, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# -- pages -------------------------------------------------------------------------------------


def test_home_page_renders_for_visitors(client: Client, db: None) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "Sign up" in response.content.decode()


def test_compose_form_lists_the_models_styles(user_client: Client, style: str) -> None:
    response = user_client.get("/compositions/new/")
    assert response.status_code == 200
    assert f'value="{style}"' in response.content.decode()


def test_valid_request_saves_a_pending_piece_and_redirects_to_it(
    user_client: Client, user: User, style: str, queued_tasks: list
) -> None:
    response = user_client.post("/compositions/new/", form_data(style, variations="2"))
    rows = list(Composition.objects.filter(user=user).order_by("variation_index"))
    assert len(rows) == 2
    assert response.status_code == 302
    assert response["Location"] == f"/compositions/{rows[0].public_id}/"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seconds", "2"),
        ("seconds", "601"),
        ("seconds", "long"),
        ("tempo_bpm", "10"),
        ("tempo_bpm", "400"),
        ("tempo_bpm", "fast"),
        ("temperature", "0"),
        ("temperature", "3.5"),
        ("temperature", "nan"),
        ("style", "polka-metal"),
        ("key", "H"),
        ("variations", "9"),
        ("top_p", "1.5"),
        ("seed", "abc"),
    ],
)
def test_bad_input_shows_a_form_error_and_saves_nothing(
    user_client: Client, user: User, style: str, queued_tasks: list, field: str, value: str
) -> None:
    response = user_client.post("/compositions/new/", form_data(style, **{field: value}))
    assert response.status_code == 400
    assert response.context["form"].errors
    assert 'class="error"' in response.content.decode() or 'class="alert error"' in response.content.decode()
    assert not Composition.objects.filter(user=user).exists()


def test_a_file_that_is_not_midi_is_rejected(user_client: Client, style: str, queued_tasks: list) -> None:
    upload = ContentFile(b"not a midi file", name="song.mid")
    response = user_client.post("/compositions/new/", {**form_data(style), "primer": upload})
    assert response.status_code == 400
    assert "primer" in response.context["form"].errors


def test_a_midi_file_over_2_mb_is_rejected(user_client: Client, style: str, queued_tasks: list) -> None:
    upload = ContentFile(b"MThd" + b"\0" * (2 * 1024 * 1024), name="big.mid")
    response = user_client.post("/compositions/new/", {**form_data(style), "primer": upload})
    assert response.status_code == 400
    assert "2 MB" in str(response.context["form"].errors["primer"])


def test_an_empty_midi_file_is_rejected(user_client: Client, style: str, queued_tasks: list) -> None:
    upload = ContentFile(midi_bytes([]), name="empty.mid")
    response = user_client.post("/compositions/new/", {**form_data(style), "primer": upload})
    assert response.status_code == 400
    assert "primer" in response.context["form"].errors


def test_list_shows_my_compositions_newest_first(
    user_client: Client, user: User, other_user: User, composition_factory: Callable
) -> None:
    older = composition_factory(user, style="alpha")
    newer = composition_factory(user, style="beta")
    composition_factory(other_user)
    response = user_client.get("/compositions/")
    assert list(response.context["compositions"]) == [newer, older]


def test_detail_of_a_finished_piece_has_a_player_and_downloads(
    user_client: Client, done_composition: Composition
) -> None:
    html = user_client.get(f"/compositions/{done_composition.public_id}/").content.decode()
    assert f'<audio controls preload="metadata" src="/compositions/{done_composition.public_id}/audio.mp3"' in html
    assert "Download MIDI" in html
    assert 'id="piano-roll-notes"' in html


def test_detail_of_a_failed_piece_shows_the_reason_and_a_retry_button(
    user_client: Client, user: User, composition_factory: Callable
) -> None:
    failed = composition_factory(user, status=Composition.Status.FAILED, error="The SoundFont file is missing")
    html = user_client.get(f"/compositions/{failed.public_id}/").content.decode()
    assert "Failed: The SoundFont file is missing" in html
    assert "Try again" in html


def test_status_json_reports_progress(user_client: Client, user: User, composition_factory: Callable) -> None:
    running = composition_factory(user, status=Composition.Status.GENERATING, progress=42, status_message="Generating 42%")
    data = user_client.get(f"/compositions/{running.public_id}/status.json").json()
    assert data == {
        "id": str(running.public_id),
        "status": "generating",
        "progress": 42,
        "message": "Generating 42%",
        "error": "",
        "mp3_url": None,
        "midi_url": None,
    }


def test_mp3_is_served_to_its_owner_as_audio_mpeg(user_client: Client, done_composition: Composition) -> None:
    response = user_client.get(f"/compositions/{done_composition.public_id}/audio.mp3")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert b"".join(response.streaming_content) == b"ID3fake-mp3"


def test_download_link_saves_the_file_as_an_attachment(user_client: Client, done_composition: Composition) -> None:
    response = user_client.get(f"/compositions/{done_composition.public_id}/score.mid?download=1")
    assert response["Content-Type"] == "audio/midi"
    assert response["Content-Disposition"].startswith("attachment;")


def test_files_of_an_unfinished_piece_are_404(user_client: Client, user: User, composition_factory: Callable) -> None:
    pending = composition_factory(user)
    assert user_client.get(f"/compositions/{pending.public_id}/audio.mp3").status_code == 404


@pytest.mark.parametrize(
    "suffix", ["", "status.json", "audio.mp3", "score.mid"], ids=["detail", "status", "mp3", "midi"]
)
def test_another_users_composition_and_files_are_404(
    client_for: Callable, other_user: User, done_composition: Composition, suffix: str
) -> None:
    response = client_for(other_user).get(f"/compositions/{done_composition.public_id}/{suffix}")
    assert response.status_code == 404


def test_another_user_cannot_retry_my_composition(
    client_for: Callable, user: User, other_user: User, composition_factory: Callable, queued_tasks: list
) -> None:
    failed = composition_factory(user, status=Composition.Status.FAILED)
    response = client_for(other_user).post(f"/compositions/{failed.public_id}/retry/")
    assert response.status_code == 404
    assert queued_tasks == []


def test_retry_queues_a_failed_piece_again(
    user_client: Client, user: User, composition_factory: Callable, queued_tasks: list,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    failed = composition_factory(user, status=Composition.Status.FAILED, error="MP3 encoding failed")
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(f"/compositions/{failed.public_id}/retry/")
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == Composition.Status.PENDING
    assert queued_tasks == [("compositions.tasks.composition_generate", failed.id)]


def test_media_files_are_not_exposed_under_media_url(user_client: Client, done_composition: Composition) -> None:
    assert user_client.get(f"/media/{done_composition.mp3_file.name}").status_code == 404
