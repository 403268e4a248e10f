"""The task's writes are guarded services: no version moves backwards, no run overwrites its successor,
and the reconciler gives every unfinished piece (every version being written) a task or a reason."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from compositions import selectors, tasks
from compositions.errors import NotAllowed
from compositions.models import Composition, CompositionVersion
from compositions.services import queueing
from compositions.services.composing import composition_cancel
from compositions.services.reconciling import composition_reconcile
from compositions.services.task_writes import (
    FinishedVersion,
    composition_version_claim,
    composition_version_fail,
    composition_version_finish,
    composition_version_progress,
    composition_version_rendering,
    composition_version_score,
)
from compositions.services.training import training_request
from tests.conftest import current


def _age(composition: Composition, seconds: float, field: str = "updated_at") -> None:
    """Move a time of the piece's current version into the past."""
    CompositionVersion.objects.filter(id=current(composition).id).update(
        **{field: timezone.now() - timedelta(seconds=seconds)})


def _media_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_the_cluster_settings_let_every_job_finish_before_it_is_delivered_again() -> None:
    q = django_settings.Q_CLUSTER
    assert q["retry"] > q["timeout"] == django_settings.Q_TIMEOUT
    assert q["retry"] > django_settings.TRAINING_TIMEOUT > django_settings.Q_TIMEOUT
    assert q["max_attempts"] == django_settings.Q_MAX_ATTEMPTS >= 2
    assert django_settings.Q_STALL_SECONDS >= 3 * django_settings.Q_HEARTBEAT_SECONDS


def test_training_is_queued_with_its_own_time_limit(db: None, monkeypatch: pytest.MonkeyPatch,
                                                     django_capture_on_commit_callbacks: Callable) -> None:
    from compositions.models import TrainingDataset

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(queueing, "async_task", lambda func, *args, **kwargs: calls.append({"func": func, **kwargs}))
    dataset = TrainingDataset.objects.create(name="bach", style="chorale", source="corpus")
    with django_capture_on_commit_callbacks(execute=True):
        training_request(datasets=[dataset], out_path=Path("/tmp/x.keras"))
    assert calls[0]["timeout"] == django_settings.TRAINING_TIMEOUT


@pytest.mark.django_db(transaction=True)
def test_a_second_delivery_of_a_finished_task_changes_nothing(
        user: User, composition_factory: Callable[..., Composition], settings: Any) -> None:
    piece = composition_factory(user)
    tasks.composition_version_generate(current(piece).id)
    version = current(piece)
    files, finished_at = _media_files(Path(settings.MEDIA_ROOT)), version.updated_at
    assert version.status == CompositionVersion.Status.DONE and version.attempts == 1

    tasks.composition_version_generate(version.id)
    version = current(piece)
    assert (version.status, version.attempts, version.updated_at) == (CompositionVersion.Status.DONE, 1, finished_at)
    assert _media_files(Path(settings.MEDIA_ROOT)) == files


def test_a_run_that_was_given_up_for_dead_cannot_write_over_its_successor(
        user: User, composition_factory: Callable[..., Composition], settings: Any) -> None:
    piece = composition_factory(user)
    version_id = current(piece).id
    old = composition_version_claim(version_id=version_id)
    assert old is not None
    _age(piece, settings.Q_STALL_SECONDS + 5)
    new = composition_version_claim(version_id=version_id)
    assert new is not None and new.token != old.token

    assert composition_version_progress(claim=old, percent=50) == 0
    assert composition_version_rendering(claim=old, percent=90) == 0
    assert composition_version_fail(claim=old, reason="late", detail="") == 0
    stray = default_storage.save("mp3/stray.mp3", ContentFile(b"ID3"))
    finished = composition_version_finish(claim=old, finished=FinishedVersion(version_id, stray, stray, {}))
    assert not finished and not default_storage.exists(stray)  # the dead run's files go
    version = current(piece)
    assert (version.status, version.claim, version.attempts, version.error) == (
        CompositionVersion.Status.GENERATING, new.token, 2, "")


def test_a_done_piece_never_moves_back(user: User, composition_factory: Callable[..., Composition]) -> None:
    piece = composition_factory(user)
    version_id = current(piece).id
    claim = composition_version_claim(version_id=version_id)
    assert claim is not None
    CompositionVersion.objects.filter(id=version_id).update(status=CompositionVersion.Status.DONE)
    assert composition_version_progress(claim=claim, percent=10, message="Generating 10%") == 0
    assert composition_version_rendering(claim=claim, percent=90) == 0
    assert composition_version_claim(version_id=version_id) is None
    assert current(piece).status == CompositionVersion.Status.DONE


def test_a_piece_started_too_often_is_failed_with_a_reason(
        user: User, composition_factory: Callable[..., Composition], settings: Any) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.GENERATING, attempts=settings.Q_MAX_ATTEMPTS)
    _age(piece, settings.Q_STALL_SECONDS + 5)
    assert composition_version_claim(version_id=current(piece).id) is None
    version = current(piece)
    assert version.status == CompositionVersion.Status.FAILED and "again and again" in version.error


# -- the reconciler --------------------------------------------------------------------------------


@pytest.fixture
def orm_queue(settings: Any) -> None:
    """Queue into the test database's ORM broker, as the default set-up does (no worker runs here)."""
    settings.Q_SYNC = False


def test_a_pending_piece_whose_task_vanished_is_queued_again_once(
        orm_queue: None, user: User, composition_factory: Callable[..., Composition], settings: Any,
        django_capture_on_commit_callbacks: Callable) -> None:
    piece = composition_factory(user)
    _age(piece, settings.Q_ORPHAN_SECONDS + 5, "created_at")
    assert selectors.queued_version_ids() == set()
    with django_capture_on_commit_callbacks(execute=True):
        counts = composition_reconcile()
    assert counts["orphaned"] == 1
    version = current(piece)
    assert selectors.queued_version_ids() == {version.id}
    assert version.queue_count == 1 and version.queued_at is not None

    _age(piece, settings.Q_ORPHAN_SECONDS + 5, "queued_at")
    with django_capture_on_commit_callbacks(execute=True):
        assert composition_reconcile()["orphaned"] == 0  # its task is in the queue: leave it
    assert OrmQ.objects.count() == 1


def _cluster_alive_since(born: Any) -> None:
    """Report a cluster to the broker as django-q2's sentinel does every few seconds (its Stat)."""
    from types import SimpleNamespace

    from django_q.brokers import get_broker
    from django_q.status import Stat

    empty = SimpleNamespace(qsize=lambda: 0)
    sentinel = SimpleNamespace(
        parent_pid=None, pid=os.getpid(), cluster_id=uuid.uuid4(), broker=get_broker(), tob=born, reincarnations=0,
        status=lambda: "Working", result_queue=empty, task_queue=empty, monitor=None, pusher=None, pool=[],
    )
    Stat(sentinel).save()


def test_a_task_handed_out_to_a_cluster_that_stopped_does_not_keep_its_piece_waiting_for_hours(
        orm_queue: None, user: User, composition_factory: Callable[..., Composition], settings: Any,
        django_capture_on_commit_callbacks: Callable) -> None:
    """A cluster stopped past its grace period can take a task with it before the task claims its piece:
    the ORM broker keeps it, locked until `retry` (hours). Once every live cluster is younger than the
    hand-out, the piece is queued again."""
    from django_q.brokers import get_broker

    piece = composition_factory(user)
    with django_capture_on_commit_callbacks(execute=True):
        queueing.batch_queue(version_id=current(piece).id, batch_id=current(piece).batch_id)
    [(task_id, payload)] = get_broker().dequeue()  # handed out now, locked for `retry` seconds
    handed_out = timezone.now()
    _age(piece, settings.Q_ORPHAN_SECONDS + 5, "queued_at")

    _cluster_alive_since(handed_out - timedelta(minutes=5))  # the cluster that took it is still up
    assert selectors.queued_version_ids() == {current(piece).id}
    assert composition_reconcile()["orphaned"] == 0

    cache.clear()  # that cluster's reports are gone: it stopped, and another one started since
    _cluster_alive_since(handed_out + timedelta(seconds=1))
    assert selectors.queued_version_ids() == set()
    with django_capture_on_commit_callbacks(execute=True):
        assert composition_reconcile()["orphaned"] == 1
    assert current(piece).queue_count == 2
    assert selectors.queued_version_ids() == {current(piece).id}  # the new entry waits in the queue


def test_a_pending_piece_that_no_task_will_start_is_failed_after_its_attempts(
        orm_queue: None, user: User, composition_factory: Callable[..., Composition], settings: Any,
        django_capture_on_commit_callbacks: Callable) -> None:
    piece = composition_factory(user, queue_count=2 * settings.Q_MAX_ATTEMPTS)
    _age(piece, settings.Q_ORPHAN_SECONDS + 5, "created_at")
    with django_capture_on_commit_callbacks(execute=True):
        assert composition_reconcile()["failed"] == 1
    version = current(piece)
    assert version.status == CompositionVersion.Status.FAILED and "could not start" in version.error


def test_a_piece_held_by_a_dead_worker_of_this_machine_is_queued_again_at_once(
        orm_queue: None, user: User, composition_factory: Callable[..., Composition],
        django_capture_on_commit_callbacks: Callable) -> None:
    piece = composition_factory(user)
    version_id = current(piece).id
    claim = composition_version_claim(version_id=version_id)
    assert claim is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = selectors.this_worker().rsplit(":", 1)[0]
    CompositionVersion.objects.filter(id=version_id).update(claimed_by=f"{host}:{dead.stdout.strip()}")
    with django_capture_on_commit_callbacks(execute=True):
        assert composition_reconcile()["stalled"] == 1
    version = current(piece)
    assert version.status == CompositionVersion.Status.PENDING and version.claim is None
    assert selectors.queued_version_ids() == {version_id}


def test_a_piece_held_by_a_live_worker_is_left_alone(
        orm_queue: None, user: User, composition_factory: Callable[..., Composition]) -> None:
    piece = composition_factory(user)
    assert composition_version_claim(version_id=current(piece).id) is not None  # claimed by this process
    assert composition_reconcile() == {"stalled": 0, "orphaned": 0, "failed": 0, "unscored": 0, "training_failed": 0}


def test_a_done_piece_whose_score_never_came_gets_its_follow_up_again_once(
        orm_queue: None, user: User, composition_factory: Callable[..., Composition], settings: Any,
        django_capture_on_commit_callbacks: Callable) -> None:
    from django_q.signing import SignedPackage

    lost = composition_factory(user, status=CompositionVersion.Status.DONE)  # its follow-up died with a worker
    scored = composition_factory(user, status=CompositionVersion.Status.DONE, score_svg="scores/x.svg")
    reason = composition_factory(user, status=CompositionVersion.Status.DONE, score_error="Too long to engrave.")
    recent = composition_factory(user, status=CompositionVersion.Status.DONE)  # its follow-up may be on its way
    silent = settings.Q_ORPHAN_SECONDS + settings.SCORE_TIMEOUT_SECONDS + 5
    for piece in (lost, scored, reason):
        _age(piece, silent)
    with django_capture_on_commit_callbacks(execute=True):
        assert composition_reconcile()["unscored"] == 1
    queued = [SignedPackage.loads(p) for p in OrmQ.objects.values_list("payload", flat=True)]
    assert [(t["func"], t["args"]) for t in queued] == [(queueing.FOLLOW_UP_TASK, (current(lost).id,))]
    with django_capture_on_commit_callbacks(execute=True):
        assert composition_reconcile()["unscored"] == 0  # not again while its follow-up may be running
    assert current(recent).score_state == "pending"

    # Two follow-ups of one version: the second one's score is not stored, and its files go.
    first = default_storage.save("scores/first.svg", ContentFile(b"<svg/>"))
    second = default_storage.save("scores/second.svg", ContentFile(b"<svg/>"))
    assert composition_version_score(version_id=current(lost).id, svg_name=first, bars=[0.0])
    assert not composition_version_score(version_id=current(lost).id, svg_name=second, bars=[0.0])
    assert current(lost).score_svg.name == first and default_storage.exists(first)
    assert not default_storage.exists(second)


def test_the_reconciler_is_on_the_cluster_schedule(db: None) -> None:
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="compositions.tasks.composition_reconcile")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


# -- ways out: cancel, retry, delete ---------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "generating", "rendering"])
def test_an_unfinished_piece_can_be_cancelled_and_its_run_stops(
        status: str, user: User, user_client: Client, composition_factory: Callable[..., Composition]) -> None:
    piece = composition_factory(user)
    claim = composition_version_claim(version_id=current(piece).id)
    assert claim is not None
    CompositionVersion.objects.filter(id=current(piece).id).update(status=status)
    page = user_client.get(reverse("compositions:detail", args=[piece.public_id]))
    assert b">Cancel<" in page.content
    response = user_client.post(reverse("compositions:cancel", args=[piece.public_id]))
    assert response.status_code == 302
    assert current(piece).status == CompositionVersion.Status.CANCELLED
    with pytest.raises(tasks.Cancelled):
        tasks.ProgressWriter(claim)(0.5)


def test_the_api_cancels_a_piece_being_written_and_refuses_one_that_is_done_or_not_yours(
        user: User, other_user: User, composition_factory: Callable[..., Composition]) -> None:
    from tests.compositions.test_apis import token_client

    piece = composition_factory(user)
    claim = composition_version_claim(version_id=current(piece).id)
    assert claim is not None
    url = f"/api/v1/compositions/{piece.public_id}/cancel/"
    assert token_client(other_user).post(url).status_code == 404
    assert current(piece).status == CompositionVersion.Status.GENERATING

    response = token_client(user).post(url)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    with pytest.raises(tasks.Cancelled):
        tasks.ProgressWriter(claim)(0.5)
    again = token_client(user).post(url)
    assert again.status_code == 409 and "queued or being written" in again.json()["detail"]

    finished = composition_factory(user, status=CompositionVersion.Status.DONE)
    assert token_client(user).post(f"/api/v1/compositions/{finished.public_id}/cancel/").status_code == 409
    assert current(finished).status == CompositionVersion.Status.DONE


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_finds_a_piece_cancelled_while_it_renders_and_the_run_stops_at_its_next_block(
        user: User, composition_factory: Callable[..., Composition], settings: Any) -> None:
    settings.Q_HEARTBEAT_SECONDS = 0.05
    piece = composition_factory(user)
    claim = composition_version_claim(version_id=current(piece).id)
    assert claim is not None
    with tasks.Heartbeat(claim) as beat:
        assert not beat.lost.wait(0.3)  # beats find the piece held: the run goes on
        beat.check()
        composition_cancel(composition=piece)
        assert beat.lost.wait(5)
        with pytest.raises(tasks.Cancelled):
            beat.check()


def test_a_cancelled_piece_offers_try_again_and_is_queued(
        user: User, user_client: Client, composition_factory: Callable[..., Composition], queued_tasks: list) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.CANCELLED)
    page = user_client.get(reverse("compositions:detail", args=[piece.public_id]))
    assert b"Cancelled" in page.content and b"Try again" in page.content
    user_client.post(reverse("compositions:retry", args=[piece.public_id]))
    assert current(piece).status == CompositionVersion.Status.PENDING


def test_a_finished_piece_cannot_be_cancelled(user: User, composition_factory: Callable[..., Composition]) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.DONE)
    with pytest.raises(NotAllowed, match="queued or being written"):
        composition_cancel(composition=piece)


@pytest.mark.django_db(transaction=True)
def test_delete_removes_the_piece_and_its_files(
        user: User, user_client: Client, composition_factory: Callable[..., Composition], settings: Any) -> None:
    piece = composition_factory(user)
    tasks.composition_version_generate(current(piece).id)
    assert _media_files(Path(settings.MEDIA_ROOT))
    response = user_client.post(reverse("compositions:delete", args=[piece.public_id]))
    assert response.status_code == 302
    assert not Composition.objects.filter(id=piece.id).exists()
    assert not CompositionVersion.objects.exists()
    assert _media_files(Path(settings.MEDIA_ROOT)) == []


def test_another_user_cannot_cancel_or_delete_my_piece(
        user: User, other_user: User, client_for: Callable, composition_factory: Callable[..., Composition]) -> None:
    piece = composition_factory(user)
    intruder = client_for(other_user)
    for action in ("cancel", "delete", "retry"):
        assert intruder.post(reverse(f"compositions:{action}", args=[piece.public_id])).status_code == 404
    assert current(piece).status == CompositionVersion.Status.PENDING


# -- quotas ----------------------------------------------------------------------------------------


def test_a_burst_past_the_quota_gets_429_with_retry_after_and_others_still_compose(
        user: User, other_user: User, style: str, queued_tasks: list) -> None:
    from tests.compositions.test_apis import token_client

    mine, theirs = token_client(user), token_client(other_user)
    answers = [mine.post("/api/compositions/", {"style": style, "seconds": 5}, format="json") for _ in range(100)]
    codes = [answer.status_code for answer in answers]
    assert codes.count(202) == django_settings.QUOTA_ACTIVE_PIECES
    assert codes.count(429) == 100 - django_settings.QUOTA_ACTIVE_PIECES
    refused = answers[-1]
    assert int(refused["Retry-After"]) > 0 and "limit is" in refused.json()["detail"]
    assert Composition.objects.filter(user=user).count() == django_settings.QUOTA_ACTIVE_PIECES
    assert theirs.post("/api/compositions/", {"style": style, "seconds": 5}, format="json").status_code == 202


def test_the_daily_quota_says_when_the_next_piece_is_allowed(
        user: User, user_client: Client, style: str, settings: Any,
        composition_factory: Callable[..., Composition], queued_tasks: list) -> None:
    settings.QUOTA_PIECES_PER_DAY = 3
    for hours_ago in (20, 10, 1):
        piece = composition_factory(user, status=CompositionVersion.Status.DONE)
        _age(piece, hours_ago * 3600, "created_at")
    response = user_client.post("/compositions/new/", {"style": style, "seconds": 5})
    assert response.status_code == 429
    # The oldest of the three leaves the 24-hour window in 4 hours.
    assert int(response["Retry-After"]) == pytest.approx(4 * 3600, abs=60)
    assert b"in the last 24 hours" in response.content

