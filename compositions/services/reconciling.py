"""The reconciler: every unfinished piece and training run gets a worker that will finish it, or a reason."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compositions import selectors
from compositions.models import CompositionVersion, TrainingDataset
from compositions.services.exports import account_export_sweep
from compositions.services.queueing import FOLLOW_UP_TASK, batch_queue, queue_after_commit

logger = logging.getLogger(__name__)
# Follow-ups queued again per run of the reconciler (it runs every minute).
UNSCORED_PER_RUN = 100


def composition_reconcile() -> dict[str, int]:
    """Give every unfinished piece (every version being written) a task that will run it, or fail it.

    Runs on the cluster's schedule and when a worker starts. Two kinds of version are found:
    those a dead worker left generating or rendering (silent for Q_STALL_SECONDS), and pending
    ones whose task left the queue without claiming them (lost by the broker, or failed before
    it could claim). Both are queued again; the task's claim makes a duplicate harmless. A done
    version whose score never came (its follow-up died with its worker) gets its follow-up again.
    """
    now = timezone.now()
    counts = {"stalled": 0, "orphaned": 0, "failed": 0, "unscored": 0, "training_failed": 0}
    with transaction.atomic():
        # Silent for too long, or held by a worker process of this machine that is gone.
        abandoned = selectors.stalled_filter() | Q(claim__in=selectors.claims_of_dead_local_workers())
        stalled = list(CompositionVersion.objects.filter(abandoned).values_list("id", "batch_id"))
        CompositionVersion.objects.filter(id__in=[row_id for row_id, _ in stalled]).update(
            status=CompositionVersion.Status.PENDING, claim=None, claimed_by="",
            status_message="Queued again: its worker stopped", updated_at=now,
        )
        counts["stalled"] = len(stalled)

    orphan_before = now - timedelta(seconds=settings.Q_ORPHAN_SECONDS)
    lost = CompositionVersion.objects.filter(status=CompositionVersion.Status.PENDING).filter(
        Q(queued_at__lt=orphan_before) | Q(queued_at__isnull=True, created_at__lt=orphan_before)
    )
    # A dead run's own queue entry may come back only after the broker's `retry`: queue anew now.
    batches: dict[uuid.UUID, bool] = {batch_id: True for _, batch_id in stalled}
    for batch_id in lost.values_list("batch_id", flat=True):
        batches.setdefault(batch_id, False)
    # Reading the broker's queue decodes every entry: only when some pending row may be orphaned.
    waiting = selectors.queued_version_ids() if not all(batches.values()) else set()
    with transaction.atomic():
        # Two queue entries per attempt are plenty: past that, something refuses to run it.
        hopeless = CompositionVersion.objects.filter(
            batch_id__in=batches, status=CompositionVersion.Status.PENDING, queue_count__gte=2 * settings.Q_MAX_ATTEMPTS
        )
        counts["failed"] = hopeless.update(
            status=CompositionVersion.Status.FAILED, status_message="Failed", updated_at=now,
            error="The workers could not start this piece. Try again in a little while.",
            error_detail=f"Queued {2 * settings.Q_MAX_ATTEMPTS} times without a worker claiming it.",
        )
        for batch_id, was_stalled in batches.items():
            ids = set(CompositionVersion.objects.filter(
                batch_id=batch_id, status=CompositionVersion.Status.PENDING
            ).values_list("id", flat=True))
            if not ids or (not was_stalled and ids & waiting):
                continue  # finished meanwhile, or its task is still in the queue
            counts["orphaned"] += 0 if was_stalled else len(ids)
            batch_queue(version_id=min(ids), batch_id=batch_id)
    counts["unscored"] = _unscored_reconcile(now)
    counts["training_failed"] = training_reconcile()
    account_export_sweep()  # expired zips deleted, exports whose job died failed (it logs its own counts)
    if any(counts.values()):
        logger.warning("Reconciled compositions: %s", counts)
    return counts


def _unscored_reconcile(now: datetime) -> int:
    """Queue the follow-up (loudness, score) again for done versions with neither a score nor a reason,
    silent for longer than a queued follow-up and its engraving may take. The follow-up is idempotent,
    and a second engraving's files are dropped when the first one's score is in."""
    before = now - timedelta(seconds=settings.Q_ORPHAN_SECONDS + settings.SCORE_TIMEOUT_SECONDS)
    with transaction.atomic():
        ids = list(CompositionVersion.objects.filter(
            status=CompositionVersion.Status.DONE, score_svg="", score_error="", updated_at__lt=before,
        ).values_list("id", flat=True)[:UNSCORED_PER_RUN])
        CompositionVersion.objects.filter(id__in=ids).update(updated_at=now)  # not again until it is silent again
        for version_id in ids:
            queue_after_commit(FOLLOW_UP_TASK, version_id)
    return len(ids)


@transaction.atomic
def training_reconcile() -> int:
    """Fail data sets a training run left queued or training past its time limit (its worker died)."""
    gone_before = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"])
    return TrainingDataset.objects.filter(
        status__in=(TrainingDataset.Status.QUEUED, TrainingDataset.Status.TRAINING),
        status_changed_at__lt=gone_before,
    ).update(
        status=TrainingDataset.Status.FAILED, status_changed_at=timezone.now(),
        report={"error": "The training run stopped before it finished: its worker was killed or ran past "
                         "TRAINING_TIMEOUT. Start it again from the admin."},
    )
