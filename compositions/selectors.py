"""Reads: what a user may see of compositions, and how their status is reported."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from compositions.errors import RequestInvalid
from compositions.models import Composition, CompositionVersion, MusicModel, Primer, TrainingDataset


class CompositionStatus(TypedDict):
    """The payload the progress bar polls: a piece's current version, or one of its versions."""

    id: str
    status: str
    progress: int
    message: str
    error: str
    mp3_url: str | None
    midi_url: str | None


class CompositionDetail(CompositionStatus):
    """The API's view of one composition: its current version's status, settings and, once done, harmony.

    `settings` holds every control of ml.generation.request.GenerationRequest (the seed: the one that
    reproduces this version), and `continues_midi`.
    """

    version: int
    versions_url: str
    model_name: str
    duration_seconds: float | None
    settings: dict[str, Any]
    chords: list[list[float | str | None]]
    form: dict[str, Any]
    constraints: list[dict[str, Any]]  # [{"control", "asked", "did", "met"}, ...]
    loudness: dict[str, float] | None  # {"integrated_lufs", "true_peak_dbtp", "range_lu"} of the MP3
    score: dict[str, Any]  # {"state", "reason", "svg_url", "musicxml_url", "bar_times"}


class VersionItem(CompositionStatus):
    """One version in a piece's list of versions."""

    number: int
    kind: str
    change: str
    summary: str
    seed: int | None
    current: bool
    duration_seconds: float | None
    created_at: datetime
    constraints: list[dict[str, Any]]
    loudness: dict[str, float] | None
    score: dict[str, Any]


# What a list of pieces never shows: the notes, chords and form of their current versions.
# Loaded only where one piece is shown; the form plan stays (a few kB) because every card names its key.
_HEAVY = ("current_version__notes_json", "current_version__chords_json")


def composition_list_for_user(
    *, user: AbstractBaseUser, style: str = "", status: str = "", query: str = "", favourites: bool = False
) -> QuerySet[Composition]:
    """The user's compositions, newest first, filtered as the gallery's controls ask (status: the current version's)."""
    pieces = Composition.objects.filter(user=user).select_related("current_version").defer(*_HEAVY)
    if style:
        pieces = pieces.filter(style=style)
    if status:
        pieces = pieces.filter(current_version__status=status)
    if query:
        pieces = pieces.filter(Q(title__icontains=query) | Q(style__icontains=query)
                               | Q(current_version__detected_key__icontains=query))
    if favourites:
        pieces = pieces.filter(is_favourite=True)
    return pieces


def composition_public_list(*, order: str = "newest") -> QuerySet[Composition]:
    """Public pieces whose current version is finished and that no moderator hid: newest first, or most played."""
    pieces = Composition.objects.filter(
        visibility=Composition.Visibility.PUBLIC, hidden=False, current_version__status=CompositionVersion.Status.DONE
    ).select_related("current_version", "user").defer(*_HEAVY)
    return pieces.order_by("-play_count", "-created_at") if order == "popular" else pieces


def composition_get_for_user(*, user: AbstractBaseUser, public_id: uuid.UUID | str) -> Composition:
    """The user's composition `public_id`; Http404 for anyone else's, so its existence stays hidden."""
    composition = Composition.objects.filter(user=user, public_id=public_id).select_related("current_version").first()
    if composition is None:
        raise Http404("No such composition.")
    return composition


def composition_get_for_viewer(*, user: AbstractBaseUser | None, public_id: uuid.UUID | str) -> Composition:
    """The composition if `user` may see it: their own, or a public one no moderator hid; else Http404."""
    composition = Composition.objects.filter(public_id=public_id).select_related("current_version").first()
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
    if token and "\x00" not in token:  # no token holds a NUL, which PostgreSQL refuses in a query
        composition = Composition.objects.filter(
            share_token=token, hidden=False,
            visibility__in=(Composition.Visibility.UNLISTED, Composition.Visibility.PUBLIC),
        ).select_related("current_version").first()
    if composition is None:
        raise Http404("No such composition.")
    return composition


def composition_get_for_listener(*, user: AbstractBaseUser | None, public_id: uuid.UUID | str,
                                 share_token: str = "") -> Composition:
    """A piece the caller may hear: by its share token when one is given, else as `composition_get_for_viewer`."""
    if not share_token:
        return composition_get_for_viewer(user=user, public_id=public_id)
    composition = composition_get_by_share_token(token=share_token)
    if str(composition.public_id) != str(public_id):
        raise Http404("No such composition.")
    return composition


def composition_batch(*, composition: Composition) -> QuerySet[Composition]:
    """All variations requested together with `composition`, in order."""
    return Composition.objects.filter(batch_id=composition.batch_id, user_id=composition.user_id).order_by(
        "variation_index"
    )


def composition_version_get(*, composition: Composition, number: int) -> CompositionVersion:
    """Version `number` of a piece the caller may see; Http404 when it has none by that number."""
    version = composition.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    version.composition = composition
    return version


def composition_version_named(*, composition: Composition, number: str | None) -> CompositionVersion:
    """The version a file URL or status URL names with `?version=n`; without it, the piece's current one."""
    if not number:
        assert composition.current_version is not None, "a piece is saved with its first version"
        return composition.current_version
    try:
        wanted = int(number)
    except ValueError:
        raise Http404("No such version.") from None
    return composition_version_get(composition=composition, number=wanted)


def composition_version_list(*, composition: Composition) -> QuerySet[CompositionVersion]:
    """A piece's versions, oldest first, without their notes."""
    return composition.versions.order_by("number").defer("notes_json", "chords_json", "form_json")


def composition_version_running(*, composition: Composition) -> CompositionVersion | None:
    """The version of a piece that is queued or being written, if any (there is at most one)."""
    return composition.versions.filter(status__in=CompositionVersion.UNFINISHED_STATUSES).first()


def _file_urls(composition: Composition, version: CompositionVersion, *, for_api: bool,
               share_token: str = "") -> dict[str, str | None]:
    """The MP3 and MIDI URLs of a finished version: the piece's own for its current one, else `?version=n`."""
    if version.status != CompositionVersion.Status.DONE:
        return {"mp3_url": None, "midi_url": None}
    names = ("api:composition-mp3", "api:composition-midi") if for_api else ("compositions:mp3", "compositions:midi")
    query = {} if composition.current_version_id == version.id else {"version": version.number}
    if share_token:
        query["share_token"] = share_token
    suffix = f"?{urlencode(query)}" if query else ""
    return {kind: reverse(name, args=[composition.public_id]) + suffix
            for kind, name in zip(("mp3_url", "midi_url"), names)}


def _score(composition: Composition, version: CompositionVersion, *, for_api: bool,
           share_token: str = "") -> dict[str, Any]:
    """The score of a version: its state, the SVG and MusicXML URLs once ready, the reason where there is none,
    and the start of each bar in seconds."""
    state = version.score_state
    urls: dict[str, str | None] = {"svg_url": None, "musicxml_url": None}
    if state == "ready":
        names = ("api:composition-score-svg", "api:composition-musicxml") if for_api else \
            ("compositions:score-svg", "compositions:musicxml")
        query = {} if composition.current_version_id == version.id else {"version": version.number}
        if share_token:
            query["share_token"] = share_token
        suffix = f"?{urlencode(query)}" if query else ""
        urls = {kind: reverse(name, args=[composition.public_id]) + suffix
                for kind, name in zip(("svg_url", "musicxml_url"), names)}
    return {"state": state or "not written", "reason": version.score_error, **urls,
            "bar_times": version.score_bars if state == "ready" else []}


def composition_version_status(
    *, composition: Composition, version: CompositionVersion, for_api: bool = False, share_token: str = "",
) -> CompositionStatus:
    """Where one version of `composition` stands, with its file URLs once it is done.

    The API's file URLs accept token authentication (and carry `share_token` when the caller came
    with one); the pages' ones need a browser session.
    """
    urls = _file_urls(composition, version, for_api=for_api, share_token=share_token)
    return {
        "id": str(composition.public_id),
        "status": version.status,
        "progress": version.progress,
        "message": version.status_message,
        "error": version.error,
        "mp3_url": urls["mp3_url"],
        "midi_url": urls["midi_url"],
    }


def composition_status(*, composition: Composition, for_api: bool = False) -> CompositionStatus:
    """Where a piece stands: its current version's status, with download URLs once it is done."""
    version = composition.current_version
    assert version is not None, "a piece is saved with its first version"
    return composition_version_status(composition=composition, version=version, for_api=for_api)


def composition_settings(*, version: CompositionVersion) -> dict[str, Any]:
    """The request a version was written from, with the seed that reproduces it once it is known."""
    return {**version.params, "seed": version.seed_used}


def composition_detail(*, composition: Composition) -> CompositionDetail:
    """The API's answer for one composition: its current version's status, settings, chords and form."""
    version = composition.current_version
    assert version is not None, "a piece is saved with its first version"
    return {
        **composition_status(composition=composition, for_api=True),
        "version": version.number,
        "versions_url": reverse("api:composition-versions", args=[composition.public_id]),
        "model_name": version.model_name,
        "duration_seconds": version.duration_seconds,
        "settings": {**composition_settings(version=version),
                     "continues_midi": bool(version.primer_file) and not version.params.get("harmonise")},
        "chords": version.chords_json,
        "form": version.form_json,
        "constraints": version.constraints,
        "loudness": version.loudness,
        "score": _score(composition, version, for_api=True),
    }


def composition_version_item(*, composition: Composition, version: CompositionVersion, for_api: bool = False,
                             share_token: str = "") -> VersionItem:
    """One line of a piece's list of versions."""
    return {
        **composition_version_status(composition=composition, version=version, for_api=for_api,
                                     share_token=share_token),
        "number": version.number,
        "kind": version.kind,
        "change": version.change,
        "summary": version.summary,
        "seed": version.seed_used,
        "current": composition.current_version_id == version.id,
        "duration_seconds": version.duration_seconds,
        "created_at": version.created_at,
        "constraints": version.constraints,
        "loudness": version.loudness,
        "score": _score(composition, version, for_api=for_api, share_token=share_token),
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


def composition_settings_table(*, version: CompositionVersion) -> list[tuple[str, str]]:
    """(label, value) rows of the settings a version was requested with, as its page lists them."""
    from ml.generation.request import CONTROLS

    params = composition_settings(version=version)
    rows = [("Length", version.length_label)]
    for name, control in CONTROLS.items():
        if name in ("seconds", "notes") or name not in params:
            continue
        if name == "variations" and params[name] == 1:
            continue
        if name == "mode" and params.get("key") == "any":
            continue  # the mode applies only with a key
        rows.append((control.label, control.display(params[name])))
    if version.primer_file and version.params.get("harmonise"):
        rows.append(("Harmonises", "the melody of your MIDI file"))
    elif version.primer_file:
        source = version.source
        rows.append(("Continues", f"version {source.number}" if source else "your MIDI file"))
    elif version.kind == CompositionVersion.Kind.REGENERATE and version.params.get("bars"):
        first, last = version.params["bars"]
        source = version.source
        rows.append(("Regenerated", f"bars {first}–{last}" + (f" of version {source.number}" if source else "")))
    return rows


def stalled_before() -> datetime:
    """Versions still generating or rendering that were last touched before this were abandoned.

    A running task touches its versions every Q_HEARTBEAT_SECONDS (a thread beside the work), so
    silence for Q_STALL_SECONDS means its worker died.
    """
    return timezone.now() - timedelta(seconds=settings.Q_STALL_SECONDS)


def stalled_filter() -> Q:
    """Versions that a dead worker left half-done."""
    return Q(status__in=CompositionVersion.ACTIVE_STATUSES, updated_at__lt=stalled_before())


def version_is_stalled(*, version: CompositionVersion) -> bool:
    return version.status in CompositionVersion.ACTIVE_STATUSES and version.updated_at < stalled_before()


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
    for claim, owner in CompositionVersion.objects.filter(
        status__in=CompositionVersion.ACTIVE_STATUSES, claimed_by__startswith=prefix
    ).values_list("claim", "claimed_by"):
        pid = int(owner.removeprefix(prefix))
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive and claim is not None:
            claims.append(claim)
    return claims


def queued_version_ids() -> set[int]:
    """Version ids that the generation tasks waiting in the broker, or held by a live cluster, were given.

    Redis hands a task out by removing it from its list, so there a running task is not seen;
    it has claimed its versions by then, which is what the reconciler looks at first. The ORM
    broker keeps a task it hands out, locked for `retry` seconds (hours). A task handed out before
    every live cluster started was taken by a cluster that has stopped since: one whose worker was
    stopped past the grace period before it claimed the piece, or that held the task in its own
    queue. It would come back only when the lock runs out, so it does not count as queued.
    """
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage
    from django_q.status import Stat

    from compositions.services.queueing import GENERATE_TASK

    broker = get_broker()
    if settings.Q_CLUSTER.get("orm"):
        from django_q.models import OrmQ

        now = timezone.now()
        births = [stat.tob for stat in Stat.get_all(broker=broker) if stat.tob]
        oldest_live = min(births, default=now)
        retry = timedelta(seconds=int(settings.Q_CLUSTER["retry"]))
        rows = OrmQ.objects.filter(key=broker.list_key).values_list("payload", "lock")
        payloads = [payload for payload, lock in rows if lock <= now or lock - retry >= oldest_live]
    else:
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
    ids: set[int] = set()
    for payload in payloads:
        try:
            task = SignedPackage.loads(payload)
        except Exception:  # a foreign or corrupt entry is not ours to judge
            continue
        if str(task.get("func")) == GENERATE_TASK and task.get("args"):
            ids.add(int(task["args"][0]))
    return ids


@dataclass(frozen=True)
class MissingFile:
    """A file a version names that is not in storage (or a finished version without its file)."""

    version_id: int
    composition_id: int
    number: int
    name: str


@dataclass
class MediaReport:
    """Versions whose files are gone, and files that nothing names."""

    missing: list[MissingFile] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.missing and not self.orphans


MEDIA_FOLDERS = ("midi", "mp3", "primers", "scores", "models", "datasets")


def media_report() -> MediaReport:
    """Compare the stored files with the versions (and uploaded primers) that name them."""
    report = MediaReport()
    named: set[str] = {*Primer.objects.values_list("file", flat=True),
                       *MusicModel.objects.values_list("file", flat=True),
                       *TrainingDataset.objects.values_list("archive", flat=True)}
    rows = CompositionVersion.objects.values_list("id", "composition_id", "number", "status",
                                                  *CompositionVersion.FILE_FIELDS)
    for version_id, composition_id, number, status, *names in rows.iterator():
        for name in names:
            if not name:
                continue
            named.add(name)
            if not default_storage.exists(name):
                report.missing.append(MissingFile(version_id, composition_id, number, name))
        if status == CompositionVersion.Status.DONE:
            for kind, name in zip(("MIDI", "MP3"), names[:2]):
                if not name:
                    report.missing.append(MissingFile(version_id, composition_id, number, f"(no {kind} file)"))
    for folder in MEDIA_FOLDERS:
        if not default_storage.exists(folder):
            continue
        for filename in default_storage.listdir(folder)[1]:
            if f"{folder}/{filename}" not in named:
                report.orphans.append(f"{folder}/{filename}")
    return report
