"""Asking for pieces and the ways out of one: request, retry, cancel, delete, again, primer upload.

A new piece is saved with its first version, which the generation task writes; continuing a
piece makes a new version of it (`services.versions`).
"""

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
from compositions.models import Composition, CompositionVersion, Primer
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
    params = runtime.request_controls(params) | {"harmonise": params.get("harmonise")}
    if _is_true(params.pop("harmonise")):
        return _harmonise_request(user=user, params=params, melody_midi=primer_midi)
    # Checked before the transaction: the primer is parsed in a sandbox, which takes a moment.
    request = runtime.validated_request(params, primer_midi=primer_midi)
    return _composition_create(user=user, params=request.to_dict(), primer_midi=primer_midi)


def _is_true(value: object) -> bool:
    """A flag as a form ("on", "true", "1") or JSON (true) sends it."""
    return value is True or str(value).strip().lower() in ("1", "true", "on", "yes")


def _harmonise_request(*, user: AbstractBaseUser, params: Mapping[str, Any],
                       melody_midi: bytes | None) -> list[Composition]:
    """New pieces that write voices under an uploaded melody (its top line kept as the top voice)."""
    from ml.data.notes import MidiError

    if melody_midi is None:
        raise RequestInvalid.of("primer", "Attach the melody to harmonise as a MIDI file.")
    request = runtime.validated_request(params)
    try:
        melody = runtime.primer_from_midi(melody_midi)
    except MidiError as exc:
        raise RequestInvalid.of("primer", str(exc)) from exc
    runtime.melody_check(melody, field="primer")
    return _composition_create(user=user, params={**request.to_dict(), "harmonise": True}, primer_midi=melody_midi)


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
    compositions, versions = [], []
    for index in range(params["variations"]):
        composition = Composition.objects.create(
            user=user, batch_id=batch_id, variation_index=index, style=params["style"]
        )
        version = CompositionVersion.objects.create(
            composition=composition, number=1, kind=CompositionVersion.Kind.ORIGINAL, batch_id=batch_id,
            primer_file=primer_name, status_message="Queued", params=params,
        )
        composition.current_version = version
        composition.save(update_fields=["current_version"])
        compositions.append(composition)
        versions.append(version)
    # One task writes the whole batch: all variations come from a single generate() call.
    batch_queue(version_id=versions[0].id, batch_id=batch_id)
    return compositions


@transaction.atomic
def composition_retry(*, composition: Composition) -> Composition:
    """Queue the piece's newest version again when it failed, was cancelled or stalled.

    The failed or stalled versions written by the same run (the request's other variations) go
    with it.
    """
    version = CompositionVersion.objects.select_for_update().filter(composition=composition).order_by(
        "-number").first()
    retryable = (CompositionVersion.Status.FAILED, CompositionVersion.Status.CANCELLED)
    if version is None or not (version.status in retryable or selectors.version_is_stalled(version=version)):
        raise NotAllowed("Only a failed, cancelled or stalled composition can be tried again.")
    quota_check(user=composition.user, wanted=1)
    again = Q(status=CompositionVersion.Status.FAILED) | selectors.stalled_filter() | Q(id=version.id)
    CompositionVersion.objects.filter(again, batch_id=version.batch_id).update(
        status=CompositionVersion.Status.PENDING, progress=0, status_message="Queued", error="", error_detail="",
        claim=None, attempts=0, queue_count=0, updated_at=timezone.now(),
    )
    batch_queue(version_id=version.id, batch_id=version.batch_id)
    composition.refresh_from_db()
    return composition


@transaction.atomic
def composition_cancel(*, composition: Composition) -> Composition:
    """Stop the version of a piece that is queued or being written: its worker drops it at its next
    progress write while it generates, or at its next heartbeat while it renders."""
    updated = CompositionVersion.objects.filter(
        composition=composition, status__in=CompositionVersion.UNFINISHED_STATUSES
    ).update(
        status=CompositionVersion.Status.CANCELLED, status_message="Cancelled", claim=None, updated_at=timezone.now()
    )
    composition.refresh_from_db()
    if not updated:
        raise NotAllowed("Only a piece that is queued or being written can be cancelled.")
    return composition


def composition_delete(*, composition: Composition) -> None:
    """Delete a piece, its versions and their files. A run still writing one finds it gone and cleans up."""
    with transaction.atomic():
        fields = CompositionVersion.FILE_FIELDS
        rows = [dict(zip(fields, row)) for row in composition.versions.values_list(*fields)]
        files = [row[name] for row in rows for name in fields if name != "primer_file"]
        primers = {row["primer_file"] for row in rows if row["primer_file"]}
        composition.delete()
        # A batch shares one primer: it goes with the last version that continues it.
        files.extend(primer for primer in primers if not CompositionVersion.objects.filter(primer_file=primer).exists())
    # After the commit: a file is never gone while its row is still there.
    for name in files:
        if name:
            default_storage.delete(name)


def composition_again(*, composition: Composition, user: AbstractBaseUser) -> list[Composition]:
    """A new piece with the current version's settings and a new random seed (and its MIDI file to continue)."""
    version = composition.current_version
    if version is None:
        raise NotAllowed("This piece has nothing to compose again from.")
    primer = None
    if version.primer_file:
        with version.primer_file.open("rb") as f:
            primer = f.read()
    params = {**runtime.request_controls(version.params), "harmonise": version.params.get("harmonise"),
              "seed": None, "variations": 1}
    return composition_request(user=user, params=params, primer=primer)


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
