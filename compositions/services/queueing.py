"""Putting background jobs on the queue, always after the transaction that saved their rows commits."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from compositions.models import CompositionVersion

GENERATE_TASK = "compositions.tasks.composition_version_generate"
TRAIN_TASK = "compositions.tasks.model_train"
FOLLOW_UP_TASK = "compositions.tasks.composition_version_follow_up"


def queue_after_commit(func: str, *args: object, **options: Any) -> None:
    """Queue `func(*args)` once the current transaction commits, so the worker sees the rows."""
    # Q_SYNC is read per call (not only from Q_CLUSTER) so tests can flip it with `settings`.
    transaction.on_commit(lambda: async_task(func, *args, sync=settings.Q_SYNC, **options))


def batch_queue(*, version_id: int, batch_id: uuid.UUID) -> None:
    """Record that a task is on its way for the batch's pending versions, and queue it after commit."""
    CompositionVersion.objects.filter(batch_id=batch_id, status=CompositionVersion.Status.PENDING).update(
        queued_at=timezone.now(), queue_count=F("queue_count") + 1
    )
    queue_after_commit(GENERATE_TASK, version_id)
