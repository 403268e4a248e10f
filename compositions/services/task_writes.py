"""The generation task's own writes: claim, progress, rendering, finish and fail.

The task writes versions: the first versions of new pieces (the variations of a request, in
one run), or a new version of a piece. Each write is guarded by the status and by the run's
claim token, so a version never moves backwards, a second delivery of a task changes nothing,
and a run that was given up for dead cannot overwrite the run that replaced it. Progress,
rendering and fail are one UPDATE each, atomic by itself (they run often, so no transaction is
opened around them); claim and finish are short transactions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from compositions import selectors
from compositions.models import Composition, CompositionVersion
from compositions.services.queueing import FOLLOW_UP_TASK, queue_after_commit


@dataclass(frozen=True)
class Claim:
    """The versions one run of the task holds, and the token that proves it."""

    token: uuid.UUID
    ids: list[int]

    def rows(self) -> QuerySet[CompositionVersion]:
        return CompositionVersion.objects.filter(id__in=self.ids, claim=self.token)


def composition_version_claim(*, version_id: int) -> Claim | None:
    """Take the batch of `version_id` for this run: its pending versions and those a dead run left.

    Returns None when nothing is left to do (already done, cancelled, deleted, or taken by a live
    run). Versions that have been started Q_MAX_ATTEMPTS times already are failed instead.
    """
    token = uuid.uuid4()
    now = timezone.now()
    with transaction.atomic():
        first = CompositionVersion.objects.select_for_update().filter(id=version_id).first()
        if first is None:
            return None
        takeable = CompositionVersion.objects.select_for_update().filter(
            Q(status=CompositionVersion.Status.PENDING) | selectors.stalled_filter(), batch_id=first.batch_id
        )
        worn_out = takeable.filter(attempts__gte=settings.Q_MAX_ATTEMPTS)
        worn_out.update(
            status=CompositionVersion.Status.FAILED, status_message="Failed", claim=None, updated_at=now,
            error="The worker stopped while writing this piece, again and again. Try a shorter piece.",
            error_detail=f"Claimed {settings.Q_MAX_ATTEMPTS} times without finishing.",
        )
        ids = list(takeable.order_by("composition__variation_index").values_list("id", flat=True))
        CompositionVersion.objects.filter(id__in=ids).update(
            status=CompositionVersion.Status.GENERATING, progress=0, status_message="Starting", claim=token,
            claimed_by=selectors.this_worker(), attempts=F("attempts") + 1, updated_at=now,
        )
    return Claim(token=token, ids=ids) if ids else None


def composition_version_progress(*, claim: Claim, percent: int | None = None, message: str | None = None) -> int:
    """Record progress or a stage on the versions `claim` still holds; returns how many it still holds.

    With no percent and no message it only shows that the run is alive (the heartbeat).
    """
    fields: dict[str, Any] = {"updated_at": timezone.now()}
    if percent is not None:
        fields["progress"] = percent
    if message is not None:
        fields["status_message"] = message
    return claim.rows().filter(status__in=CompositionVersion.ACTIVE_STATUSES).update(**fields)


def composition_version_rendering(*, claim: Claim, percent: int) -> int:
    """Move the held versions from generating to rendering; returns how many it still holds."""
    return claim.rows().filter(status=CompositionVersion.Status.GENERATING).update(
        status=CompositionVersion.Status.RENDERING, progress=percent, status_message="Rendering",
        updated_at=timezone.now(),
    )


@dataclass
class FinishedVersion:
    """What a run stores for one finished version: its files, and the fields of what it wrote."""

    version_id: int
    midi_name: str
    mp3_name: str
    fields: dict[str, Any]


def composition_version_finish(*, claim: Claim, finished: FinishedVersion) -> bool:
    """Mark one held version done with its stored files, and make it its piece's current version.

    Returns False (and removes the files) when the version was lost: the files are saved before
    this is called, outside any transaction, and when the version was cancelled, deleted or
    handed to another run meanwhile, they belong to nobody.
    """
    with transaction.atomic():
        updated = claim.rows().filter(id=finished.version_id, status=CompositionVersion.Status.RENDERING).update(
            status=CompositionVersion.Status.DONE, progress=100, status_message="Done", claim=None,
            midi_file=finished.midi_name, mp3_file=finished.mp3_name, updated_at=timezone.now(), **finished.fields,
        )
        if updated:
            Composition.objects.filter(versions__id=finished.version_id).update(
                current_version_id=finished.version_id, updated_at=timezone.now()
            )
            # The piece plays now; its loudness is measured and its score engraved a moment later, by
            # whichever worker is free.
            queue_after_commit(FOLLOW_UP_TASK, finished.version_id)
    if not updated:
        for name in (finished.midi_name, finished.mp3_name):
            default_storage.delete(name)
    return bool(updated)


def composition_files_clear_unnamed(*, names: list[str]) -> None:
    """Remove the files at `names` that no version names, before a run saves its own there.

    A worker stopped between saving a version's files and marking it done (SIGTERM past the grace
    period, SIGKILL, a lost host) leaves them behind; its run, written again, saves under the same
    names, and the storage would give it other ones, leaving the first files to nobody.
    """
    for name in names:
        named = CompositionVersion.objects.filter(Q(midi_file=name) | Q(mp3_file=name)).exists()
        if not named and default_storage.exists(name):
            default_storage.delete(name)


def composition_version_fail(*, claim: Claim, reason: str, detail: str) -> int:
    """Fail the versions `claim` still holds, with a reason shown to the user and a detail for the admin."""
    return claim.rows().filter(status__in=CompositionVersion.ACTIVE_STATUSES).update(
        status=CompositionVersion.Status.FAILED, status_message="Failed", claim=None, error=reason[:300],
        error_detail=detail, updated_at=timezone.now(),
    )


def composition_version_score(*, version_id: int, svg_name: str = "", musicxml_name: str = "",
                              bars: list[float] | None = None, error: str = "") -> bool:
    """Store a done version's score (its files, saved before), or the reason it has none.

    Returns False (and removes the files) when the version is gone, no longer done, or already has its
    score or its reason (a follow-up queued again by the reconciler ran beside the first).
    """
    with transaction.atomic():
        updated = CompositionVersion.objects.filter(
            id=version_id, status=CompositionVersion.Status.DONE, score_svg="", score_error="").update(
            score_svg=svg_name, score_musicxml=musicxml_name, score_bars=bars or [], score_error=error[:300],
            updated_at=timezone.now(),
        )
    if not updated:
        for name in (svg_name, musicxml_name):
            if name:
                default_storage.delete(name)
    return bool(updated)


def composition_version_loudness(*, version_id: int, loudness: dict[str, float]) -> bool:
    """Store the loudness measured on a done version's MP3."""
    return bool(CompositionVersion.objects.filter(id=version_id, status=CompositionVersion.Status.DONE).update(
        loudness=loudness, updated_at=timezone.now()))
