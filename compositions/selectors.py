"""Reads: what a user may see of compositions, and how their status is reported."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from compositions.errors import RequestInvalid
from compositions.models import Composition, Primer


class CompositionStatus(TypedDict):
    """The payload the progress bar polls."""

    id: str
    status: str
    progress: int
    message: str
    error: str
    mp3_url: str | None
    midi_url: str | None


class CompositionDetail(CompositionStatus):
    """The API's view of one composition: its status, settings and, once done, its harmony.

    `settings` holds every control of ml.generation.request.GenerationRequest (the seed: the one that
    reproduces this variation), and `continues_midi`.
    """

    model_name: str
    duration_seconds: float | None
    settings: dict[str, Any]
    chords: list[list[float | str | None]]
    form: dict[str, Any]


def composition_list_for_user(
    *, user: AbstractBaseUser, style: str = "", status: str = "", query: str = "", favourites: bool = False
) -> QuerySet[Composition]:
    """The user's compositions, newest first, filtered as the gallery's controls ask."""
    pieces = Composition.objects.filter(user=user).defer("notes_json", "chords_json", "form_json")
    if style:
        pieces = pieces.filter(style=style)
    if status:
        pieces = pieces.filter(status=status)
    if query:
        pieces = pieces.filter(Q(title__icontains=query) | Q(style__icontains=query) | Q(detected_key__icontains=query))
    if favourites:
        pieces = pieces.filter(is_favourite=True)
    return pieces


def composition_public_list(*, order: str = "newest") -> QuerySet[Composition]:
    """Finished public pieces that no moderator hid: newest first, or most played."""
    pieces = Composition.objects.filter(
        visibility=Composition.Visibility.PUBLIC, hidden=False, status=Composition.Status.DONE
    ).defer("notes_json", "chords_json", "form_json").select_related("user")
    return pieces.order_by("-play_count", "-created_at") if order == "popular" else pieces


def composition_get_for_user(*, user: AbstractBaseUser, public_id: uuid.UUID | str) -> Composition:
    """The user's composition `public_id`; Http404 for anyone else's, so its existence stays hidden."""
    composition = Composition.objects.filter(user=user, public_id=public_id).first()
    if composition is None:
        raise Http404("No such composition.")
    return composition


def composition_get_for_viewer(*, user: AbstractBaseUser | None, public_id: uuid.UUID | str) -> Composition:
    """The composition if `user` may see it: their own, or a public one no moderator hid; else Http404."""
    composition = Composition.objects.filter(public_id=public_id).first()
    if composition is None or not composition_visible_to(composition=composition, user=user):
        raise Http404("No such composition.")
    return composition


def composition_visible_to(*, composition: Composition, user: AbstractBaseUser | None) -> bool:
    if user is not None and user.is_authenticated and composition.user_id == user.pk:
        return True
    return composition.visibility == Composition.Visibility.PUBLIC and not composition.hidden


def composition_get_by_share_token(*, token: str) -> Composition:
    """The piece a share link names: unlisted or public, not hidden; Http404 once the link is revoked."""
    composition = None
    if token:
        composition = Composition.objects.filter(
            share_token=token, hidden=False,
            visibility__in=(Composition.Visibility.UNLISTED, Composition.Visibility.PUBLIC),
        ).first()
    if composition is None:
        raise Http404("No such composition.")
    return composition


def composition_batch(*, composition: Composition) -> QuerySet[Composition]:
    """All variations requested together with `composition`, in order."""
    return Composition.objects.filter(batch_id=composition.batch_id, user_id=composition.user_id).order_by(
        "variation_index"
    )


def composition_status(*, composition: Composition, for_api: bool = False) -> CompositionStatus:
    """Where `composition` stands, with download URLs once it is done.

    The API's file URLs accept token authentication; the pages' ones need a browser session.
    """
    done = composition.status == Composition.Status.DONE
    mp3_name, midi_name = ("api:composition-mp3", "api:composition-midi") if for_api else (
        "compositions:mp3", "compositions:midi"
    )
    return {
        "id": str(composition.public_id),
        "status": composition.status,
        "progress": composition.progress,
        "message": composition.status_message,
        "error": composition.error,
        "mp3_url": reverse(mp3_name, args=[composition.public_id]) if done else None,
        "midi_url": reverse(midi_name, args=[composition.public_id]) if done else None,
    }


def composition_detail(*, composition: Composition) -> CompositionDetail:
    """The API's answer for one composition: status, API file URLs, settings and chords."""
    return {
        **composition_status(composition=composition, for_api=True),
        "model_name": composition.model_name,
        "duration_seconds": composition.duration_seconds,
        "settings": {**composition.params, "continues_midi": bool(composition.primer_file)},
        "chords": composition.chords_json,
        "form": composition.form_json,
    }


def primer_bytes(*, user: AbstractBaseUser, primer_id: str) -> bytes:
    """The bytes of one of the user's uploaded primers; RequestInvalid when there is no such primer."""
    try:
        public_id = uuid.UUID(str(primer_id))
    except ValueError:
        public_id = None
    primer = Primer.objects.filter(user=user, public_id=public_id).first() if public_id else None
    if primer is None:
        raise RequestInvalid.of("primer_id", "There is no such primer of yours.")
    with primer.file.open("rb") as f:
        return f.read()


def composition_settings_table(*, composition: Composition) -> list[tuple[str, str]]:
    """(label, value) rows of the settings a piece was requested with, as its page lists them."""
    from ml.generation.request import CONTROLS

    params = composition.params
    rows = [("Length", composition.length_label)]
    for name, control in CONTROLS.items():
        if name in ("seconds", "notes") or name not in params:
            continue
        if name == "variations" and params[name] == 1:
            continue
        if name == "mode" and params.get("key") == "any":
            continue  # the mode applies only with a key
        rows.append((control.label, control.display(params[name])))
    if composition.primer_file:
        rows.append(("Continues", "your MIDI file"))
    return rows


def stalled_before() -> datetime:
    """Rows still generating or rendering that were last touched before this were abandoned.

    A running task touches its rows every Q_HEARTBEAT_SECONDS (a thread beside the work), so
    silence for Q_STALL_SECONDS means its worker died.
    """
    return timezone.now() - timedelta(seconds=settings.Q_STALL_SECONDS)


def stalled_filter() -> Q:
    """Rows that a dead worker left half-done."""
    return Q(status__in=Composition.ACTIVE_STATUSES, updated_at__lt=stalled_before())


def composition_is_stalled(*, composition: Composition) -> bool:
    return composition.status in Composition.ACTIVE_STATUSES and composition.updated_at < stalled_before()


def this_worker() -> str:
    """ "host:pid" of this process, as recorded on the rows it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claims_of_dead_local_workers() -> list[uuid.UUID]:
    """Claims held by worker processes of this machine that no longer run.

    A killed worker is found at once this way (the cluster spawns its replacement, which
    reconciles), instead of after Q_STALL_SECONDS of silence. Other machines' workers are
    judged by the heartbeat alone.
    """
    import psutil

    prefix = f"{socket.gethostname()}:"
    claims = []
    for claim, owner in Composition.objects.filter(
        status__in=Composition.ACTIVE_STATUSES, claimed_by__startswith=prefix
    ).values_list("claim", "claimed_by"):
        pid = int(owner.removeprefix(prefix))
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive and claim is not None:
            claims.append(claim)
    return claims


def queued_composition_ids() -> set[int]:
    """Ids that the generation tasks still waiting in the broker (or, with the ORM broker, running) were given.

    Redis hands a task out by removing it from its list, so there a running task is not seen;
    it has claimed its rows by then, which is what the reconciler looks at first.
    """
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker()
    if settings.Q_CLUSTER.get("orm"):
        from django_q.models import OrmQ

        payloads = list(OrmQ.objects.filter(key=broker.list_key).values_list("payload", flat=True))
    else:
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
    ids: set[int] = set()
    for payload in payloads:
        try:
            task = SignedPackage.loads(payload)
        except Exception:  # a foreign or corrupt entry is not ours to judge
            continue
        if str(task.get("func")) == "compositions.tasks.composition_generate" and task.get("args"):
            ids.add(int(task["args"][0]))
    return ids


@dataclass
class MediaReport:
    """Rows whose files are gone, and files that no row names."""

    missing: list[tuple[int, str]] = field(default_factory=list)  # (composition id, file name)
    orphans: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.missing and not self.orphans


MEDIA_FOLDERS = ("midi", "mp3", "primers")


def media_report() -> MediaReport:
    """Compare the stored files with the rows that name them."""
    report = MediaReport()
    named: set[str] = set()
    for row_id, status, *names in Composition.objects.values_list("id", "status", "midi_file", "mp3_file",
                                                                   "primer_file").iterator():
        for name in names:
            if not name:
                continue
            named.add(name)
            if not default_storage.exists(name):
                report.missing.append((row_id, name))
        if status == Composition.Status.DONE:
            for kind, name in zip(("MIDI", "MP3"), names[:2]):
                if not name:
                    report.missing.append((row_id, f"(no {kind} file)"))
    for folder in MEDIA_FOLDERS:
        if not default_storage.exists(folder):
            continue
        for filename in default_storage.listdir(folder)[1]:
            if f"{folder}/{filename}" not in named:
                report.orphans.append(f"{folder}/{filename}")
    return report
