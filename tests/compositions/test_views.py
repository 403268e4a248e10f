from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from compositions.models import Composition, CompositionVersion
from tests.conftest import PASSWORD, current, midi_bytes


@pytest.fixture
def done_composition(user: User, composition_factory: Callable) -> Composition:
    return composition_factory(user, status=CompositionVersion.Status.DONE, progress=100, duration_seconds=5.2,
                               notes_json=[[60, 0.0, 0.5, 80], [64, 0.5, 0.5, 80]], files=True)


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


def test_compose_form_offers_every_control(user_client: Client) -> None:
    form = user_client.get("/compositions/new/").context["form"]
    html = user_client.get("/compositions/new/").content.decode()
    assert set(form.fields) == {
        "style", "seconds", "notes", "tempo_bpm", "time_signature", "key", "mode", "pitch_low", "pitch_high",
        "temperature", "timing_temperature", "top_k", "top_p", "seed", "dynamics", "instrument", "instruments",
        "variations", "form", "ending", "phrase_bars", "chords", "accompany", "primer", "harmonise",
    }
    assert [value for value, _ in form.fields["mode"].choices] == ["major", "minor", "dorian", "mixolydian"]
    # The form defaults to the style's own; a plan of letters can be chosen instead.
    assert [v for v, _ in form.fields["form"].choices][:4] == ["", "through", "AABB", "AABA"]
    # The metre too: the style's own (drawn from its pieces' metres), or one chosen.
    assert [v for v, _ in form.fields["time_signature"].choices] == [
        "", "4/4", "3/4", "2/4", "6/8", "3/8", "2/2", "3/2", "4/2", "9/8", "12/8", "5/4", "7/8"
    ]
    assert '<option value="60">C4 (60)</option>' in html
    assert '<option value="21" selected>A0 (21)</option>' in html


def test_every_control_is_stored_on_the_piece(
    user_client: Client, user: User, style: str, queued_tasks: list
) -> None:
    response = user_client.post(
        "/compositions/new/",
        form_data(
            style, seconds="", notes="64", tempo_bpm="90", time_signature="3/4", key="D", mode="dorian",
            pitch_low="48", pitch_high="72", temperature="0.9", timing_temperature="1.2", top_k="12",
            top_p="0.9", seed="5", dynamics="crescendo", instrument="40", variations="3", form="abac",
            phrase_bars="2", accompany="false", instruments="Violin, Viola", ending="open",
        ),
    )
    assert response.status_code == 302
    rows = Composition.objects.filter(user=user).order_by("variation_index")
    assert rows.count() == 3
    assert current(rows[0]).params == {
        "style": style, "seconds": None, "notes": 64, "tempo_bpm": 90.0, "time_signature": "3/4", "key": "D",
        "mode": "dorian",
        "pitch_low": 48, "pitch_high": 72, "temperature": 0.9, "timing_temperature": 1.2, "top_k": 12,
        "top_p": 0.9, "seed": 5, "dynamics": "crescendo", "instrument": 40, "variations": 3, "form": "ABAC",
        "phrase_bars": 2, "chords": None, "accompany": False, "instruments": "Violin, Viola", "ending": "open",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key": "H"}, "Unknown key 'H'"),
        ({"mode": "lydian"}, "Unknown mode 'lydian'"),
        ({"time_signature": "9/3"}, "Time signature must be like 4/4, 3/4 or 6/8."),
        ({"instrument": "128"}, "Instrument must be a General MIDI program between 0 and 127."),
        ({"pitch_low": "200"}, "Lowest note must be between 0 and 127."),
        ({"pitch_low": "60", "pitch_high": "66"}, "at least an octave"),
        ({"temperature": "0"}, "Temperature must be above 0 and at most 3."),
        ({"timing_temperature": "0"}, "Rhythm temperature must be above 0 and at most 3."),
        ({"top_k": "500"}, "Top-k must be between 0 and 128."),
        ({"top_p": "0"}, "Top-p must be above 0 and at most 1."),
        ({"top_p": "1.5"}, "Top-p must be above 0 and at most 1."),
        ({"variations": "5"}, "Variations must be between 1 and 4."),
        ({"notes": "4", "seconds": ""}, "Length must be between 8 and 4000 notes."),
        ({"notes": "100", "seconds": "20"}, "either in seconds or in notes, not both"),
        ({"dynamics": "shouty"}, "Unknown dynamics 'shouty'"),
    ],
    ids=[
        "unknown-key", "unknown-mode", "time-signature", "instrument-128", "pitch-out-of-range", "narrow-range",
        "temperature-0", "timing-temperature-0", "top-k", "top-p-0", "top-p-1.5", "variations-5", "few-notes",
        "seconds-and-notes", "dynamics",
    ],
)
def test_each_bad_control_is_explained_on_the_form(
    user_client: Client, user: User, style: str, queued_tasks: list, overrides: dict[str, str], message: str
) -> None:
    response = user_client.post("/compositions/new/", form_data(style, **overrides))
    assert response.status_code == 400
    assert message in " ".join(str(e) for errors in response.context["form"].errors.values() for e in errors)
    assert not Composition.objects.filter(user=user).exists()


def test_a_length_the_model_cannot_reach_is_explained(
    user_client: Client, user: User, busiest_style: str, queued_tasks: list
) -> None:
    response = user_client.post("/compositions/new/", form_data(busiest_style, seconds="600", tempo_bpm="300"))
    assert response.status_code == 400
    assert "choose a shorter length or a slower tempo" in response.content.decode()
    assert not Composition.objects.filter(user=user).exists()


def test_a_missing_model_file_is_named_on_the_form(
    user_client: Client, user: User, style: str, settings: Any, tmp_path: Any, queued_tasks: list
) -> None:
    settings.MUSIC_MODEL_PATH = tmp_path / "gone.keras"
    page = user_client.get("/compositions/new/").content.decode()
    assert "The music model file is missing" in page

    response = user_client.post("/compositions/new/", form_data(style))
    html = response.content.decode()
    assert response.status_code == 503  # the site's fault, not the request's
    assert "The music model file is missing" in html
    assert "Unknown style" not in html
    assert not Composition.objects.filter(user=user).exists()


def test_a_midi_file_to_continue_is_kept_with_the_request(
    user_client: Client, user: User, style: str, queued_tasks: list
) -> None:
    upload = ContentFile(midi_bytes([60, 62, 64, 65]), name="tune.mid")
    response = user_client.post("/compositions/new/", {**form_data(style), "primer": upload})
    assert response.status_code == 302
    assert current(Composition.objects.get(user=user)).primer_file.name.endswith(".mid")


def test_a_file_that_is_not_midi_is_rejected(user_client: Client, style: str, queued_tasks: list) -> None:
    upload = ContentFile(b"not a midi file", name="song.mid")
    response = user_client.post("/compositions/new/", {**form_data(style), "primer": upload})
    assert response.status_code == 400
    assert "primer" in response.context["form"].errors


def test_a_midi_file_over_the_size_cap_is_rejected_before_it_is_read(
    user_client: Client, style: str, queued_tasks: list
) -> None:
    upload = ContentFile(b"MThd" + b"\0" * (1024 * 1024), name="big.mid")
    response = user_client.post("/compositions/new/", {**form_data(style), "primer": upload})
    assert response.status_code == 400
    assert "larger than 1 MB" in str(response.context["form"].errors["primer"])


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


def test_detail_shows_every_setting_and_the_chord_lane(
    user_client: Client, user: User, composition_factory: Callable
) -> None:
    piece = composition_factory(
        user, status=CompositionVersion.Status.DONE, seconds=None, notes=64, time_signature="6/8", key="G",
        mode="mixolydian", pitch_low=48, pitch_high=72, instrument=40, dynamics="soft",
        notes_json=[[60, 0.0, 1.0, 80], [64, 0.0, 1.0, 80], [67, 0.0, 1.0, 80]],
        chords_json=[[0.0, "C major triad"], [1.0, None]],
    )
    html = user_client.get(f"/compositions/{piece.public_id}/").content.decode()
    for text in ("64 notes", "6/8", "<dd>G</dd>", "Mixolydian", "C3 (48)", "C5 (72)", "Violin", "Soft"):
        assert text in html
    assert 'id="chord-lane"' in html
    assert '[[0.0, "C major triad"], [1.0, null]]' in html


def test_a_piece_still_loading_the_model_says_so(
    user_client: Client, user: User, composition_factory: Callable
) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.GENERATING, status_message="Loading the model")
    assert "Loading the model" in user_client.get(f"/compositions/{piece.public_id}/").content.decode()


def test_detail_of_a_failed_piece_shows_the_reason_and_a_retry_button(
    user_client: Client, user: User, composition_factory: Callable
) -> None:
    failed = composition_factory(user, status=CompositionVersion.Status.FAILED, error="The SoundFont file is missing")
    html = user_client.get(f"/compositions/{failed.public_id}/").content.decode()
    assert "Failed: The SoundFont file is missing" in html
    assert "Try again" in html


def test_status_json_reports_progress(user_client: Client, user: User, composition_factory: Callable) -> None:
    running = composition_factory(
        user, status=CompositionVersion.Status.GENERATING, progress=42, status_message="Generating 42%"
    )
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
    failed = composition_factory(user, status=CompositionVersion.Status.FAILED)
    response = client_for(other_user).post(f"/compositions/{failed.public_id}/retry/")
    assert response.status_code == 404
    assert queued_tasks == []


def test_retry_queues_a_failed_piece_again(
    user_client: Client, user: User, composition_factory: Callable, queued_tasks: list,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    failed = composition_factory(user, status=CompositionVersion.Status.FAILED, error="MP3 encoding failed")
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(f"/compositions/{failed.public_id}/retry/")
    assert response.status_code == 302
    version = current(failed)
    assert version.status == CompositionVersion.Status.PENDING
    assert queued_tasks == [("compositions.tasks.composition_version_generate", version.id)]


def test_media_files_are_not_exposed_under_media_url(user_client: Client, done_composition: Composition) -> None:
    assert user_client.get(f"/media/{current(done_composition).mp3_file.name}").status_code == 404
