"""Asking for pieces and the ways out of one: request, retry, cancel, delete, again, continue, primer upload."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compositions import runtime, selectors
from compositions.errors import NotAllowed, RequestInvalid
from compositions.models import Composition, Primer
from compositions.services.queueing import batch_queue
from compositions.services.quotas import quota_check


def composition_request(
    *, user: AbstractBaseUser, params: Mapping[str, Any], primer: UploadedFile | bytes | None = None
) -> list[Composition]:
    """Check a request to compose, then save one pending composition per variation and queue them.

    `params` is what the user sent (form strings or JSON values); `primer` a MIDI file to continue.

    Raises:
        RequestInvalid: a field is bad; ComposingUnavailable: there is no model; QuotaExceeded: the
            user is over a quota. Nothing is saved in any of these cases.
    """
    primer_midi = runtime.read_upload(primer) if isinstance(primer, UploadedFile) else primer
    # Checked before the transaction: the primer is parsed in a sandbox, which takes a moment.
    request = runtime.validated_request(params, primer_midi=primer_midi)
    return _composition_create(user=user, params=request.to_dict(), primer_midi=primer_midi)


@transaction.atomic
def _composition_create(
    *, user: AbstractBaseUser, params: dict[str, Any], primer_midi: bytes | None
) -> list[Composition]:
    # Lock the user's row so that concurrent requests of one user are counted one after another.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    quota_check(user=user, wanted=params["variations"])
    batch_id = uuid.uuid4()
    # The worker re-reads the primer from storage; the batch shares one copy.
    primer_name = default_storage.save(f"primers/{batch_id}.mid", ContentFile(primer_midi)) if primer_midi else ""
    compositions = [
        Composition.objects.create(
            user=user,
            batch_id=batch_id,
            variation_index=index,
            primer_file=primer_name,
            status_message="Queued",
            style=params["style"],
            params=params,
        )
        for index in range(params["variations"])
    ]
    # One task writes the whole batch: all variations come from a single generate() call.
    batch_queue(composition_id=compositions[0].id, batch_id=batch_id)
    return compositions


@transaction.atomic
def composition_retry(*, composition: Composition) -> Composition:
    """Queue a failed, cancelled or stalled composition (and its failed or stalled batch mates) again."""
    composition.refresh_from_db()
    retryable = (Composition.Status.FAILED, Composition.Status.CANCELLED)
    if not (composition.status in retryable or selectors.composition_is_stalled(composition=composition)):
        raise NotAllowed("Only a failed, cancelled or stalled composition can be tried again.")
    quota_check(user=composition.user, wanted=1)
    again = Q(status=Composition.Status.FAILED) | selectors.stalled_filter() | Q(id=composition.id)
    Composition.objects.filter(again, batch_id=composition.batch_id).update(
        status=Composition.Status.PENDING, progress=0, status_message="Queued", error="", error_detail="",
        claim=None, attempts=0, queue_count=0, updated_at=timezone.now(),
    )
    batch_queue(composition_id=composition.id, batch_id=composition.batch_id)
    composition.refresh_from_db()
    return composition


@transaction.atomic
def composition_cancel(*, composition: Composition) -> Composition:
    """Stop a piece that is queued or being written; the worker drops it at its next progress write."""
    updated = Composition.objects.filter(id=composition.id, status__in=Composition.UNFINISHED_STATUSES).update(
        status=Composition.Status.CANCELLED, status_message="Cancelled", claim=None, updated_at=timezone.now()
    )
    composition.refresh_from_db()
    if not updated:
        raise NotAllowed("Only a piece that is queued or being written can be cancelled.")
    return composition


def composition_delete(*, composition: Composition) -> None:
    """Delete a piece and its files. A run still writing it finds the row gone and cleans up after itself."""
    with transaction.atomic():
        files = [composition.midi_file.name, composition.mp3_file.name]
        primer = composition.primer_file.name
        composition.delete()
        # The batch shares one primer: it goes with the last piece that continues it.
        if primer and not Composition.objects.filter(primer_file=primer).exists():
            files.append(primer)
    # After the commit: a file is never gone while its row is still there.
    for name in files:
        if name:
            default_storage.delete(name)


def composition_again(*, composition: Composition, user: AbstractBaseUser) -> list[Composition]:
    """The same settings with a new random seed (and the same MIDI file to continue, if any)."""
    primer = None
    if composition.primer_file:
        with composition.primer_file.open("rb") as f:
            primer = f.read()
    return _compose_like(composition, user=user, primer=primer)


def composition_continue(*, composition: Composition, user: AbstractBaseUser) -> list[Composition]:
    """A new piece that continues this one: its MIDI file becomes the primer."""
    if composition.status != Composition.Status.DONE or not composition.midi_file:
        raise NotAllowed("Only a finished piece can be continued.")
    with composition.midi_file.open("rb") as f:
        primer = f.read()
    return _compose_like(composition, user=user, primer=primer)


def _compose_like(composition: Composition, *, user: AbstractBaseUser, primer: bytes | None) -> list[Composition]:
    """One new piece with `composition`'s settings and a fresh random seed."""
    return composition_request(user=user, params={**composition.params, "seed": None, "variations": 1},
                               primer=primer)


@transaction.atomic
def primer_upload(*, user: AbstractBaseUser, upload: UploadedFile | None) -> Primer:
    """Check an uploaded MIDI file (size first, then parsed in the sandbox) and keep it for later requests."""
    from ml.data.notes import MidiError

    if upload is None:
        raise RequestInvalid.of("file", "Attach a MIDI file as `file`.")
    data = runtime.read_upload(upload)
    assert data is not None
    try:
        notes = runtime.primer_from_midi(data)
    except MidiError as exc:
        raise RequestInvalid.of("file", str(exc)) from exc
    primer = Primer(user=user, notes=len(notes), seconds=round(notes.end_time, 3))
    primer.file.save(f"{primer.public_id}.mid", ContentFile(data), save=False)
    primer.save()
    return primer
