"""The per-user quotas, checked inside the transaction that would save new versions.

A version counts as a piece: a new piece is its first version, and each continuation (or
regenerated passage, or harmonisation) is one more.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from compositions.errors import QuotaExceeded
from compositions.models import CompositionVersion


def quota_check(*, user: AbstractBaseUser, wanted: int) -> None:
    """Refuse `wanted` new versions when they would pass the user's quotas.

    The caller holds the write lock that serialises requests (the user's row on PostgreSQL,
    the database on SQLite), so two requests cannot both pass on the last free slot.
    """
    now = timezone.now()
    mine = CompositionVersion.objects.filter(composition__user=user)
    active = mine.filter(status__in=CompositionVersion.UNFINISHED_STATUSES).count()
    if active + wanted > settings.QUOTA_ACTIVE_PIECES:
        raise QuotaExceeded(
            f"You already have {active} pieces queued or being written; the limit is "
            f"{settings.QUOTA_ACTIVE_PIECES} at once. Wait for one to finish.",
            retry_after=30,
        )
    since = now - timedelta(days=1)
    recent = list(mine.filter(created_at__gte=since).order_by("created_at").values_list("created_at", flat=True))
    if len(recent) + wanted > settings.QUOTA_PIECES_PER_DAY:
        # The slot frees when the oldest piece of the last 24 hours leaves the window.
        frees_at = recent[len(recent) + wanted - settings.QUOTA_PIECES_PER_DAY - 1] + timedelta(days=1)
        raise QuotaExceeded(
            f"You have composed {len(recent)} pieces in the last 24 hours; the limit is "
            f"{settings.QUOTA_PIECES_PER_DAY}.",
            retry_after=max(1, int((frees_at - now).total_seconds()) + 1),
        )
