"""Account exports ("Export everything"): asking for one, the build task's own writes, and the sweep.

The request saves a pending row and queues `compositions.tasks.account_export_build` by id after
the commit. The task's writes (start, progress, finish, fail) are single guarded UPDATEs: an
export never moves backwards, a second delivery of the task changes nothing, and a task whose
export was deleted meanwhile (the account went) or given up by the sweep stops and removes what
it stored. Stored zips are deleted only after the rows that name them are committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from compositions.models import AccountExport
from compositions.services.queueing import queue_after_commit

logger = logging.getLogger(__name__)

EXPORT_TASK = "compositions.tasks.account_export_build"
# Room past the job's time limit before a running export is taken for dead: django-q2 kills the
# task at Q_TIMEOUT, and the worker needs a moment to record that.
STOPPED_GRACE_SECONDS = 60


@dataclass(frozen=True)
class ExportRequested:
    """The export a request left running: a new one (`created`), or the one already in progress."""

    export: AccountExport
    created: bool


def account_export_request(*, user: AbstractBaseUser) -> ExportRequested:
    """Ask for an export of everything `user` made, unless one is pending or running already.

    A new export replaces the user's earlier finished ones (rows and zips): the account page and
    the API show the latest, and a user never keeps more than one zip in storage.
    """
    with transaction.atomic():
        running = AccountExport.objects.filter(user=user, status__in=AccountExport.UNFINISHED_STATUSES).first()
        if running is not None:
            return ExportRequested(export=running, created=False)
        try:
            with transaction.atomic():
                export = AccountExport.objects.create(user=user)
        except IntegrityError:
            # Another request made one between the check and the insert (the constraint holds one).
            running = AccountExport.objects.get(user=user, status__in=AccountExport.UNFINISHED_STATUSES)
            return ExportRequested(export=running, created=False)
        earlier = list(AccountExport.objects.select_for_update().filter(user=user).exclude(
            status__in=AccountExport.UNFINISHED_STATUSES).values_list("id", "file"))
        AccountExport.objects.filter(id__in=[row_id for row_id, _ in earlier]).delete()
        replaced = [name for _, name in earlier if name]
        queue_after_commit(EXPORT_TASK, export.id)
    for name in replaced:
        default_storage.delete(name)
    return ExportRequested(export=export, created=True)


def account_export_start(*, export_id: int) -> AccountExport | None:
    """Take a pending export for this run; None when there is nothing to do (taken, finished or gone)."""
    now = timezone.now()
    taken = AccountExport.objects.filter(id=export_id, status=AccountExport.Status.PENDING).update(
        status=AccountExport.Status.RUNNING, progress=0, started_at=now,
    )
    return AccountExport.objects.select_related("user").get(id=export_id) if taken else None


def account_export_progress(*, export_id: int, percent: int) -> bool:
    """Record how far a running export is; False once it is no longer running (stop working on it)."""
    return bool(AccountExport.objects.filter(id=export_id, status=AccountExport.Status.RUNNING).update(
        progress=max(0, min(99, percent))))


def account_export_finish(*, export_id: int, name: str, size_bytes: int) -> bool:
    """Mark a running export done with its zip, stored before as `name`.

    Returns False (and deletes the zip) when the export was lost meanwhile: deleted with its
    account, or failed by the sweep.
    """
    updated = AccountExport.objects.filter(id=export_id, status=AccountExport.Status.RUNNING).update(
        status=AccountExport.Status.DONE, progress=100, file=name, size_bytes=size_bytes, finished_at=timezone.now(),
    )
    if not updated:
        default_storage.delete(name)
    return bool(updated)


def account_export_fail(*, export_id: int, reason: str) -> bool:
    """Fail an unfinished export with a reason shown to its owner."""
    return bool(AccountExport.objects.filter(id=export_id, status__in=AccountExport.UNFINISHED_STATUSES).update(
        status=AccountExport.Status.FAILED, error=reason[:300], finished_at=timezone.now(),
    ))


def account_export_sweep() -> dict[str, int]:
    """Delete the zips of exports past EXPORT_KEEP_HOURS, and fail exports whose job is gone.

    Runs with the reconciler, every minute. An expired export keeps its row (its status says that
    it expired) without its file. A running export older than the job's time limit was killed
    with its worker; a pending one older than the broker's redelivery was lost by the queue.
    """
    now = timezone.now()
    with transaction.atomic():
        expired = AccountExport.objects.select_for_update().filter(
            status=AccountExport.Status.DONE, finished_at__lte=now - timedelta(hours=settings.EXPORT_KEEP_HOURS),
        ).exclude(file="")
        rows = list(expired.values_list("id", "file"))
        AccountExport.objects.filter(id__in=[row_id for row_id, _ in rows]).update(file="")
    names = [name for _, name in rows]
    for name in names:
        default_storage.delete(name)
    killed_before = now - timedelta(seconds=settings.Q_TIMEOUT + STOPPED_GRACE_SECONDS)
    lost_before = now - timedelta(seconds=settings.Q_CLUSTER["retry"])
    stopped = AccountExport.objects.filter(
        Q(status=AccountExport.Status.RUNNING, started_at__lt=killed_before)
        | Q(status=AccountExport.Status.PENDING, created_at__lt=lost_before)
    ).update(status=AccountExport.Status.FAILED, finished_at=now,
             error="The export stopped before it was finished (its worker was stopped). Ask for a new one.")
    counts = {"expired": len(names), "stopped": stopped}
    if any(counts.values()):
        logger.warning("Swept account exports: %s", counts)
    return counts
