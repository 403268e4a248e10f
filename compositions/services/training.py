"""Training and models: queue a run, the run's own writes (start, progress, finish, fail), activate a model.

A run's writes are guarded by the data sets' status, as the generation task's are by theirs: a
run starts only on queued data sets, reports progress only while they are training, and finishes
or fails them once. A second delivery of the task, or a run the reconciler gave up for dead,
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from compositions.errors import NotAllowed
from compositions.models import MusicModel, TrainingDataset
from compositions.services.queueing import TRAIN_TASK, queue_after_commit

if TYPE_CHECKING:
    from compositions.training import TrainingResult

logger = logging.getLogger(__name__)

BUSY = (TrainingDataset.Status.QUEUED, TrainingDataset.Status.TRAINING)


@transaction.atomic
def training_request(*, datasets: Sequence[TrainingDataset], out_path: Path) -> None:
    """Mark `datasets` queued and train one model on them in the background."""
    if not datasets:
        raise NotAllowed("Choose at least one data set to train on.")
    ids = [dataset.id for dataset in datasets]
    rows = TrainingDataset.objects.select_for_update().filter(id__in=ids)
    busy = sorted(rows.filter(status__in=BUSY).values_list("name", flat=True))
    if busy:
        raise NotAllowed(f"Already queued or training: {', '.join(busy)}.")
    rows.update(status=TrainingDataset.Status.QUEUED, status_changed_at=timezone.now())
    # Training has its own time limit, far longer than a piece's.
    queue_after_commit(TRAIN_TASK, ids, str(out_path), timeout=settings.TRAINING_TIMEOUT)


@transaction.atomic
def training_start(*, dataset_ids: Sequence[int]) -> list[int]:
    """Move the run's queued data sets to training; returns their ids ([] when none is queued any more)."""
    ids = list(TrainingDataset.objects.select_for_update().filter(
        id__in=dataset_ids, status=TrainingDataset.Status.QUEUED
    ).values_list("id", flat=True))
    TrainingDataset.objects.filter(id__in=ids).update(
        status=TrainingDataset.Status.TRAINING, status_changed_at=timezone.now()
    )
    return ids


@transaction.atomic
def training_progress(*, dataset_ids: Sequence[int], epoch: int, epochs: int, val_loss: float | None) -> int:
    """Record a finished epoch on the data sets still training; returns how many there are."""
    return TrainingDataset.objects.filter(id__in=dataset_ids, status=TrainingDataset.Status.TRAINING).update(
        status_changed_at=timezone.now(),
        report={"progress": {"epoch": epoch, "epochs": epochs, "val_loss": val_loss}},
    )


@transaction.atomic
def training_finish(*, dataset_ids: Sequence[int], out_path: Path, result: TrainingResult) -> MusicModel | None:
    """Mark the run's data sets trained and register its model (inactive).

    Returns None, and registers nothing, when the data sets are no longer training (the
    reconciler failed them meanwhile): the file stays where it is, for an admin to add.
    """
    held = set(TrainingDataset.objects.select_for_update().filter(
        id__in=dataset_ids, status=TrainingDataset.Status.TRAINING
    ).values_list("id", flat=True))
    if not held:
        logger.warning("Training on %s finished after its data sets were given up; %s is not registered",
                       list(dataset_ids), out_path)
        return None
    now = timezone.now()
    for dataset_id in held:
        TrainingDataset.objects.filter(id=dataset_id).update(
            status=TrainingDataset.Status.TRAINED, status_changed_at=now, report=result.reports.get(dataset_id, {})
        )
    music_model, _ = MusicModel.objects.update_or_create(
        name=out_path.stem, defaults={"styles": result.styles, "metrics": result.metrics},
    )
    if out_path.is_file():  # kept in the site's storage, where every worker reads it
        with out_path.open("rb") as model_file:
            music_model.file.save(out_path.name, File(model_file), save=False)
        music_model.path = ""
    else:
        music_model.path = str(out_path)
    music_model.save(update_fields=["file", "path"])
    return music_model


@transaction.atomic
def training_fail(*, dataset_ids: Sequence[int], error: str) -> int:
    """Fail the run's data sets that are still training, with the reason; returns how many."""
    return TrainingDataset.objects.filter(id__in=dataset_ids, status=TrainingDataset.Status.TRAINING).update(
        status=TrainingDataset.Status.FAILED, status_changed_at=timezone.now(), report={"error": error},
    )


@transaction.atomic
def music_model_activate(*, music_model: MusicModel) -> MusicModel:
    """Make `music_model` the one that serves new compositions."""
    MusicModel.objects.filter(is_active=True).exclude(id=music_model.id).update(is_active=False)
    music_model.is_active = True
    music_model.save(update_fields=["is_active"])
    return music_model
