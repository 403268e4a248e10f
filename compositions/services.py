"""Writes: every change to compositions and training data goes through here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from compositions.engine import stored_params
from compositions import selectors
from compositions.models import Composition, MusicModel, TrainingDataset

if TYPE_CHECKING:
    from ml.generate import GenerationRequest


def _queue_after_commit(func: str, *args: object) -> None:
    """Queue `func(*args)` once the current transaction commits, so the worker sees the rows."""
    # Q_SYNC is read per call (not only from Q_CLUSTER) so tests can flip it with `settings`.
    transaction.on_commit(lambda: async_task(func, *args, sync=settings.Q_SYNC))


@transaction.atomic
def composition_request(
    *, user: AbstractBaseUser, request: GenerationRequest, primer_midi: bytes | None = None
) -> list[Composition]:
    """Save one pending composition per variation, sharing a batch, and queue their generation."""
    batch_id = uuid.uuid4()
    params = stored_params(request)
    # The worker re-reads the primer from storage; the batch shares one copy.
    primer_name = default_storage.save(f"primers/{batch_id}.mid", ContentFile(primer_midi)) if primer_midi else ""
    compositions = [
        Composition.objects.create(
            user=user,
            batch_id=batch_id,
            variation_index=index,
            primer_file=primer_name,
            status_message="Queued",
            **params,
        )
        for index in range(request.variations)
    ]
    # One task writes the whole batch: all variations come from a single generate() call.
    _queue_after_commit("compositions.tasks.composition_generate", compositions[0].id)
    return compositions


@transaction.atomic
def composition_retry(*, composition: Composition) -> Composition:
    """Queue a failed or stalled composition (and its failed or stalled batch mates) again."""
    if not (composition.status == Composition.Status.FAILED or selectors.composition_is_stalled(composition=composition)):
        raise ValueError("Only a failed or stalled composition can be tried again.")
    again = Q(status=Composition.Status.FAILED) | selectors.stalled_filter()
    Composition.objects.filter(again, batch_id=composition.batch_id).update(
        status=Composition.Status.PENDING, progress=0, status_message="Queued", error="", error_detail="",
        updated_at=timezone.now(),
    )
    composition.refresh_from_db()
    _queue_after_commit("compositions.tasks.composition_generate", composition.id)
    return composition


@transaction.atomic
def training_request(*, datasets: Sequence[TrainingDataset], out_path: Path) -> None:
    """Mark `datasets` queued and train one model on them in the background."""
    if not datasets:
        raise ValueError("Choose at least one data set to train on.")
    ids = [dataset.id for dataset in datasets]
    TrainingDataset.objects.filter(id__in=ids).update(status=TrainingDataset.Status.QUEUED)
    _queue_after_commit("compositions.tasks.model_train", ids, str(out_path))


@transaction.atomic
def music_model_activate(*, music_model: MusicModel) -> MusicModel:
    """Make `music_model` the one that serves new compositions."""
    MusicModel.objects.filter(is_active=True).exclude(id=music_model.id).update(is_active=False)
    music_model.is_active = True
    music_model.save(update_fields=["is_active"])
    return music_model
