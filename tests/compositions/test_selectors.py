from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.http import Http404

from compositions import selectors
from compositions.models import CompositionVersion


def test_list_shows_only_the_users_compositions_newest_first(
    user: User, other_user: User, composition_factory: Callable
) -> None:
    first = composition_factory(user)
    composition_factory(other_user)
    second = composition_factory(user)
    assert list(selectors.composition_list_for_user(user=user)) == [second, first]


def test_get_for_user_is_404_for_another_users_composition(
    user: User, other_user: User, composition_factory: Callable
) -> None:
    theirs = composition_factory(other_user)
    with pytest.raises(Http404):
        selectors.composition_get_for_user(user=user, public_id=theirs.public_id)


def test_status_has_download_urls_only_when_done(user: User, composition_factory: Callable) -> None:
    running = composition_factory(user, status=CompositionVersion.Status.GENERATING, progress=42)
    done = composition_factory(user, status=CompositionVersion.Status.DONE, progress=100)

    running_status = selectors.composition_status(composition=running)
    done_status = selectors.composition_status(composition=done)

    assert (running_status["status"], running_status["progress"], running_status["mp3_url"]) == ("generating", 42, None)
    assert done_status["mp3_url"] == f"/compositions/{done.public_id}/audio.mp3"
    assert done_status["midi_url"] == f"/compositions/{done.public_id}/score.mid"


def test_api_status_points_at_the_token_friendly_file_urls(user: User, composition_factory: Callable) -> None:
    done = composition_factory(user, status=CompositionVersion.Status.DONE, progress=100)
    status = selectors.composition_status(composition=done, for_api=True)
    assert status["mp3_url"] == f"/api/v1/compositions/{done.public_id}/audio.mp3"
    assert status["midi_url"] == f"/api/v1/compositions/{done.public_id}/score.mid"
