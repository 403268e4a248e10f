"""Versions of a piece: a new one (continue now; regenerate and harmonise through the same door), undo.

A new version is saved pending and written by the generation task, like a new piece; it becomes
the piece's current version when it is done. Any finished version can be made current again.
The refusals are NotAllowed (409): a piece that is not done, one with a version still being
written, one at MAX_VERSIONS_PER_PIECE, or one whose model is gone when the new version must be
written by the model that wrote the piece.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max

from compositions import runtime
from compositions.errors import NotAllowed, RequestInvalid
from compositions.models import Composition, CompositionVersion
from compositions.services.queueing import batch_queue
from compositions.services.quotas import quota_check

# Kinds that rewrite the current version's notes, which only the model that wrote them can do.
KINDS_NEEDING_THE_SAME_MODEL = (CompositionVersion.Kind.REGENERATE, CompositionVersion.Kind.HARMONISE)
# Versions that failed or were cancelled keep their reason but do not count towards the cap.
KEPT = (CompositionVersion.Status.DONE, *CompositionVersion.UNFINISHED_STATUSES)


@transaction.atomic
def composition_version_create(
    *, composition: Composition, kind: str, change: str, params: Mapping[str, Any], primer: bytes | None = None,
) -> CompositionVersion:
    """Save a pending new version of `composition` and queue the task that writes it.

    `params` is a checked request (`GenerationRequest.to_dict()`), and may carry what the kind
    needs besides (the bars to regenerate, say); `primer` is a MIDI file the version continues;
    `change` says in words what the version changes.

    Raises:
        NotAllowed: the piece is not done, another version is being written, the piece has
            MAX_VERSIONS_PER_PIECE versions, or (for a regenerated passage or a harmonisation)
            the model that wrote it is gone. QuotaExceeded: the user is over a quota.
    """
    # The user's row serialises the quotas (as for a new piece); the piece's row, its versions.
    get_user_model().objects.select_for_update().filter(pk=composition.user_id).first()
    # of=self: PostgreSQL cannot lock the nullable side of the join to the current version.
    composition = Composition.objects.select_for_update(of=("self",)).select_related("current_version").get(
        id=composition.id)
    current = composition.current_version
    if current is None or current.status != CompositionVersion.Status.DONE:
        raise NotAllowed("Only a finished piece can get a new version.")
    running = composition.versions.filter(status__in=CompositionVersion.UNFINISHED_STATUSES).first()
    if running is not None:
        raise NotAllowed(f"Version {running.number} of this piece is still being written; wait for it to finish "
                         "or cancel it.")
    kept = composition.versions.filter(status__in=KEPT).count()
    if kept >= settings.MAX_VERSIONS_PER_PIECE:
        raise NotAllowed(f"This piece has {kept} versions, the most it keeps ({settings.MAX_VERSIONS_PER_PIECE}); "
                         "delete one you no longer need.")
    if kind in KINDS_NEEDING_THE_SAME_MODEL:
        _model_of(current)
    quota_check(user=composition.user, wanted=1)
    batch_id = uuid.uuid4()
    primer_name = default_storage.save(f"primers/{batch_id}.mid", ContentFile(primer)) if primer else ""
    number = (composition.versions.aggregate(last=Max("number"))["last"] or 0) + 1
    version = CompositionVersion.objects.create(
        composition=composition, number=number, kind=kind, change=change[:200], source=current, batch_id=batch_id,
        primer_file=primer_name, status_message="Queued", params=dict(params),
    )
    batch_queue(version_id=version.id, batch_id=batch_id)
    return version


def composition_continue(*, composition: Composition) -> CompositionVersion:
    """A new version of the piece that goes on from its current one (whose MIDI file it continues).

    The continuation has the current version's settings, a new random seed, and its length again
    (the length counts the continuation only).
    """
    current = composition.current_version
    if current is None or current.status != CompositionVersion.Status.DONE or not current.midi_file:
        raise NotAllowed("Only a finished piece can be continued.")
    with current.midi_file.open("rb") as f:
        midi = f.read()
    # Checked before the transaction, as a new request is: the MIDI file is parsed in a sandbox.
    request = runtime.validated_request({**runtime.request_controls(current.params), "seed": None, "variations": 1},
                                        primer_midi=midi)
    return composition_version_create(
        composition=composition, kind=CompositionVersion.Kind.CONTINUE,
        change=f"continued from version {current.number}", params=request.to_dict(), primer=midi,
    )


def composition_regenerate(*, composition: Composition, bars: object, seed: object = None,
                           temperature: object = None) -> CompositionVersion:
    """A new version of the piece with bars first..last of its current version written again.

    `bars` is [first, last] (1-based, inclusive); `seed` and `temperature` as in a request (empty:
    a new random seed, the current version's temperature).

    Raises:
        RequestInvalid: on `bars` (not two whole numbers, outside the piece, an empty range, the
            whole piece), or on `seed` or `temperature`. NotAllowed: as composition_version_create.
    """
    from ml.generation.infill import PassageError, check_bars

    current = composition.current_version
    if current is None or current.status != CompositionVersion.Status.DONE or not current.form_json.get("bars"):
        raise NotAllowed("Only a finished piece can have a passage regenerated.")
    pair = list(bars) if isinstance(bars, (list, tuple)) else None
    if pair is None or len(pair) != 2:
        raise RequestInvalid.of("bars", "Give the bars as two whole numbers, such as 5 and 8.")
    first, last = pair
    try:
        check_bars(first, last, int(current.form_json["bars"]))
    except PassageError as exc:
        raise RequestInvalid.of("bars", str(exc)) from exc
    changes: dict[str, Any] = {"seed": seed, "variations": 1}
    if temperature is not None and temperature != "":
        changes["temperature"] = temperature
    request = _checked({**runtime.request_controls(current.params), **changes}, styles=None)
    return composition_version_create(
        composition=composition, kind=CompositionVersion.Kind.REGENERATE,
        change=f"bars {first}–{last} regenerated from version {current.number}",
        params={**request.to_dict(), "bars": [first, last]},
    )


def composition_harmonise(*, composition: Composition, style: str | None = None) -> CompositionVersion:
    """A new version of the piece: voices written under its current version's melody (the top line).

    `style` is the style that writes the voices: by default chorale where the model has it, else the
    piece's own.

    Raises:
        RequestInvalid: the melody cannot be harmonised (on `kind`), or a bad `style`.
        NotAllowed: as composition_version_create.
    """
    current = composition.current_version
    if current is None or current.status != CompositionVersion.Status.DONE:
        raise NotAllowed("Only a finished piece can be harmonised.")
    from ml.pipeline import notes_from_piano_roll

    # The stored form gives the beat (its phrases in beats and in seconds) and the bar, which is all
    # the melody's checks need (its length in bars); the worker reads the notated metre from the file.
    form = current.form_json
    phrases = form.get("phrases") or []
    beats = sum(p["end"] - p["start"] for p in phrases)
    seconds = sum(p["end_s"] - p["start_s"] for p in phrases)
    tempo = 60.0 * beats / seconds if beats > 0 and seconds > 0 else float(current.params.get("tempo_bpm") or 120.0)
    bar_beats = float(form.get("bar_beats") or 4.0)
    metre = (int(bar_beats), 4) if bar_beats.is_integer() else (int(bar_beats * 2), 8)
    melody = notes_from_piano_roll(current.notes_json, tempo_bpm=tempo, time_signature=metre, program=0)
    runtime.melody_check(melody, field="kind")
    styles = runtime.get_generator(_model_of(current)).styles
    if not style:
        style = "chorale" if "chorale" in styles else current.params.get("style", composition.style)
    request = _checked({**runtime.request_controls(current.params), "style": style, "seed": None,
                        "variations": 1}, styles=styles)
    return composition_version_create(
        composition=composition, kind=CompositionVersion.Kind.HARMONISE,
        change=f"version {current.number} harmonised ({str(style).replace('-', ' ')})", params=request.to_dict(),
    )


def _model_of(version: CompositionVersion) -> Path:
    """The model file that wrote `version`; NotAllowed once it is gone (only it can change its notes)."""
    path = runtime.model_file_of(version=version)
    if path is None:
        raise NotAllowed(f"The model that wrote this piece ({version.model_name or 'unknown'}) is no longer on "
                         "this site, so only that model could change its notes: continue it, or compose it again.")
    return path


def _checked(params: Mapping[str, Any], *, styles: list[str] | None) -> Any:
    """The GenerationRequest of `params`, with the bad fields named (RequestInvalid); its style one of
    `styles` (those of the model that will write it) when given."""
    from ml.generation.request import GenerationRequest, RequestError

    try:
        request = GenerationRequest.from_dict(params)
    except RequestError as exc:
        raise RequestInvalid(exc.errors) from exc
    if styles is not None and request.style not in styles:
        raise RequestInvalid.of("style", f"Unknown style {request.style!r}; choose one of: {', '.join(styles)}.")
    return request


@transaction.atomic
def composition_version_set_current(*, version: CompositionVersion) -> Composition:
    """Make a finished version its piece's current one (the page, the files, share links, the gallery)."""
    version = CompositionVersion.objects.select_for_update().get(id=version.id)
    if version.status != CompositionVersion.Status.DONE:
        raise NotAllowed("Only a finished version can be made current.")
    Composition.objects.filter(id=version.composition_id).update(current_version=version)
    return Composition.objects.select_related("current_version").get(id=version.composition_id)


def composition_version_delete(*, version: CompositionVersion) -> None:
    """Delete a version that is neither current nor being written, and its files."""
    with transaction.atomic():
        version = CompositionVersion.objects.select_for_update(of=("self",)).select_related("composition").get(
            id=version.id)
        if version.composition.current_version_id == version.id:
            raise NotAllowed("The current version cannot be deleted; make another one current first.")
        if version.status in CompositionVersion.UNFINISHED_STATUSES:
            raise NotAllowed("A version that is being written cannot be deleted; cancel it first.")
        files = [getattr(version, name).name for name in CompositionVersion.FILE_FIELDS if name != "primer_file"]
        primer = version.primer_file.name
        version.delete()
        if primer and not CompositionVersion.objects.filter(primer_file=primer).exists():
            files.append(primer)
    for name in files:
        if name:
            default_storage.delete(name)
