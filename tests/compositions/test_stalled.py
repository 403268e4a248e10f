"""Pieces a dead worker left half-done are picked up again instead of spinning forever."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compositions.errors import NotAllowed
from compositions.models import Composition, CompositionVersion
from compositions.services.composing import composition_retry
from compositions.tasks import composition_version_generate
from tests.conftest import current


def _age(composition: Composition, seconds: float) -> None:
    CompositionVersion.objects.filter(id=current(composition).id).update(
        updated_at=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.django_db(transaction=True)
def test_task_delivered_again_finishes_a_piece_its_dead_worker_left_generating(
        user: User, composition_factory: Callable[..., Composition], settings: Any) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.GENERATING, progress=40)
    _age(piece, settings.Q_STALL_SECONDS + 60)
    composition_version_generate(current(piece).id)
    version = current(piece)
    assert version.status == CompositionVersion.Status.DONE and version.mp3_file


@pytest.mark.django_db(transaction=True)
def test_a_piece_that_is_still_being_written_is_not_taken_twice(
        user: User, composition_factory: Callable[..., Composition]) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.GENERATING, progress=40)
    composition_version_generate(current(piece).id)
    version = current(piece)
    assert version.status == CompositionVersion.Status.GENERATING and version.progress == 40


def test_stalled_piece_offers_try_again_and_retry_requeues_it(
        user: User, user_client: Client, composition_factory: Callable[..., Composition], settings: Any) -> None:
    settings.Q_SYNC = False  # only check that it is queued again; the worker is not running here
    piece = composition_factory(user, status=CompositionVersion.Status.RENDERING, progress=90)
    page = user_client.get(reverse("compositions:detail", args=[piece.public_id]))
    assert b"Try again" not in page.content
    with pytest.raises(NotAllowed, match="failed, cancelled or stalled"):
        composition_retry(composition=piece)
    _age(piece, settings.Q_STALL_SECONDS + 60)
    page = user_client.get(reverse("compositions:detail", args=[piece.public_id]))
    assert b"its worker went away" in page.content and b"Try again" in page.content
    composition_retry(composition=piece)
    version = current(piece)
    assert version.status == CompositionVersion.Status.PENDING and version.progress == 0
