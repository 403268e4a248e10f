"""Writes: every change to compositions and training data goes through here.

The generation task's own writes (claim, progress, finish, fail) are services too. Each one is a
short transaction guarded by the status and by the run's claim token, so a row never moves
backwards, a second delivery of a task changes nothing, and a run that was given up for dead
cannot overwrite the run that replaced it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from compositions import runtime, selectors
from compositions.errors import NotAllowed, QuotaExceeded, RequestInvalid
from compositions.models import Composition, MusicModel, Primer, TrainingDataset

logger = logging.getLogger(__name__)

GENERATE_TASK = "compositions.tasks.composition_generate"


def _queue_after_commit(func: str, *args: object, **options: Any) -> None:
    """Queue `func(*args)` once the current transaction commits, so the worker sees the rows."""
    # Q_SYNC is read per call (not only from Q_CLUSTER) so tests can flip it with `settings`.
    transaction.on_commit(lambda: async_task(func, *args, sync=settings.Q_SYNC, **options))


def _queue_batch(composition_id: int, batch_id: uuid.UUID) -> None:
    """Record that a task is on its way for the batch's pending rows, and queue it after commit."""
    Composition.objects.filter(batch_id=batch_id, status=Composition.Status.PENDING).update(
        queued_at=timezone.now(), queue_count=F("queue_count") + 1
    )
    _queue_after_commit(GENERATE_TASK, composition_id)


def _check_quota(user: AbstractBaseUser, wanted: int) -> None:
    """Refuse `wanted` new pieces when they would pass the user's quotas.

    The caller holds the write lock that serialises requests (the user's row on PostgreSQL,
    the database on SQLite), so two requests cannot both pass on the last free slot.
    """
    now = timezone.now()
    mine = Composition.objects.filter(user=user)
    active = mine.filter(status__in=Composition.UNFINISHED_STATUSES).count()
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
    _check_quota(user, params["variations"])
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
    _queue_batch(compositions[0].id, batch_id)
    return compositions


@transaction.atomic
def composition_retry(*, composition: Composition) -> Composition:
    """Queue a failed, cancelled or stalled composition (and its failed or stalled batch mates) again."""
    composition.refresh_from_db()
    retryable = (Composition.Status.FAILED, Composition.Status.CANCELLED)
    if not (composition.status in retryable or selectors.composition_is_stalled(composition=composition)):
        raise NotAllowed("Only a failed, cancelled or stalled composition can be tried again.")
    _check_quota(composition.user, 1)
    again = Q(status=Composition.Status.FAILED) | selectors.stalled_filter() | Q(id=composition.id)
    Composition.objects.filter(again, batch_id=composition.batch_id).update(
        status=Composition.Status.PENDING, progress=0, status_message="Queued", error="", error_detail="",
        claim=None, attempts=0, queue_count=0, updated_at=timezone.now(),
    )
    _queue_batch(composition.id, composition.batch_id)
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
    for name in files:
        if name:
            default_storage.delete(name)


def primer_upload(*, user: AbstractBaseUser, upload: UploadedFile | None) -> Primer:
    """Check an uploaded MIDI file (size first, then parsed in the sandbox) and keep it for later requests."""
    if upload is None:
        raise RequestInvalid.of("file", "Attach a MIDI file as `file`.")
    data = runtime.read_upload(upload)
    assert data is not None
    from ml.data.notes import MidiError

    try:
        notes = runtime.primer_from_midi(data)
    except MidiError as exc:
        raise RequestInvalid.of("file", str(exc)) from exc
    primer = Primer(user=user, notes=len(notes), seconds=round(notes.end_time, 3))
    primer.file.save(f"{primer.public_id}.mid", ContentFile(data), save=False)
    primer.save()
    return primer


def primer_bytes(*, user: AbstractBaseUser, primer_id: str) -> bytes:
    """The bytes of one of the user's uploaded primers; RequestInvalid when there is no such primer."""
    primer = Primer.objects.filter(user=user, public_id=primer_id).first() if _is_uuid(primer_id) else None
    if primer is None:
        raise RequestInvalid.of("primer_id", "There is no such primer of yours.")
    with primer.file.open("rb") as f:
        return f.read()


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


# -- the gallery and sharing ------------------------------------------------------------------------


def composition_update(*, composition: Composition, title: str | None = None,
                       is_favourite: bool | None = None) -> Composition:
    """Rename a piece (an empty title goes back to the generated one) or mark it a favourite."""
    fields: dict[str, Any] = {}
    if title is not None:
        title = " ".join(title.split())
        if len(title) > 120:
            raise RequestInvalid.of("title", "A title has at most 120 characters.")
        fields["title"] = title
    if is_favourite is not None:
        fields["is_favourite"] = bool(is_favourite)
    if fields:
        Composition.objects.filter(id=composition.id).update(**fields)
        composition.refresh_from_db()
    return composition


def composition_share(*, composition: Composition, visibility: str, new_link: bool = False) -> Composition:
    """Make a piece private, unlisted (reached by its link) or public (listed in the gallery).

    An unlisted or public piece has a link token of 256 random bits; `new_link` replaces it, which
    kills the old link at once. Making a piece private kills its link too.
    """
    if visibility not in Composition.Visibility.values:
        raise RequestInvalid.of("visibility", f"Visibility must be one of {', '.join(Composition.Visibility.values)}.")
    token = composition.share_token
    if visibility == Composition.Visibility.PRIVATE:
        token = None
    elif token is None or new_link:
        token = secrets.token_urlsafe(32)
    Composition.objects.filter(id=composition.id).update(visibility=visibility, share_token=token)
    composition.refresh_from_db()
    return composition


PLAY_WINDOW_SECONDS = 3600


def composition_play(*, composition: Composition, listener: str) -> bool:
    """Count a play: once per listener (user id or address) per piece per hour. True when counted."""
    from django.core.cache import cache

    window = int(timezone.now().timestamp()) // PLAY_WINDOW_SECONDS
    if not cache.add(f"play:{composition.id}:{listener}:{window}", 1, timeout=PLAY_WINDOW_SECONDS):
        return False
    Composition.objects.filter(id=composition.id).update(play_count=F("play_count") + 1)
    return True


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


# -- the generation task's writes ------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """The rows one run of the task holds, and the token that proves it."""

    token: uuid.UUID
    ids: list[int]

    def rows(self) -> Any:
        return Composition.objects.filter(id__in=self.ids, claim=self.token)


def composition_claim(*, composition_id: int) -> Claim | None:
    """Take the batch of `composition_id` for this run: its pending rows and those a dead run left.

    Returns None when nothing is left to do (already done, cancelled, deleted, or taken by a live
    run). Rows that have been started Q_MAX_ATTEMPTS times already are failed instead.
    """
    token = uuid.uuid4()
    now = timezone.now()
    with transaction.atomic():
        first = Composition.objects.select_for_update().filter(id=composition_id).first()
        if first is None:
            return None
        takeable = Composition.objects.select_for_update().filter(
            Q(status=Composition.Status.PENDING) | selectors.stalled_filter(), batch_id=first.batch_id
        )
        worn_out = takeable.filter(attempts__gte=settings.Q_MAX_ATTEMPTS)
        worn_out.update(
            status=Composition.Status.FAILED, status_message="Failed", claim=None, updated_at=now,
            error="The worker stopped while writing this piece, again and again. Try a shorter piece.",
            error_detail=f"Claimed {settings.Q_MAX_ATTEMPTS} times without finishing.",
        )
        ids = list(takeable.order_by("variation_index").values_list("id", flat=True))
        Composition.objects.filter(id__in=ids).update(
            status=Composition.Status.GENERATING, progress=0, status_message="Starting", claim=token,
            claimed_by=selectors.this_worker(), attempts=F("attempts") + 1, updated_at=now,
        )
    return Claim(token=token, ids=ids) if ids else None


def composition_progress(*, claim: Claim, percent: int | None = None, message: str | None = None) -> int:
    """Record progress or a stage on the rows `claim` still holds; returns how many it still holds.

    With no percent and no message it only shows that the run is alive (the heartbeat).
    """
    fields: dict[str, Any] = {"updated_at": timezone.now()}
    if percent is not None:
        fields["progress"] = percent
    if message is not None:
        fields["status_message"] = message
    return claim.rows().filter(status__in=Composition.ACTIVE_STATUSES).update(**fields)


def composition_rendering(*, claim: Claim, percent: int) -> int:
    """Move the held rows from generating to rendering; returns how many it still holds."""
    return claim.rows().filter(status=Composition.Status.GENERATING).update(
        status=Composition.Status.RENDERING, progress=percent, status_message="Rendering", updated_at=timezone.now()
    )


@dataclass
class FinishedPiece:
    """What a run stores for one finished row."""

    composition_id: int
    midi_name: str
    mp3_name: str
    fields: dict[str, Any]


def composition_finish(*, claim: Claim, piece: FinishedPiece) -> bool:
    """Mark one held row done with its stored files; False (and the files removed) if it was lost.

    The files are saved before this is called, outside any transaction; when the row was
    cancelled, deleted or handed to another run meanwhile, they belong to nobody and go.
    """
    updated = claim.rows().filter(id=piece.composition_id, status=Composition.Status.RENDERING).update(
        status=Composition.Status.DONE, progress=100, status_message="Done", claim=None,
        midi_file=piece.midi_name, mp3_file=piece.mp3_name, updated_at=timezone.now(), **piece.fields,
    )
    if not updated:
        for name in (piece.midi_name, piece.mp3_name):
            default_storage.delete(name)
    return bool(updated)


def composition_fail(*, claim: Claim, reason: str, detail: str) -> int:
    """Fail the rows `claim` still holds, with a reason shown to the user and a detail for the admin."""
    return claim.rows().filter(status__in=Composition.ACTIVE_STATUSES).update(
        status=Composition.Status.FAILED, status_message="Failed", claim=None, error=reason[:300],
        error_detail=detail, updated_at=timezone.now(),
    )


def composition_reconcile() -> dict[str, int]:
    """Give every unfinished piece a task that will run it, or fail it with a reason.

    Runs on the cluster's schedule and when a worker starts. Two kinds of row are found:
    rows a dead worker left generating or rendering (silent for Q_STALL_SECONDS), and pending
    rows whose task left the queue without claiming them (lost by the broker, or failed before
    it could claim). Both are queued again; the task's claim makes a duplicate harmless.
    """
    now = timezone.now()
    counts = {"stalled": 0, "orphaned": 0, "failed": 0, "training_failed": 0}
    with transaction.atomic():
        # Silent for too long, or held by a worker process of this machine that is gone.
        abandoned = selectors.stalled_filter() | Q(claim__in=selectors.claims_of_dead_local_workers())
        stalled = list(Composition.objects.filter(abandoned).values_list("id", "batch_id"))
        Composition.objects.filter(id__in=[row_id for row_id, _ in stalled]).update(
            status=Composition.Status.PENDING, claim=None, claimed_by="",
            status_message="Queued again: its worker stopped", updated_at=now,
        )
        counts["stalled"] = len(stalled)

    orphan_before = now - timedelta(seconds=settings.Q_ORPHAN_SECONDS)
    lost = Composition.objects.filter(status=Composition.Status.PENDING).filter(
        Q(queued_at__lt=orphan_before) | Q(queued_at__isnull=True, created_at__lt=orphan_before)
    )
    # A dead run's own queue entry may come back only after the broker's `retry`: queue anew now.
    batches: dict[uuid.UUID, bool] = {batch_id: True for _, batch_id in stalled}
    for batch_id in lost.values_list("batch_id", flat=True):
        batches.setdefault(batch_id, False)
    # Reading the broker's queue decodes every entry: only when some pending row may be orphaned.
    waiting = selectors.queued_composition_ids() if not all(batches.values()) else set()
    with transaction.atomic():
        # Two queue entries per attempt are plenty: past that, something refuses to run it.
        hopeless = Composition.objects.filter(
            batch_id__in=batches, status=Composition.Status.PENDING, queue_count__gte=2 * settings.Q_MAX_ATTEMPTS
        )
        counts["failed"] = hopeless.update(
            status=Composition.Status.FAILED, status_message="Failed", updated_at=now,
            error="The workers could not start this piece. Try again in a little while.",
            error_detail=f"Queued {2 * settings.Q_MAX_ATTEMPTS} times without a worker claiming it.",
        )
        for batch_id, was_stalled in batches.items():
            ids = set(
                Composition.objects.filter(batch_id=batch_id, status=Composition.Status.PENDING).values_list(
                    "id", flat=True
                )
            )
            if not ids or (not was_stalled and ids & waiting):
                continue  # finished meanwhile, or its task is still in the queue
            counts["orphaned"] += 0 if was_stalled else len(ids)
            _queue_batch(min(ids), batch_id)
    counts["training_failed"] = training_reconcile()
    if any(counts.values()):
        logger.warning("Reconciled compositions: %s", counts)
    return counts


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


# -- media -----------------------------------------------------------------------------------------

ORPHANS_FOLDER = "orphans"


def media_repair(*, report: selectors.MediaReport) -> dict[str, int]:
    """Mend what `report` found: render lost files again from the stored notes, or fail the piece
    with a reason; move files that no row names to MEDIA_ROOT/orphans/ (nothing is deleted)."""
    counts = {"rendered": 0, "failed": 0, "moved": 0}
    lost: dict[int, set[str]] = {}
    for row_id, name in report.missing:
        lost.setdefault(row_id, set()).add(name)
    for row_id in sorted(lost):
        piece = Composition.objects.filter(id=row_id).first()
        if piece is None:
            continue
        if piece.status == Composition.Status.DONE and piece.notes_json:
            _render_again(piece)
            counts["rendered"] += 1
        else:
            # The names of lost files go too, so the piece no longer points at nothing.
            gone = {field: "" for field in ("midi_file", "mp3_file", "primer_file")
                    if getattr(piece, field).name in lost[row_id]}
            Composition.objects.filter(id=row_id).update(
                status=Composition.Status.FAILED, status_message="Failed", claim=None, updated_at=timezone.now(),
                error="The files of this piece were lost. Try again to write it anew.",
                error_detail=f"verify_media: missing {', '.join(sorted(lost[row_id]))}", **gone,
            )
            counts["failed"] += 1
    for name in report.orphans:
        with default_storage.open(name, "rb") as source:
            default_storage.save(f"{ORPHANS_FOLDER}/{name}", source)
        default_storage.delete(name)
        counts["moved"] += 1
    return counts


def _render_again(piece: Composition) -> None:
    """Write a done piece's MIDI and MP3 again from its stored notes."""
    import tempfile

    from django.core.files import File

    from ml.generation.request import GenerationRequest
    from ml.pipeline import notes_from_piano_roll, render_piece

    request = GenerationRequest.from_dict(piece.params)
    notes = notes_from_piano_roll(
        piece.notes_json, tempo_bpm=request.tempo_bpm or 120.0, time_signature=request.time_signature,
        program=request.instrument,
    )
    with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
        midi_path, mp3_path = Path(tmp) / f"{piece.public_id}.mid", Path(tmp) / f"{piece.public_id}.mp3"
        duration = render_piece(runtime.get_renderer(), notes, midi_path=midi_path, audio_path=mp3_path)
        with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
            midi_name = default_storage.save(f"midi/{midi_path.name}", File(midi))
            mp3_name = default_storage.save(f"mp3/{mp3_path.name}", File(mp3))
    old = [name for name in (piece.midi_file.name, piece.mp3_file.name) if name]
    Composition.objects.filter(id=piece.id).update(
        midi_file=midi_name, mp3_file=mp3_name, duration_seconds=duration, updated_at=timezone.now()
    )
    for name in old:
        if name not in (midi_name, mp3_name) and default_storage.exists(name):
            default_storage.delete(name)


# -- accounts --------------------------------------------------------------------------------------


def user_logout_everywhere(*, user: AbstractBaseUser) -> int:
    """End every session and API token of `user`; returns how many sessions ended."""
    from django.contrib.sessions.models import Session

    from compositions.models import ApiToken

    ApiToken.objects.filter(user=user).delete()
    # Sessions do not index their user: look inside the live ones (a scan of the session table).
    mine = [
        session.session_key
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    Session.objects.filter(session_key__in=mine).delete()
    return len(mine)


# -- training and models ---------------------------------------------------------------------------


@transaction.atomic
def training_request(*, datasets: Sequence[TrainingDataset], out_path: Path) -> None:
    """Mark `datasets` queued and train one model on them in the background."""
    if not datasets:
        raise ValueError("Choose at least one data set to train on.")
    ids = [dataset.id for dataset in datasets]
    TrainingDataset.objects.filter(id__in=ids).update(status=TrainingDataset.Status.QUEUED,
                                                       status_changed_at=timezone.now())
    # Training has its own time limit, far longer than a piece's.
    _queue_after_commit("compositions.tasks.model_train", ids, str(out_path), timeout=settings.TRAINING_TIMEOUT)


@transaction.atomic
def music_model_activate(*, music_model: MusicModel) -> MusicModel:
    """Make `music_model` the one that serves new compositions."""
    MusicModel.objects.filter(is_active=True).exclude(id=music_model.id).update(is_active=False)
    music_model.is_active = True
    music_model.save(update_fields=["is_active"])
    return music_model
