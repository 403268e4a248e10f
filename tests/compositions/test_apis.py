from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from compositions.models import Composition, CompositionVersion
from compositions.services.accounts import api_token_create
from ml.data.notes import notes_from_midi
from tests.conftest import PASSWORD, current, midi_bytes


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    return client


@pytest.fixture
def api(user: User) -> APIClient:
    return token_client(user)


@pytest.fixture
def done_composition(user: User, composition_factory: Callable) -> Composition:
    return composition_factory(user, status=CompositionVersion.Status.DONE, progress=100,
                               chords_json=[[0.0, "C major triad"], [2.5, None]], files=True)


def test_create_answers_202_with_a_status_url(api: APIClient, user: User, style: str, queued_tasks: list) -> None:
    response = api.post("/api/compositions/", {"style": style, "seconds": 5, "variations": 2}, format="json")
    assert response.status_code == 202
    first = Composition.objects.filter(user=user).order_by("variation_index").first()
    assert response["Location"] == response.data["status_url"] == f"/api/v1/compositions/{first.public_id}/"
    assert [c["status"] for c in response.data["compositions"]] == ["pending", "pending"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"seconds": 5}, "style"),
        ({"style": "polka-metal", "seconds": 5}, "style"),
        ({"style": "{style}", "seconds": "five"}, "seconds"),
        ({"style": "{style}", "seconds": 1000}, "seconds"),
        ({"style": "{style}", "seconds": 5, "tempo_bpm": 5}, "tempo_bpm"),
        ({"style": "{style}", "seconds": 5, "temperature": 0}, "temperature"),
        ({"style": "{style}", "seconds": 5, "mode": "lydian"}, "mode"),
        ({"style": "{style}", "key": "H"}, "key"),
        ({"style": "{style}", "instrument": 128}, "instrument"),
        ({"style": "{style}", "temperature": 0}, "temperature"),
        ({"style": "{style}", "timing_temperature": 0}, "timing_temperature"),
        ({"style": "{style}", "top_k": -1}, "top_k"),
        ({"style": "{style}", "top_p": 0}, "top_p"),
        ({"style": "{style}", "top_p": 1.5}, "top_p"),
        ({"style": "{style}", "variations": 5}, "variations"),
        ({"style": "{style}", "seconds": 20, "notes": 100}, "notes"),
        ({"style": "{style}", "notes": 5000}, "notes"),
        ({"style": "{style}", "time_signature": "4-4"}, "time_signature"),
        ({"style": "{style}", "time_signature": "4/3"}, "time_signature"),
        ({"style": "{style}", "pitch_low": 60, "pitch_high": 64}, "pitch_high"),
        ({"style": "{style}", "pitch_high": 128}, "pitch_high"),
        ({"style": "{style}", "dynamics": "shouty"}, "dynamics"),
        ({"style": "{style}", "seed": -1}, "seed"),
    ],
    ids=[
        "no-style", "unknown-style", "non-numeric", "too-long", "tempo", "temperature", "mode", "unknown-key",
        "instrument-128", "temperature-0", "timing-temperature-0", "top-k", "top-p-0", "top-p-1.5", "variations-5",
        "seconds-and-notes", "too-many-notes", "time-signature-shape", "time-signature-denominator",
        "narrow-range", "pitch-high-128", "dynamics", "seed",
    ],
)
def test_create_answers_400_naming_the_bad_field(
    api: APIClient, user: User, style: str, queued_tasks: list, payload: dict[str, Any], field: str
) -> None:
    payload = {k: (style if v == "{style}" else v) for k, v in payload.items()}
    response = api.post("/api/compositions/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert list(body["errors"]) == [field]  # that field, and no other
    [message] = body["errors"][field]
    assert message and message in body["detail"]
    assert not Composition.objects.filter(user=user).exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"key": "H"}, "Unknown key 'H'"),
        ({"instrument": 128}, "Instrument must be a General MIDI program between 0 and 127."),
        ({"top_p": 1.5}, "Top-p must be above 0 and at most 1."),
        ({"variations": 5}, "Variations must be between 1 and 4."),
        ({"seconds": 20, "notes": 100}, "Give the length either in seconds or in notes, not both."),
        ({"time_signature": "waltz"}, "is not like 4/4, 3/4 or 6/8"),
    ],
    ids=["key", "instrument", "top-p", "variations", "seconds-and-notes", "time-signature"],
)
def test_bad_input_is_explained_in_the_detail(
    api: APIClient, style: str, queued_tasks: list, payload: dict[str, Any], message: str
) -> None:
    response = api.post("/api/compositions/", {"style": style, **payload}, format="json")
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_a_length_the_model_cannot_reach_is_400(api: APIClient, busiest_style: str, queued_tasks: list) -> None:
    response = api.post(
        "/api/compositions/", {"style": busiest_style, "seconds": 600, "tempo_bpm": 300}, format="json"
    )
    assert response.status_code == 400
    assert "choose a shorter length or a slower tempo" in response.json()["detail"]


def test_create_stores_every_control(api: APIClient, user: User, style: str, queued_tasks: list) -> None:
    payload = {
        "style": style, "notes": 48, "tempo_bpm": 100, "time_signature": "6/8", "key": "Bb", "mode": "mixolydian",
        "pitch_low": 55, "pitch_high": 79, "temperature": 1.3, "timing_temperature": 0.7, "top_k": 20,
        "top_p": 0.95, "seed": 99, "dynamics": "diminuendo", "instrument": 73, "variations": 2, "form": "ABAC",
        "phrase_bars": 2, "accompany": False, "ending": "perfect",
    }
    response = api.post("/api/compositions/", payload, format="json")
    assert response.status_code == 202
    first = Composition.objects.filter(user=user).order_by("variation_index").first()
    assert current(first).params == {**payload, "tempo_bpm": 100.0, "seconds": None, "chords": None,
                                     "instruments": None}


def test_create_takes_a_midi_file_to_continue_as_multipart(
    api: APIClient, user: User, style: str, queued_tasks: list
) -> None:
    primer = ContentFile(midi_bytes([60, 62, 64, 65, 67]), name="tune.mid")
    response = api.post(
        "/api/compositions/", {"style": style, "seconds": "10", "time_signature": "3/4", "primer": primer},
        format="multipart",
    )
    assert response.status_code == 202
    version = current(Composition.objects.get(user=user))
    assert version.params["time_signature"] == "3/4"
    assert version.primer_file
    assert notes_from_midi(version.primer_file.read()).pitch.tolist() == [60, 62, 64, 65, 67]


def test_a_primer_that_is_not_midi_is_400(api: APIClient, user: User, style: str, queued_tasks: list) -> None:
    primer = ContentFile(b"not a midi file", name="tune.mid")
    response = api.post("/api/compositions/", {"style": style, "primer": primer}, format="multipart")
    assert response.status_code == 400
    assert not Composition.objects.filter(user=user).exists()


def test_a_missing_model_file_is_503_with_the_reason(
    api: APIClient, style: str, settings: Any, tmp_path: Any, queued_tasks: list
) -> None:
    settings.MUSIC_MODEL_PATH = tmp_path / "gone.keras"
    response = api.post("/api/compositions/", {"style": style, "seconds": 5}, format="json")
    assert response.status_code == 503
    assert response.json()["detail"] == "The music model file is missing"


def test_create_requires_authentication(db: None, style: str) -> None:
    response = APIClient().post("/api/compositions/", {"style": style, "seconds": 5}, format="json")
    assert response.status_code == 401


def test_status_of_another_users_composition_is_404(
    api: APIClient, other_user: User, composition_factory: Callable
) -> None:
    theirs = composition_factory(other_user)
    assert api.get(f"/api/compositions/{theirs.public_id}/").status_code == 404


def test_status_reports_progress(api: APIClient, user: User, composition_factory: Callable) -> None:
    mine = composition_factory(user, status=CompositionVersion.Status.RENDERING, progress=90)
    data = api.get(f"/api/compositions/{mine.public_id}/").json()
    assert (data["status"], data["progress"]) == ("rendering", 90)


def test_token_flow_obtain_create_poll_and_download(
    client: Any, user: User, style: str, django_capture_on_commit_callbacks: Callable
) -> None:
    token = APIClient().post("/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert token.status_code == 200
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")

    with django_capture_on_commit_callbacks(execute=True):  # Q_SYNC: the task runs on commit
        created = api.post("/api/compositions/", {"style": style, "seconds": 5, "seed": 4}, format="json")
    assert created.status_code == 202

    status = api.get(created["Location"]).json()
    assert status["status"] == "done"
    assert status["mp3_url"] == f"/api/v1/compositions/{status['id']}/audio.mp3"
    mp3 = api.get(status["mp3_url"], HTTP_ACCEPT="audio/mpeg")
    assert mp3.status_code == 200
    assert mp3["Content-Type"] == "audio/mpeg"
    assert b"".join(mp3.streaming_content)[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
    midi = api.get(status["midi_url"])
    assert (midi.status_code, midi["Content-Type"]) == (200, "audio/midi")
    assert len(notes_from_midi(b"".join(midi.streaming_content))) > 0


def test_a_wrong_password_gets_no_token(db: None, user: User) -> None:
    response = APIClient().post("/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code == 400
    assert "token" not in response.json()


@pytest.mark.parametrize("suffix", ["", "audio.mp3", "score.mid"], ids=["status", "mp3", "midi"])
def test_another_users_token_gets_404_for_my_piece_and_files(
    other_user: User, done_composition: Composition, suffix: str
) -> None:
    response = token_client(other_user).get(f"/api/compositions/{done_composition.public_id}/{suffix}")
    assert response.status_code == 404


def test_files_of_a_private_piece_are_404_without_its_owner(db: None, done_composition: Composition) -> None:
    assert APIClient().get(f"/api/v1/compositions/{done_composition.public_id}/audio.mp3").status_code == 404


def test_files_of_an_unfinished_piece_are_409_with_the_progress(
        api: APIClient, user: User, composition_factory: Callable) -> None:
    pending = composition_factory(user, status=CompositionVersion.Status.GENERATING, progress=40)
    response = api.get(f"/api/v1/compositions/{pending.public_id}/audio.mp3")
    assert response.status_code == 409 and response.json()["progress"] == 40


def test_files_of_a_failed_piece_are_410_with_the_reason(
        api: APIClient, user: User, composition_factory: Callable) -> None:
    failed = composition_factory(user, status=CompositionVersion.Status.FAILED, error="MP3 encoding failed")
    response = api.get(f"/api/v1/compositions/{failed.public_id}/score.mid")
    assert response.status_code == 410 and "MP3 encoding failed" in response.json()["detail"]


def test_detail_has_settings_chords_and_api_file_urls(api: APIClient, done_composition: Composition) -> None:
    data = api.get(f"/api/compositions/{done_composition.public_id}/").json()
    assert data["midi_url"] == f"/api/v1/compositions/{done_composition.public_id}/score.mid"
    assert data["chords"] == [[0.0, "C major triad"], [2.5, None]]
    assert data["settings"]["time_signature"] is None  # the style's own metre was asked for
    assert (data["settings"]["pitch_low"], data["settings"]["pitch_high"]) == (21, 108)
    assert data["settings"]["continues_midi"] is False
