"""A piece's score: engraved by a worker after the piece is done, stored, shown and downloadable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client
from rest_framework.test import APIClient

from compositions import tasks
from compositions.models import CompositionVersion
from compositions.services.accounts import api_token_create
from compositions.services.composing import composition_request
from ml.audio import score as score_module
from tests.conftest import current


@pytest.fixture
def api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    return client


def test_a_done_piece_gets_its_score_stored_shown_and_downloadable(
    compose: Callable[..., CompositionVersion], user_client: Client, api: APIClient
) -> None:
    version = compose()
    assert version.status == CompositionVersion.Status.DONE
    assert version.score_state == "ready" and version.score_error == ""
    assert default_storage.exists(version.score_svg.name) and default_storage.exists(version.score_musicxml.name)
    assert version.score_bars[0] == 0.0 and len(version.score_bars) >= 1
    public_id = version.composition.public_id

    page = user_client.get(f"/compositions/{public_id}/").content.decode()
    assert 'id="score-view"' in page and "Download MusicXML" in page
    svg = user_client.get(f"/compositions/{public_id}/score.svg")
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml"
    assert "script-src" not in svg["Content-Security-Policy"] and "default-src 'none'" in svg["Content-Security-Policy"]
    assert b"<svg" in b"".join(svg.streaming_content)
    xml = user_client.get(f"/compositions/{public_id}/score.musicxml?download=1")
    assert xml.status_code == 200 and "attachment" in xml["Content-Disposition"]
    assert b"score-partwise" in b"".join(xml.streaming_content)

    detail = api.get(f"/api/v1/compositions/{public_id}/").json()
    assert detail["score"]["state"] == "ready" and detail["score"]["bar_times"] == version.score_bars
    assert api.get(detail["score"]["svg_url"]).status_code == 200
    assert api.get(detail["score"]["musicxml_url"]).status_code == 200


def test_a_piece_the_engraver_cannot_write_plays_and_says_why_it_has_no_score(
    compose: Callable[..., CompositionVersion], user_client: Client, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise score_module.ScoreError("Engraving the score took longer than 60 s.")

    monkeypatch.setattr(score_module, "engrave_apart", refuse)
    version = compose()
    assert version.status == CompositionVersion.Status.DONE and version.mp3_file
    assert version.score_state == "none" and "longer than 60 s" in version.score_error
    public_id = version.composition.public_id
    assert "No score for this piece: Engraving the score took longer" in \
        user_client.get(f"/compositions/{public_id}/").content.decode()
    answer = api.get(f"/api/v1/compositions/{public_id}/score.svg")
    assert answer.status_code == 404 and "longer than 60 s" in answer.json()["detail"]


def test_an_engraver_that_crashes_leaves_the_piece_done(
    compose: Callable[..., CompositionVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(score_module, "engrave_apart", crash)
    version = compose()
    assert version.status == CompositionVersion.Status.DONE
    assert version.score_error == "The score could not be engraved (MemoryError)."


def test_while_the_score_is_engraved_it_is_409_and_the_page_waits_for_it(
    user: User, style: str, user_client: Client, api: APIClient, django_capture_on_commit_callbacks: Callable,
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(tasks, "composition_version_follow_up", lambda version_id: None)  # not engraved yet
    with django_capture_on_commit_callbacks(execute=True):
        [row] = composition_request(user=user, params={"style": style, "seconds": 5, "seed": 2})
    version = current(row)
    version.refresh_from_db()
    assert version.score_state == "pending"
    assert api.get(f"/api/v1/compositions/{row.public_id}/score.svg").status_code == 409
    assert 'id="score-pending"' in user_client.get(f"/compositions/{row.public_id}/").content.decode()
    # The task, run again (a redelivery), engraves it once; a third run changes nothing.
    monkeypatch.undo()
    settings.SCORE_TIMEOUT_SECONDS = 60
    tasks.composition_version_follow_up(version.id)
    version.refresh_from_db()
    first = version.score_svg.name
    assert version.score_state == "ready"
    tasks.composition_version_follow_up(version.id)
    version.refresh_from_db()
    assert version.score_svg.name == first


def test_deleting_a_piece_removes_its_score_files(
    compose: Callable[..., CompositionVersion], user_client: Client
) -> None:
    version = compose()
    names = [version.score_svg.name, version.score_musicxml.name]
    assert all(default_storage.exists(name) for name in names)
    user_client.post(f"/compositions/{version.composition.public_id}/delete/")
    assert not any(default_storage.exists(name) for name in names)
