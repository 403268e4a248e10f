"""The generation task end to end: the tiny model, real FluidSynth, real ffmpeg, django-q2 in sync mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from pydub import AudioSegment

from compositions import tasks
from compositions.models import Composition, CompositionVersion
from compositions.services.composing import composition_request, composition_retry
from compositions.services.task_writes import composition_version_claim
from ml import pipeline
from ml.audio.render import MAX_TAIL_SECONDS
from ml.data.notes import notes_from_midi, parse_key
from ml.generation.generator import Generator
from ml.pipeline import chord_changes
from tests.conftest import current, midi_bytes


@pytest.fixture
def request_piece(
    user: User, style: str, django_capture_on_commit_callbacks: Callable
) -> Callable[..., list[CompositionVersion]]:
    """Request a piece the way the site does; Q_SYNC runs the task before this returns. Its first versions."""

    def request(primer_midi: bytes | None = None, **params: Any) -> list[CompositionVersion]:
        with django_capture_on_commit_callbacks(execute=True):
            rows = composition_request(
                user=user, params={"style": style, "seconds": 5, "seed": 1, **params}, primer=primer_midi
            )
        return [current(row) for row in rows]

    return request


@pytest.fixture
def generate_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count Generator.generate calls (by number of variations) without changing what they do."""
    calls: list[int] = []
    original = Generator.generate

    def spy(self: Generator, request: Any, progress: Any = None) -> Any:
        calls.append(request.variations)
        return original(self, request, progress)

    monkeypatch.setattr(Generator, "generate", spy)
    return calls


def test_a_five_second_piece_is_composed_rendered_and_stored(request_piece: Callable) -> None:
    [piece] = request_piece()

    assert (piece.status, piece.progress, piece.error) == (CompositionVersion.Status.DONE, 100, "")
    assert piece.model_name == "tiny" and Path(piece.model_path).name == "tiny.keras"
    assert piece.seed == 1 and piece.composition.current_version_id == piece.id
    midi = notes_from_midi(Path(piece.midi_file.path))
    assert midi.end_time == pytest.approx(5, abs=1)
    # The MP3 is the music plus the tail where the last notes and the room die away.
    audio = AudioSegment.from_file(piece.mp3_file.path, format="mp3")
    assert midi.end_time + 0.2 < audio.duration_seconds <= midi.end_time + MAX_TAIL_SECONDS + 0.2
    assert piece.duration_seconds == pytest.approx(audio.duration_seconds, abs=0.2)
    # At the medium dynamics' loudness, as ffmpeg measured the stored MP3.
    assert piece.loudness["integrated_lufs"] == pytest.approx(settings.MUSIC_LOUDNESS_LUFS, abs=1.0)
    assert piece.loudness["true_peak_dbtp"] <= settings.MUSIC_TRUE_PEAK_DBTP
    assert len(midi) == len(piece.notes_json) > 0
    pitch, start, duration, velocity = piece.notes_json[0][:4]
    assert 0 <= pitch <= 127 and start >= 0 and duration > 0 and 1 <= velocity <= 127
    assert piece.primer_end is None


def test_the_piece_keeps_its_chord_changes(request_piece: Callable) -> None:
    [piece] = request_piece(seconds=20, timing_temperature=2.5)

    # The stored changes are the analysis of the written MIDI file, spelled in the key it was written
    # in (the tiny model's overlapping notes make chords; with none, both sides are empty).
    tonic, mode = piece.form_json["key"].split()
    written = chord_changes(notes_from_midi(Path(piece.midi_file.path)), (parse_key(tonic), mode))
    assert [label for _, label in piece.chords_json] == [label for _, label in written]
    assert [start for start, _ in piece.chords_json] == pytest.approx([start for start, _ in written], abs=2e-3)
    starts = [start for start, _ in piece.chords_json]
    assert starts == sorted(starts)
    labels = [label for _, label in piece.chords_json]
    assert all(a != b for a, b in zip(labels, labels[1:]))  # a change each time


def test_the_piece_keeps_the_form_it_was_written_to_and_its_key(request_piece: Callable) -> None:
    [piece] = request_piece(seconds=16, form="AABB", phrase_bars=2, key="D", mode="minor")

    form = piece.form_json
    assert form["form"] == "AABB" and form["key"] == "D minor"
    assert [p["letter"] for p in form["phrases"]] == ["A", "A", "B", "B"]
    assert [p["repeat_of"] for p in form["phrases"]] == [None, 0, None, 2]
    # The phrases tile the piece, whose MIDI ends where the last phrase does.
    ends = [p["end_s"] for p in form["phrases"]]
    assert [p["start_s"] for p in form["phrases"][1:]] == ends[:-1]
    assert notes_from_midi(Path(piece.midi_file.path)).end_time == pytest.approx(ends[-1], abs=1e-3)
    detail = Client()
    detail.force_login(piece.composition.user)
    data = detail.get(f"/api/v1/compositions/{piece.composition.public_id}/").json()
    assert data["form"]["form"] == "AABB" and data["form"]["phrases"][1]["repeat_of"] == 0
    # The metre and tempo it was written in (the style's own metre when none was asked for).
    assert data["form"]["time_signature"] == form["time_signature"] == "4/4"
    assert data["form"]["tempo_bpm"] > 0 and data["form"]["phrases"][0]["section"] == 0


def test_the_row_says_loading_the_model_while_the_model_loads(
    request_piece: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    original = Generator.load

    def spy(self: Generator) -> None:
        seen.extend(CompositionVersion.objects.values_list("status_message", flat=True))
        original(self)

    monkeypatch.setattr(Generator, "load", spy)
    [piece] = request_piece()
    assert seen[0] == "Loading the model"  # generate() calls load() again later, a no-op
    assert piece.status == CompositionVersion.Status.DONE


def test_every_control_reaches_the_written_piece(request_piece: Callable) -> None:
    [piece] = request_piece(
        seconds=None, notes=30, time_signature="6/8", key="A", mode="minor", pitch_low=57, pitch_high=81,
        instrument=24, dynamics="loud", top_k=10, top_p=0.9, timing_temperature=0.8,
    )
    music = notes_from_midi(Path(piece.midi_file.path))
    assert (music.time_signature, music.program) == ((6, 8), 24)
    assert 15 <= len(music) <= 60  # a length in notes plans about that many, in whole bars
    assert 57 <= music.pitch.min() and music.pitch.max() <= 81


def test_a_retry_reproduces_every_stored_control(
    user: User, composition_factory: Callable, django_capture_on_commit_callbacks: Callable
) -> None:
    failed = composition_factory(
        user, status=CompositionVersion.Status.FAILED, seconds=None, notes=24, time_signature="3/4", key="D",
        mode="dorian", pitch_low=50, pitch_high=74, instrument=40, seed=8,
    )
    with django_capture_on_commit_callbacks(execute=True):
        composition_retry(composition=failed)
    version = current(failed)

    assert version.status == CompositionVersion.Status.DONE
    music = notes_from_midi(Path(version.midi_file.path))
    assert (music.time_signature, music.program) == ((3, 4), 40)
    assert 12 <= len(music) <= 48  # a length in notes plans about that many, in whole bars
    assert 50 <= music.pitch.min() and music.pitch.max() <= 74


def test_variations_are_written_by_one_generate_call(request_piece: Callable, generate_calls: list[int]) -> None:
    rows = request_piece(variations=2)

    assert generate_calls == [2]
    assert [row.status for row in rows] == [CompositionVersion.Status.DONE] * 2
    assert rows[0].mp3_file.name != rows[1].mp3_file.name
    assert rows[0].seed != rows[1].seed  # each variation keeps the seed that reproduces it
    assert rows[0].params["seed"] == rows[1].params["seed"] == 1  # and the request as it was asked


def test_running_the_task_again_changes_nothing(request_piece: Callable, generate_calls: list[int]) -> None:
    [piece] = request_piece()
    tasks.composition_version_generate(piece.id)
    after = CompositionVersion.objects.get(id=piece.id)

    assert generate_calls == [1]
    assert (after.mp3_file.name, after.updated_at) == (piece.mp3_file.name, piece.updated_at)


def test_a_continued_midi_file_keeps_its_notes_and_marks_where_the_model_begins(request_piece: Callable) -> None:
    primer = [60, 62, 64, 65, 67, 69, 71, 72]
    [piece] = request_piece(primer_midi=midi_bytes(primer, step=0.25))

    assert piece.status == CompositionVersion.Status.DONE
    assert piece.primer_end == pytest.approx(2.0, abs=0.3)
    assert [row[0] for row in piece.notes_json[: len(primer)]] == primer


def _fails_on_a_worker_without_the_soundfont(
    user: User, composition_factory: Callable, settings: Any, tmp_path: Path
) -> Composition:
    """A piece the web accepted, run by a worker whose SoundFont is gone (another host, a bad deploy)."""
    piece = composition_factory(user)
    settings.SOUNDFONT_PATH = str(tmp_path / "missing.sf2")
    tasks.composition_version_generate(current(piece).id)
    return piece


def test_missing_soundfont_fails_with_a_reason_and_the_worker_carries_on(
    request_piece: Callable, user: User, composition_factory: Callable, settings: Any, tmp_path: Path
) -> None:
    failed = _fails_on_a_worker_without_the_soundfont(user, composition_factory, settings, tmp_path)
    version = current(failed)
    assert (version.status, version.error) == (CompositionVersion.Status.FAILED, "The SoundFont file is missing")

    settings.SOUNDFONT_PATH = ""
    [fine] = request_piece()
    assert fine.status == CompositionVersion.Status.DONE


def test_failed_piece_can_be_tried_again(
    user: User, composition_factory: Callable, settings: Any, tmp_path: Path,
    django_capture_on_commit_callbacks: Callable,
) -> None:
    failed = _fails_on_a_worker_without_the_soundfont(user, composition_factory, settings, tmp_path)
    assert current(failed).status == CompositionVersion.Status.FAILED
    settings.SOUNDFONT_PATH = ""
    with django_capture_on_commit_callbacks(execute=True):
        composition_retry(composition=failed)
    version = current(failed)
    assert (version.status, version.error) == (CompositionVersion.Status.DONE, "")


def test_mp3_encoding_failure_is_reported(request_piece: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    import ml.audio.render

    def broken_encoder(*args: Any, **kwargs: Any) -> None:
        raise ml.audio.render.RenderError("ffmpeg exited with status 1")

    monkeypatch.setattr(ml.audio.render, "encode_mp3_stream", broken_encoder)
    [piece] = request_piece()
    assert (piece.status, piece.error) == (CompositionVersion.Status.FAILED, "MP3 encoding failed")
    assert "ffmpeg exited" in piece.error_detail


@pytest.mark.parametrize(
    ("model_file", "reason"),
    [(b"this is not a keras archive", "The model file is broken"), (None, "The music model file is missing")],
    ids=["broken", "missing"],
)
def test_a_broken_or_missing_model_file_is_reported(
    user: User, composition_factory: Callable, settings: Any, tmp_path: Path, model_file: bytes | None, reason: str
) -> None:
    path = tmp_path / "model.keras"
    if model_file is not None:
        path.write_bytes(model_file)
    settings.MUSIC_MODEL_PATH = path
    piece = composition_factory(user)

    tasks.composition_version_generate(current(piece).id)

    version = current(piece)
    assert (version.status, version.error) == (CompositionVersion.Status.FAILED, reason)


def test_an_unexpected_error_fails_the_piece_without_escaping(
    user: User, composition_factory: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "compose", explode)
    piece = composition_factory(user)

    tasks.composition_version_generate(current(piece).id)

    version = current(piece)
    assert (version.status, version.error) == (CompositionVersion.Status.FAILED, "Something went wrong while composing")
    assert version.error_detail == "RuntimeError: boom"


def test_progress_is_written_in_steps_of_five_percent(
    user: User, composition_factory: Callable, django_assert_max_num_queries: Callable
) -> None:
    piece = composition_factory(user)
    claim = composition_version_claim(version_id=current(piece).id)
    assert claim is not None
    writer = tasks.ProgressWriter(claim)
    with django_assert_max_num_queries(tasks.GENERATION_SHARE // tasks.PROGRESS_STEP):
        for i in range(101):
            writer(i / 100)
    version = current(piece)
    assert (version.progress, version.status_message) == (90, "Generating 90%")


def test_files_a_stopped_run_left_are_replaced_when_the_piece_is_written_again(
    user: User, composition_factory: Callable,
) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from compositions.selectors import media_report

    # A worker stopped between saving the files and marking the version done left them under its names.
    piece = composition_factory(user, attempts=1)
    version = current(piece)
    stem = f"{piece.public_id}-v{version.number}"
    left = [default_storage.save(f"midi/{stem}.mid", ContentFile(b"stale")),
            default_storage.save(f"mp3/{stem}.mp3", ContentFile(b"stale"))]
    assert left == [f"midi/{stem}.mid", f"mp3/{stem}.mp3"]
    tasks.composition_version_generate(version.id)
    version.refresh_from_db()
    assert version.status == CompositionVersion.Status.DONE
    assert [version.midi_file.name, version.mp3_file.name] == left  # its own names, not the storage's next ones
    with default_storage.open(left[0]) as midi:
        assert midi.read() != b"stale"
    assert not media_report().orphans
