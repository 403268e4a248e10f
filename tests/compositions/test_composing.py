from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from compositions.errors import NotAllowed, RequestInvalid
from compositions.models import Composition, CompositionVersion
from compositions.services.composing import composition_request, composition_retry
from tests.conftest import current, midi_bytes


def test_request_saves_one_piece_per_variation_each_with_a_pending_first_version(
    user: User, style: str, queued_tasks: list, django_capture_on_commit_callbacks: Callable
) -> None:
    params = {"style": style, "seconds": 5, "variations": 3, "seed": 7}
    with django_capture_on_commit_callbacks(execute=True):
        rows = composition_request(user=user, params=params)

    assert [row.variation_index for row in rows] == [0, 1, 2]
    versions = [current(row) for row in rows]
    assert {row.batch_id for row in rows} == {version.batch_id for version in versions} == {rows[0].batch_id}
    assert all((v.number, v.kind, v.status, v.params["seed"]) == (1, "original", "pending", 7) for v in versions)
    # The whole batch is written by one task, queued for the first version.
    assert queued_tasks == [("compositions.tasks.composition_version_generate", versions[0].id)]


def test_request_queues_nothing_until_the_transaction_commits(
    user: User, style: str, queued_tasks: list, django_capture_on_commit_callbacks: Callable
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        composition_request(user=user, params={"style": style, "seconds": 5})
    assert queued_tasks == []
    assert len(callbacks) == 1


def test_request_stores_the_primer_once_for_the_batch(user: User, style: str, queued_tasks: list) -> None:
    data = midi_bytes([60, 62, 64, 65])
    rows = composition_request(user=user, params={"style": style, "seconds": 5, "variations": 2}, primer=data)
    first, second = (current(row) for row in rows)
    assert first.primer_file.name == second.primer_file.name
    with first.primer_file.open("rb") as f:
        assert f.read() == data


def test_retry_requeues_the_failed_rows_of_the_batch(
    user: User, composition_factory: Callable, queued_tasks: list, django_capture_on_commit_callbacks: Callable
) -> None:
    failed = composition_factory(user, status=CompositionVersion.Status.FAILED, error="MP3 encoding failed",
                                 progress=90)
    with django_capture_on_commit_callbacks(execute=True):
        composition_retry(composition=failed)
    version = current(failed)
    assert (version.status, version.error, version.progress) == (CompositionVersion.Status.PENDING, "", 0)
    assert queued_tasks == [("compositions.tasks.composition_version_generate", version.id)]


def test_retry_refuses_a_composition_that_did_not_fail(
    user: User, composition_factory: Callable, queued_tasks: list
) -> None:
    done = composition_factory(user, status=CompositionVersion.Status.DONE)
    with pytest.raises(NotAllowed):
        composition_retry(composition=done)
    assert queued_tasks == []


def test_request_rejects_an_unknown_style_on_its_field(user: User, queued_tasks: list) -> None:
    with pytest.raises(RequestInvalid) as error:
        composition_request(user=user, params={"style": "polka-metal", "seconds": 5})
    assert list(error.value.errors) == ["style"] and "Unknown style" in error.value.errors["style"][0]
    assert not Composition.objects.exists() and not CompositionVersion.objects.exists()
