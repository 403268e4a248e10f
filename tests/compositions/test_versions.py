"""Versions of a piece: continuing makes one, undo makes any finished one current, and the refusals (409)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client

from compositions import tasks
from compositions.errors import NotAllowed, QuotaExceeded
from compositions.models import Composition, CompositionVersion
from compositions.services.composing import (
    composition_cancel,
    composition_delete,
    composition_request,
    composition_retry,
)
from compositions.services.versions import (
    composition_continue,
    composition_version_create,
    composition_version_delete,
    composition_version_set_current,
)
from tests.compositions.test_apis import token_client
from tests.conftest import current, midi_bytes

DONE = CompositionVersion.Status.DONE


@pytest.fixture
def piece(user: User, composition_factory: Callable[..., Composition], tiny_model_path: Path) -> Composition:
    """A finished piece with small files, written by the tiny model."""
    return composition_factory(user, status=DONE, progress=100, files=True, seed=11, model_name="tiny",
                               model_path=str(tiny_model_path), notes_json=[[60, 0.0, 0.5, 80]])


def _bytes(version: CompositionVersion, field: str = "mp3_file") -> bytes:
    with getattr(version, field).open("rb") as f:
        return bytes(f.read())


def _served(response: Any) -> bytes:
    return b"".join(response.streaming_content)


# -- making a version --------------------------------------------------------------------------------


def test_continuing_a_piece_makes_a_pending_version_2_that_continues_the_current_one(
        piece: Composition, queued_tasks: list, django_capture_on_commit_callbacks: Callable) -> None:
    first = current(piece)
    with django_capture_on_commit_callbacks(execute=True):
        version = composition_continue(composition=piece)
    assert (version.number, version.kind, version.status) == (2, "continue", "pending")
    assert version.change == "continued from version 1" and version.source == first
    assert version.params == {**first.params, "seed": None}
    assert _bytes(version, "primer_file") == _bytes(first, "midi_file")  # it goes on from version 1's notes
    assert queued_tasks == [("compositions.tasks.composition_version_generate", version.id)]
    assert current(piece) == first  # version 1 plays until version 2 is done
    assert Composition.objects.count() == 1  # a new version, not a new piece


@pytest.mark.django_db(transaction=True)
def test_a_continued_version_is_written_and_becomes_the_current_one(
        user: User, style: str, user_client: Client) -> None:
    [piece] = composition_request(user=user, params={"style": style, "seconds": 5, "seed": 3})  # Q_SYNC: written
    first = current(piece)
    assert first.status == DONE

    composition_continue(composition=piece)
    second = current(piece)
    assert (second.number, second.status, second.error) == (2, DONE, "")
    assert second.seed is not None and second.mp3_file.name != first.mp3_file.name
    # Version 1's notes, then the continuation, which starts after them.
    heard = len(first.notes_json)
    assert sorted(note[0] for note in second.notes_json[:heard]) == sorted(note[0] for note in first.notes_json)
    assert len(second.notes_json) > heard and second.primer_end is not None
    assert second.primer_end >= max(row[1] for row in first.notes_json)
    assert min(row[1] for row in second.notes_json[heard:]) >= second.primer_end - 1e-3
    # The page and its files play version 2; version 1 stays a click away.
    page = user_client.get(f"/compositions/{piece.public_id}/").content.decode()
    assert "version 2" in page and "Continued from version 1, seed" in page
    assert _served(user_client.get(f"/compositions/{piece.public_id}/audio.mp3")) == _bytes(second)
    assert _served(user_client.get(f"/compositions/{piece.public_id}/audio.mp3?version=1")) == _bytes(first)


def test_a_piece_that_is_not_done_cannot_get_a_new_version(
        user: User, composition_factory: Callable[..., Composition], queued_tasks: list) -> None:
    for status in ("pending", "generating", "failed", "cancelled"):
        unfinished = composition_factory(user, status=status)
        with pytest.raises(NotAllowed, match="Only a finished piece"):
            composition_continue(composition=unfinished)
    assert CompositionVersion.objects.filter(number=2).count() == 0 and queued_tasks == []


def test_a_second_version_while_one_is_being_written_is_refused(
        piece: Composition, version_factory: Callable[..., CompositionVersion], queued_tasks: list) -> None:
    version_factory(piece, status="generating", files=False)
    with pytest.raises(NotAllowed, match="Version 2 of this piece is still being written"):
        composition_continue(composition=piece)
    assert piece.versions.count() == 2


def test_a_piece_whose_model_is_gone_cannot_be_regenerated(
        piece: Composition, queued_tasks: list, tmp_path: Path, settings: Any) -> None:
    settings.MUSIC_MODEL_PATH = tmp_path / "another.keras"
    CompositionVersion.objects.filter(composition=piece).update(model_name="retired",
                                                                model_path=str(tmp_path / "retired.keras"))
    with pytest.raises(NotAllowed, match=r"The model that wrote this piece \(retired\) is no longer on this site"):
        composition_version_create(composition=current(piece).composition, kind="regenerate",
                                   change="bars 5-8 regenerated", params=current(piece).params)
    assert piece.versions.count() == 1 and queued_tasks == []


def _outside(rows: list[list[float]], start: float, end: float) -> list[tuple[float, int, float, int]]:
    return sorted((round(s, 3), int(p), round(d, 3), int(v)) for p, s, d, v, *_ in rows
                  if s >= end - 1e-3 or s + d <= start + 1e-3)


def _bar_span(version: CompositionVersion, first: int, last: int) -> tuple[float, float]:
    form = version.form_json
    phrase = form["phrases"][0]
    per_beat = (phrase["end_s"] - phrase["start_s"]) / (phrase["end"] - phrase["start"])
    bar = form["bar_beats"] * per_beat
    return phrase["start_s"] + (first - 1) * bar, phrase["start_s"] + last * bar


@pytest.mark.django_db(transaction=True)
def test_a_regenerated_passage_is_written_keeps_every_other_note_and_can_be_undone(
        user: User, style: str, user_client: Client) -> None:
    [piece] = composition_request(user=user, params={"style": style, "seconds": 16, "tempo_bpm": 120,
                                                     "seed": 11})  # Q_SYNC: written
    first = current(piece)
    assert first.status == DONE and first.form_json["bars"] >= 4
    assert [check["control"] for check in first.constraints]  # every version says what was met

    api = token_client(user)
    made = api.post(f"/api/v1/compositions/{piece.public_id}/regenerate/", {"bars": [2, 3], "seed": 5},
                    format="json")
    assert made.status_code == 202, made.json()
    second = current(piece)
    assert (second.number, second.kind, second.status, second.error) == (2, "regenerate", DONE, "")
    assert second.change == "bars 2–3 regenerated from version 1" and second.seed is not None
    start, end = _bar_span(first, 2, 3)
    assert _outside(second.notes_json, start, end) == _outside(first.notes_json, start, end)
    passage = [check for check in second.constraints if check["control"] == "passage"]
    assert passage and passage[0]["met"] is True, second.constraints
    listed = api.get(f"/api/v1/compositions/{piece.public_id}/versions/").json()
    assert [(v["number"], v["kind"], v["current"]) for v in listed] == [(1, "original", False),
                                                                       (2, "regenerate", True)]
    assert listed[1]["constraints"] == second.constraints
    assert api.get(f"/api/v1/compositions/{piece.public_id}/").json()["constraints"] == second.constraints
    assert api.post(f"/api/v1/compositions/{piece.public_id}/versions/1/current/").json()["version"] == 1
    assert current(piece) == first

    # The page's form does the same, and its piece shows what was met.
    response = user_client.post(f"/compositions/{piece.public_id}/regenerate/", {"first_bar": "1", "last_bar": "2"})
    assert response.status_code == 302
    third = current(piece)
    assert (third.number, third.kind, third.status) == (3, "regenerate", DONE)
    page = user_client.get(f"/compositions/{piece.public_id}/").content.decode()
    assert 'id="what-was-met"' in page and "Bars 1–2 regenerated from version 1" in page
    # The metre the piece was written in (a style's own when none was asked for) is named with its bars.
    assert f"{third.form_json['bars']} bars of {third.form_json['time_signature']}" in page
    assert "<dt>Regenerated</dt><dd>bars 1–2 of version 1</dd>" in page


FORM = {"form": "AB", "bars": 8, "bar_beats": 4.0, "key": "C major",
        "phrases": [{"letter": "A", "start": 0.0, "end": 16.0, "first_bar": 1, "last_bar": 4, "repeat_of": None,
                     "varied": False, "cadence": True, "start_s": 0.0, "end_s": 8.0},
                    {"letter": "B", "start": 16.0, "end": 32.0, "first_bar": 5, "last_bar": 8, "repeat_of": None,
                     "varied": False, "cadence": True, "start_s": 8.0, "end_s": 16.0}]}


@pytest.fixture
def eight_bars(piece: Composition) -> Composition:
    """The finished piece, with a form of 8 bars."""
    CompositionVersion.objects.filter(composition=piece).update(form_json=FORM)
    piece.refresh_from_db()
    return piece


@pytest.mark.parametrize(("bars", "message"), [
    ([0, 2], "bars 1 to 8; bars 0-2 are outside it"),
    ([7, 9], "bars 1 to 8; bars 7-9 are outside it"),
    ([5, 4], "empty range"),
    ([1, 8], "whole piece"),
    ([5], "two whole numbers"),
    ([5, 6, 7], "two whole numbers"),
    (["five", 8], "two whole numbers"),
    ([5.5, 8], "two whole numbers"),
    ([True, 8], "two whole numbers"),
    ("5-8", "two whole numbers"),
    (None, ""),
])
def test_bad_bars_are_a_400_naming_bars_and_nothing_is_queued_or_changed(
        eight_bars: Composition, user: User, queued_tasks: list, bars: Any, message: str) -> None:
    response = token_client(user).post(f"/api/v1/compositions/{eight_bars.public_id}/regenerate/",
                                       {"bars": bars, "seed": 3}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["bars"], response.json()
    assert message in response.json()["detail"]
    assert queued_tasks == [] and eight_bars.versions.count() == 1 and current(eight_bars).number == 1


def test_a_bad_seed_or_temperature_is_a_400_naming_it(eight_bars: Composition, user: User,
                                                        queued_tasks: list) -> None:
    api = token_client(user)
    for body, field in (({"bars": [2, 3], "seed": -1}, "seed"), ({"bars": [2, 3], "temperature": 9}, "temperature"),
                        ({"bars": [2, 3], "seed": "x"}, "seed")):
        response = api.post(f"/api/v1/compositions/{eight_bars.public_id}/regenerate/", body, format="json")
        assert response.status_code == 400 and list(response.json()["errors"]) == [field], response.json()
    assert queued_tasks == [] and eight_bars.versions.count() == 1


def test_regenerating_is_refused_while_a_version_is_written_or_the_piece_is_not_done(
        eight_bars: Composition, user: User, composition_factory: Callable[..., Composition],
        version_factory: Callable[..., CompositionVersion], queued_tasks: list) -> None:
    api = token_client(user)
    version_factory(eight_bars, status="generating", files=False)
    busy = api.post(f"/api/v1/compositions/{eight_bars.public_id}/regenerate/", {"bars": [2, 3]}, format="json")
    assert busy.status_code == 409 and "still being written" in busy.json()["detail"]
    pending = composition_factory(user)
    refused = api.post(f"/api/v1/compositions/{pending.public_id}/regenerate/", {"bars": [2, 3]}, format="json")
    assert refused.status_code == 409 and refused.json()["detail"] == (
        "Only a finished piece can have a passage regenerated.")
    assert queued_tasks == []


def test_regenerating_is_refused_when_the_model_is_gone(
        eight_bars: Composition, user: User, tmp_path: Path, settings: Any, queued_tasks: list) -> None:
    settings.MUSIC_MODEL_PATH = tmp_path / "another.keras"
    CompositionVersion.objects.filter(composition=eight_bars).update(model_name="retired",
                                                                     model_path=str(tmp_path / "retired.keras"))
    response = token_client(user).post(f"/api/v1/compositions/{eight_bars.public_id}/regenerate/",
                                       {"bars": [2, 3]}, format="json")
    assert response.status_code == 409 and "(retired) is no longer on this site" in response.json()["detail"]
    assert queued_tasks == []


def test_the_api_queues_a_regenerated_passage_with_its_bars_seed_and_temperature(
        eight_bars: Composition, user: User, queued_tasks: list, django_capture_on_commit_callbacks: Callable) -> None:
    base = f"/api/v1/compositions/{eight_bars.public_id}"
    with django_capture_on_commit_callbacks(execute=True):
        made = token_client(user).post(f"{base}/regenerate/", {"bars": [5, 8], "seed": 9, "temperature": 0.7},
                                       format="json")
    assert made.status_code == 202 and made["Location"] == f"{base}/versions/2/"
    assert (made.json()["kind"], made.json()["status"], made.json()["constraints"]) == ("regenerate", "pending", [])
    version = eight_bars.versions.get(number=2)
    assert (version.params["bars"], version.params["seed"], version.params["temperature"]) == ([5, 8], 9, 0.7)
    assert version.change == "bars 5–8 regenerated from version 1" and len(queued_tasks) == 1


def test_bad_bars_on_the_page_show_the_error_with_status_400_and_keep_what_was_typed(
        eight_bars: Composition, user_client: Client, queued_tasks: list) -> None:
    url = f"/compositions/{eight_bars.public_id}/regenerate/"
    for sent, message in (({"first_bar": "7", "last_bar": "12"}, "bars 7-12 are outside it"),
                          ({"first_bar": "", "last_bar": "3"}, "two whole numbers"),
                          ({"bars": "6-2"}, "empty range"),
                          ({"first_bar": "1", "last_bar": "8"}, "use Again")):
        response = user_client.post(url, sent)
        html = response.content.decode()
        assert response.status_code == 400 and message in html and 'id="bars-error"' in html, sent
    response = user_client.post(url, {"first_bar": "7", "last_bar": "12", "seed": "x"})
    assert response.status_code == 400 and 'value="12"' in response.content.decode()
    bad_seed = user_client.post(url, {"first_bar": "2", "last_bar": "3", "seed": "x"})
    assert bad_seed.status_code == 400 and 'id="seed-error"' in bad_seed.content.decode()
    assert queued_tasks == [] and eight_bars.versions.count() == 1
    page = user_client.get(f"/compositions/{eight_bars.public_id}/").content.decode()
    assert 'id="regenerate"' in page and 'max="8"' in page
    ok = user_client.post(url, {"bars": "5–8", "seed": "4"})
    assert ok.status_code == 302 and eight_bars.versions.get(number=2).params["bars"] == [5, 8]


def test_the_page_shows_what_was_met_in_plain_words(piece: Composition, user_client: Client) -> None:
    CompositionVersion.objects.filter(composition=piece).update(constraints=[
        {"control": "key", "asked": "D major", "did": "heard in D major", "met": True},
        {"control": "metre", "asked": "4/4", "did": "beat 1 heaviest in 40% of bars", "met": False},
        {"control": "form", "asked": "AABA", "did": "A A B A′", "met": None}])
    html = user_client.get(f"/compositions/{piece.public_id}/").content.decode()
    assert 'id="what-was-met"' in html and "heard in D major" in html and "<strong>NOT met</strong>" in html
    assert html.count('<td class="verdict">Met</td>') == 1 and "Not measured" in html


# -- harmonising ------------------------------------------------------------------------------------------


def _placed(rows: list[list[float]]) -> set[tuple[int, float]]:
    """(pitch, onset from the first onset) of each note."""
    first = min(row[1] for row in rows)
    return {(int(row[0]), round(row[1] - first, 2)) for row in rows}


@pytest.mark.django_db(transaction=True)
def test_harmonising_a_piece_makes_a_version_that_keeps_its_melody_on_top(
        user: User, style: str, user_client: Client) -> None:
    [piece] = composition_request(user=user, params={"style": style, "seconds": 8, "tempo_bpm": 120, "seed": 4})
    first = current(piece)
    response = token_client(user).post(f"/api/v1/compositions/{piece.public_id}/versions/",
                                       {"kind": "harmonise"}, format="json")
    assert response.status_code == 202, response.json()
    second = current(piece)
    assert (second.number, second.kind, second.status, second.error) == (2, "harmonise", DONE, "")
    # The tiny model is monophonic: it need not write good voices, but the melody is kept note for note,
    # and the report says how much of it is the top voice.
    assert _placed(first.notes_json) <= _placed(second.notes_json)
    assert [check["asked"] for check in second.constraints if check["control"] == "melody"] == [
        f"{len(first.notes_json)} melody notes on top"]
    # And on the page: a button next to Continue.
    assert user_client.post(f"/compositions/{piece.public_id}/again/", {"harmonise": "1"}).status_code == 302
    assert current(piece).number == 3


@pytest.mark.django_db(transaction=True)
def test_composing_with_harmonise_writes_voices_under_an_uploaded_melody(user: User, style: str) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    melody = SimpleUploadedFile("tune.mid", midi_bytes([60, 62, 64, 65, 67, 65, 64, 62, 60]))
    response = token_client(user).post("/api/v1/compositions/", {"style": style, "harmonise": "true",
                                                                 "primer": melody}, format="multipart")
    assert response.status_code == 202, response.json()
    piece = Composition.objects.get()
    version = current(piece)
    assert (version.status, version.error, version.params["harmonise"]) == (DONE, "", True)
    assert _placed([[p, i * 0.5, 0.5, 80] for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62, 60])]) <= _placed(
        version.notes_json)
    assert [check["asked"] for check in version.constraints if check["control"] == "melody"] == [
        "9 melody notes on top"]


def _chords_midi() -> bytes:
    import io

    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    for i in range(4):
        for pitch in (60, 64, 67):
            piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=i, end=i + 1))
    pm.instruments.append(piano)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "message"), [
    ("chords", "only chords"),
    ("long", "at most 64 bars"),
    (None, "Attach the melody"),
    (b"not midi", ""),
])
def test_a_melody_that_cannot_be_harmonised_is_a_400_naming_the_file(
        user: User, style: str, queued_tasks: list, data: Any, message: str) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = {"chords": _chords_midi(), "long": midi_bytes([60, 62] * 140, step=0.5)}
    body: dict[str, Any] = {"style": style, "harmonise": "true"}
    raw = files.get(data, data) if isinstance(data, str) else data
    if raw is not None:
        body["primer"] = SimpleUploadedFile("tune.mid", raw)
    response = token_client(user).post("/api/v1/compositions/", body, format="multipart")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["primer"], response.json()
    assert message in response.json()["detail"]
    assert queued_tasks == [] and not Composition.objects.exists()


@pytest.mark.parametrize(("notes", "message"), [
    ([], "holds no notes"),
    ([[60 + step, beat, 1.0, 80] for beat in (0.0, 1.0, 2.0) for step in (0, 4, 7)], "only chords"),
    ([[60, beat * 0.5, 0.5, 80] for beat in range(300)], "at most 64 bars"),
])
def test_a_piece_whose_melody_cannot_be_harmonised_is_a_400_naming_kind(
        piece: Composition, user: User, queued_tasks: list, notes: list, message: str) -> None:
    CompositionVersion.objects.filter(composition=piece).update(notes_json=notes)
    response = token_client(user).post(f"/api/v1/compositions/{piece.public_id}/versions/", {"kind": "harmonise"},
                                       format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["kind"], response.json()
    assert message in response.json()["detail"] and queued_tasks == [] and piece.versions.count() == 1


def test_the_compose_form_offers_harmonise_next_to_the_upload(user_client: Client, style: str,
                                                             queued_tasks: list) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    page = user_client.get("/compositions/new/").content.decode()
    assert 'name="harmonise"' in page and "Harmonise this melody instead of continuing it" in page
    refused = user_client.post("/compositions/new/", {"style": style, "harmonise": "on",
                                                      "primer": SimpleUploadedFile("c.mid", _chords_midi())})
    assert refused.status_code == 400 and "only chords" in refused.content.decode() and queued_tasks == []
    made = user_client.post("/compositions/new/", {"style": style, "harmonise": "on",
                                                   "primer": SimpleUploadedFile("t.mid", midi_bytes([60, 62, 64]))})
    assert made.status_code == 302 and current(Composition.objects.get()).params["harmonise"] is True
    page = user_client.get(made["Location"]).content.decode()
    assert "Harmonises" in page and "Continues" not in page


def test_at_the_cap_a_new_version_is_refused_and_failed_ones_do_not_count(
        piece: Composition, version_factory: Callable[..., CompositionVersion], settings: Any,
        queued_tasks: list) -> None:
    settings.MAX_VERSIONS_PER_PIECE = 2
    version_factory(piece, status="failed", files=False)
    version_factory(piece, status="cancelled", files=False)
    composition_continue(composition=piece)  # version 4: the second that counts
    CompositionVersion.objects.filter(composition=piece, number=4).update(status=DONE)
    with pytest.raises(NotAllowed, match=r"This piece has 2 versions, the most it keeps \(2\)"):
        composition_continue(composition=piece)


def test_versions_count_towards_the_quotas_like_pieces(
        piece: Composition, user: User, style: str, settings: Any, queued_tasks: list) -> None:
    settings.QUOTA_ACTIVE_PIECES = 1
    composition_continue(composition=piece)  # one version being written: the quota is full
    with pytest.raises(QuotaExceeded, match="1 pieces queued or being written"):
        composition_request(user=user, params={"style": style, "seconds": 5})
    settings.QUOTA_ACTIVE_PIECES, settings.QUOTA_PIECES_PER_DAY = 8, 2  # the piece's two versions today
    with pytest.raises(QuotaExceeded, match="2 pieces in the last 24 hours"):
        composition_request(user=user, params={"style": style, "seconds": 5})


# -- undo, cancel, retry, delete ---------------------------------------------------------------------


def test_undo_makes_any_finished_version_current_again(
        piece: Composition, version_factory: Callable[..., CompositionVersion]) -> None:
    first = current(piece)
    second = version_factory(piece, current=True)
    assert current(piece) == second
    composition_version_set_current(version=first)
    assert current(piece) == first
    composition_version_set_current(version=second)  # and redo
    assert current(piece) == second


def test_an_unfinished_version_cannot_be_made_current(
        piece: Composition, version_factory: Callable[..., CompositionVersion]) -> None:
    for status in ("pending", "failed"):
        version = version_factory(piece, status=status, files=False)
        with pytest.raises(NotAllowed, match="Only a finished version can be made current"):
            composition_version_set_current(version=version)
    assert current(piece).number == 1


def test_cancel_stops_the_new_version_and_the_piece_keeps_playing_the_current_one(
        piece: Composition, version_factory: Callable[..., CompositionVersion]) -> None:
    running = version_factory(piece, status="generating", files=False)
    composition_cancel(composition=piece)
    running.refresh_from_db()
    assert running.status == "cancelled" and current(piece).number == 1


def test_try_again_writes_the_newest_version_again_when_it_failed(
        piece: Composition, version_factory: Callable[..., CompositionVersion], queued_tasks: list,
        django_capture_on_commit_callbacks: Callable) -> None:
    failed = version_factory(piece, status="failed", error="MP3 encoding failed", files=False)
    with django_capture_on_commit_callbacks(execute=True):
        composition_retry(composition=piece)
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("pending", "")
    assert queued_tasks == [("compositions.tasks.composition_version_generate", failed.id)]
    assert current(piece).number == 1


def test_deleting_a_version_deletes_its_files_but_never_the_current_one(
        piece: Composition, version_factory: Callable[..., CompositionVersion]) -> None:
    old = current(piece)
    newer = version_factory(piece, current=True)
    with pytest.raises(NotAllowed, match="The current version cannot be deleted"):
        composition_version_delete(version=newer)
    running = version_factory(piece, status="rendering", files=False)
    with pytest.raises(NotAllowed, match="cancel it first"):
        composition_version_delete(version=running)
    files = [old.mp3_file.name, old.midi_file.name]
    composition_version_delete(version=old)
    assert list(piece.versions.values_list("number", flat=True)) == [2, 3]
    assert not any(default_storage.exists(name) for name in files)


def test_deleting_a_piece_deletes_its_versions_and_their_files(
        piece: Composition, version_factory: Callable[..., CompositionVersion]) -> None:
    version_factory(piece, current=True)
    files = [name for version in piece.versions.all() for name in (version.mp3_file.name, version.midi_file.name)]
    assert len(files) == 4 and all(default_storage.exists(name) for name in files)
    composition_delete(composition=piece)
    assert not CompositionVersion.objects.exists()
    assert not any(default_storage.exists(name) for name in files)


# -- the piece's links, plays and gallery follow its current version ---------------------------------


def test_share_links_plays_and_the_gallery_belong_to_the_piece_and_play_its_current_version(
        piece: Composition, version_factory: Callable[..., CompositionVersion], client: Client) -> None:
    from compositions.services.sharing import composition_share

    piece = composition_share(composition=piece, visibility="public")
    link = piece.share_token
    assert client.post(f"/compositions/{piece.public_id}/play/").json() == {"counted": True}
    second = version_factory(piece, current=True, detected_key="A minor")
    piece.refresh_from_db()
    assert (piece.play_count, piece.share_token) == (1, link)  # the piece's own, whichever version plays
    shared = client.get(f"/s/{piece.share_token}/").content.decode()
    assert "A minor" in shared and "Versions" not in shared  # others hear the current version only
    assert _served(client.get(f"/s/{piece.share_token}/audio.mp3")) == _bytes(second)
    gallery = client.get("/gallery/").content.decode()
    assert "A minor" in gallery and gallery.count(f"/compositions/{piece.public_id}/audio.mp3") == 1


# -- the API ---------------------------------------------------------------------------------------------


def test_the_api_lists_versions_with_what_changed_and_their_files(
        piece: Composition, version_factory: Callable[..., CompositionVersion], user: User) -> None:
    version_factory(piece, current=True, seed=42, change="bars 5–8 regenerated", kind="regenerate")
    listed = token_client(user).get(f"/api/v1/compositions/{piece.public_id}/versions/").json()
    assert [(v["number"], v["kind"], v["summary"], v["current"], v["status"]) for v in listed] == [
        (1, "original", "Original, seed 11", False, "done"),
        (2, "regenerate", "Bars 5–8 regenerated, seed 42", True, "done")]
    base = f"/api/v1/compositions/{piece.public_id}"
    assert (listed[0]["mp3_url"], listed[0]["midi_url"]) == (f"{base}/audio.mp3?version=1",
                                                             f"{base}/score.mid?version=1")
    assert listed[1]["mp3_url"] == f"{base}/audio.mp3"  # the current version is the piece's own file
    detail = token_client(user).get(f"{base}/").json()
    assert (detail["version"], detail["versions_url"]) == (2, f"{base}/versions/")


def test_the_api_continues_a_piece_polls_the_version_and_makes_one_current(
        piece: Composition, user: User, queued_tasks: list) -> None:
    api = token_client(user)
    base = f"/api/v1/compositions/{piece.public_id}"
    made = api.post(f"{base}/versions/", {"kind": "continue"}, format="json")
    assert made.status_code == 202 and made["Location"] == f"{base}/versions/2/"
    assert (made.json()["number"], made.json()["status"], made.json()["current"]) == (2, "pending", False)
    polled = api.get(made["Location"]).json()
    assert (polled["status"], polled["mp3_url"]) == ("pending", None)
    # Its files are not there yet: 409 with the progress, as for a piece.
    assert api.get(f"{base}/audio.mp3?version=2").status_code == 409
    refused = api.post(f"{base}/versions/", {"kind": "continue"}, format="json")
    assert refused.status_code == 409 and "still being written" in refused.json()["detail"]
    assert api.post(f"{base}/versions/2/current/").status_code == 409
    CompositionVersion.objects.filter(composition=piece, number=2).update(status=DONE)
    switched = api.post(f"{base}/versions/2/current/")
    assert switched.status_code == 200 and switched.json()["version"] == 2
    assert api.delete(f"{base}/versions/2/").status_code == 409  # the current one
    assert api.post(f"{base}/versions/1/current/").json()["version"] == 1
    assert api.delete(f"{base}/versions/2/").status_code == 204
    assert api.get(f"{base}/versions/2/").status_code == 404


def test_the_api_names_a_bad_kind_and_refuses_an_unfinished_piece(
        user: User, composition_factory: Callable[..., Composition], piece: Composition, queued_tasks: list) -> None:
    api = token_client(user)
    bad = api.post(f"/api/v1/compositions/{piece.public_id}/versions/", {"kind": "remix"}, format="json")
    assert bad.status_code == 400 and list(bad.json()["errors"]) == ["kind"]
    pending = composition_factory(user)
    refused = api.post(f"/api/v1/compositions/{pending.public_id}/versions/", {"kind": "continue"}, format="json")
    assert refused.status_code == 409 and refused.json() == {"detail": "Only a finished piece can be continued."}
    assert api.get(f"/api/v1/compositions/{piece.public_id}/audio.mp3?version=9").status_code == 404


# -- the page ---------------------------------------------------------------------------------------------


def test_the_page_lists_versions_with_a_player_each_and_make_current(
        piece: Composition, version_factory: Callable[..., CompositionVersion], user_client: Client) -> None:
    version_factory(piece, current=True, seed=7)
    html = user_client.get(f"/compositions/{piece.public_id}/").content.decode()
    assert 'id="versions"' in html and "Continued from version 1, seed 7" in html and "Original, seed 11" in html
    assert f'src="/compositions/{piece.public_id}/audio.mp3?version=1"' in html
    assert f'action="/compositions/{piece.public_id}/versions/1/current/"' in html
    assert f'action="/compositions/{piece.public_id}/versions/2/current/"' not in html  # it is current
    response = user_client.post(f"/compositions/{piece.public_id}/versions/1/current/")
    assert response.status_code == 302 and current(piece).number == 1


def test_the_page_follows_a_version_being_written_while_the_current_one_plays(
        piece: Composition, version_factory: Callable[..., CompositionVersion], user_client: Client) -> None:
    version_factory(piece, status="generating", progress=40, status_message="Generating 40%", files=False)
    html = user_client.get(f"/compositions/{piece.public_id}/").content.decode()
    assert f'data-status-url="/compositions/{piece.public_id}/status.json?version=2"' in html
    assert "<audio controls" in html and "Continue this piece" not in html
    status = user_client.get(f"/compositions/{piece.public_id}/status.json?version=2").json()
    assert (status["status"], status["progress"], status["message"]) == ("generating", 40, "Generating 40%")


def test_continue_on_the_page_makes_a_version_and_stays_on_the_piece(
        piece: Composition, user_client: Client, queued_tasks: list) -> None:
    response = user_client.post(f"/compositions/{piece.public_id}/again/", {"continue": "1"})
    assert response["Location"] == f"/compositions/{piece.public_id}/"
    assert piece.versions.count() == 2 and Composition.objects.count() == 1


def test_a_refused_version_is_a_message_on_the_page(
        piece: Composition, version_factory: Callable[..., CompositionVersion], user_client: Client,
        client_for: Callable, other_user: User) -> None:
    version_factory(piece, status="pending", files=False)
    page = user_client.post(f"/compositions/{piece.public_id}/versions/2/current/", follow=True)
    assert "Only a finished version can be made current." in page.content.decode()
    intruder = client_for(other_user)
    for action in ("current", "delete"):
        assert intruder.post(f"/compositions/{piece.public_id}/versions/1/{action}/").status_code == 404
    assert user_client.post(f"/compositions/{piece.public_id}/versions/9/current/").status_code == 404


def test_tasks_module_names_the_task_services_queue() -> None:
    from compositions.services.queueing import GENERATE_TASK

    assert GENERATE_TASK == f"compositions.tasks.{tasks.composition_version_generate.__name__}"


def test_the_admin_shows_a_pieces_versions_with_their_technical_detail(
        piece: Composition, version_factory: Callable[..., CompositionVersion], admin_client: Client) -> None:
    version_factory(piece, status="failed", error="MP3 encoding failed", error_detail="RenderError: ffmpeg exited",
                    files=False)
    listing = admin_client.get("/admin/compositions/composition/?current_version__status__exact=done")
    assert listing.status_code == 200 and piece.display_title in listing.content.decode()
    page = admin_client.get(f"/admin/compositions/composition/{piece.id}/change/").content.decode()
    assert "RenderError: ffmpeg exited" in page and "continued from version 1" in page
