"""Compositions, the models that write them, and the data sets the models learn from."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac

# Two words from the piece's id make titles that tell pieces apart and are easy to say.
_TITLE_WORDS = ("Amber", "Silver", "Quiet", "Bright", "Velvet", "Morning", "Autumn", "Hidden", "Golden", "Misty",
                "Scarlet", "Winter", "Gentle", "Wild", "Lunar", "Copper", "Early", "Distant", "Hollow", "Blue")
_TITLE_NOUNS = ("Heron", "Harbour", "Lantern", "Meadow", "River", "Sparrow", "Orchard", "Canyon", "Willow",
                "Comet", "Island", "Ember", "Garden", "Echo", "Valley", "Falcon", "Tide", "Cedar", "Fable", "Bell")



class Composition(models.Model):
    """One piece: its owner, title, sharing and plays, and the version of it that is heard now.

    Its music is in its versions (`CompositionVersion`): the one the first request wrote, then each
    continuation, regenerated passage or harmonisation. The page, the API, share links and the
    gallery show the current version; a piece's status is its current version's.
    """

    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private"
        UNLISTED = "unlisted", "Unlisted"
        PUBLIC = "public", "Public"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="compositions")
    # Variations requested together share a batch and are generated in one call.
    batch_id = models.UUIDField(default=uuid.uuid4, db_index=True, editable=False)
    variation_index = models.PositiveSmallIntegerField(default=0)
    style = models.CharField(max_length=64)  # its versions' style, as a column to filter on
    # Null only while the piece is being saved with its first version.
    current_version = models.ForeignKey("CompositionVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")

    # What the gallery shows: the user's title (blank: `default_title`).
    title = models.CharField(max_length=120, blank=True)
    is_favourite = models.BooleanField(default=False)
    play_count = models.PositiveIntegerField(default=0)

    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE)
    # Unlisted pieces are reached by /s/<share_token>/: 32 random bytes, replaced to revoke a link.
    share_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    hidden = models.BooleanField(default=False, help_text="Hidden by a moderator: shown to nobody but its owner.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        version = self.current_version
        return f"{self.style} {self.length_label}" + (f" ({version.get_status_display()})" if version else "")

    @property
    def default_title(self) -> str:
        """ "Chorale in D minor · Amber Heron": style, key and two words drawn from the piece's id."""
        version = self.current_version
        params = version.params if version else {}
        key = (version.key_label if version else "") or (
            f"{params['key']} {params.get('mode', 'major')}" if params.get("key", "any") != "any" else ""
        )
        words = _TITLE_WORDS[self.public_id.int % len(_TITLE_WORDS)], _TITLE_NOUNS[self.public_id.int // 7 % len(
            _TITLE_NOUNS)]
        style = self.style_label
        return f"{style}{' in ' + key if key else ''} · {words[0]} {words[1]}"

    @property
    def style_label(self) -> str:
        from ml.generation.request import style_label  # not at import: models load in every command

        return style_label(self.style)

    @property
    def display_title(self) -> str:
        return self.title or self.default_title

    @property
    def length_label(self) -> str:
        """The requested length of the current version as the user gave it: "30 s" or "200 notes"."""
        return self.current_version.length_label if self.current_version else ""


class CompositionVersion(models.Model):
    """One version of a piece: its request, the run of the task that writes it, and what it wrote.

    Version 1 is what the first request wrote; a continuation, a regenerated passage or a
    harmonisation is a new version of the same piece, written by its own run of the task. A
    version becomes its piece's current one when it is done; any finished version can be made
    current again (undo).
    """

    class Kind(models.TextChoices):
        ORIGINAL = "original", "Original"
        CONTINUE = "continue", "Continued"
        REGENERATE = "regenerate", "Passage regenerated"
        HARMONISE = "harmonise", "Harmonised"

    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        GENERATING = "generating", "Generating"
        RENDERING = "rendering", "Rendering"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = ("generating", "rendering")
    UNFINISHED_STATUSES = ("pending", "generating", "rendering")

    composition = models.ForeignKey(Composition, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveSmallIntegerField()  # 1, 2, ... within its piece
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ORIGINAL)
    # What changed, in words: "continued from version 2", "bars 5–8 regenerated", and from which version.
    change = models.CharField(max_length=200, blank=True)
    source = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    # The run of the task that writes it. Versions written by one run (the variations of one
    # request) share a batch. Every write of a run is guarded by its claim, so a run that was
    # given up for dead can never overwrite its successor.
    batch_id = models.UUIDField(default=uuid.uuid4, db_index=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)  # percent, 0..100
    status_message = models.CharField(max_length=200, blank=True)
    error = models.CharField(max_length=300, blank=True)  # shown to the user
    error_detail = models.TextField(blank=True)  # for the admin: the underlying exception
    claim = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=200, blank=True)  # "host:pid" of the worker that holds it
    attempts = models.PositiveSmallIntegerField(default=0)  # runs that claimed the row
    queue_count = models.PositiveSmallIntegerField(default=0)  # times a task was queued for it
    queued_at = models.DateTimeField(null=True, blank=True)

    # The request, as ml.generation.request.GenerationRequest.to_dict() writes it (`seed` as asked:
    # null for a random one), and the seed that reproduces this version, once it is written.
    params = models.JSONField(default=dict)
    seed = models.PositiveBigIntegerField(null=True, blank=True)
    primer_file = models.FileField(upload_to="primers/", blank=True)  # the MIDI file it continues

    # What it wrote, and the model that wrote it (its file, to write the piece's next version with).
    model_name = models.CharField(max_length=200, blank=True)
    model_path = models.CharField(max_length=500, blank=True)
    midi_file = models.FileField(upload_to="midi/", blank=True)
    mp3_file = models.FileField(upload_to="mp3/", blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)  # measured from the rendered audio
    notes_json = models.JSONField(default=list, blank=True)  # [[pitch, start_s, duration_s, velocity], ...]
    primer_end = models.FloatField(null=True, blank=True)  # seconds where the generated part begins
    # [[start_s, label], ...] at each chord change; label None where no chord sounds.
    chords_json = models.JSONField(default=list, blank=True)
    # The form it was written to: {"form", "bars", "key", "phrases": [{"letter", "start_s", "end_s",
    # "first_bar", "last_bar", "repeat_of", "varied", "ornamented", "cadence"}, ...]}; {} before it is done.
    form_json = models.JSONField(default=dict, blank=True)
    detected_key = models.CharField(max_length=16, blank=True)  # "D minor", estimated from the notes
    # What was asked and what the piece did, one check per control the user set (ml.pipeline.piece_report):
    # [{"control", "asked", "did", "met"}, ...], met true, false or null (nothing to measure).
    constraints = models.JSONField(default=list, blank=True)
    # The MP3 as ffmpeg's ebur128 measured it: {"integrated_lufs", "true_peak_dbtp", "range_lu"}; null
    # before it is done, or where it could not be measured.
    loudness = models.JSONField(null=True, blank=True)
    # The score, engraved after the piece is done (a moment later): Verovio's SVG and the MusicXML it was
    # engraved from, the start of each bar in seconds (to follow playback), or why there is none.
    score_svg = models.FileField(upload_to="scores/", blank=True)
    score_musicxml = models.FileField(upload_to="scores/", blank=True)
    score_bars = models.JSONField(default=list, blank=True)
    score_error = models.CharField(max_length=300, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Every stored file a version names (what verify_media checks and a deletion removes).
    FILE_FIELDS = ("midi_file", "mp3_file", "primer_file", "score_svg", "score_musicxml")

    class Meta:
        ordering = ["composition_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["composition", "number"], name="one_version_per_number"),
        ]

    def __str__(self) -> str:
        return f"Version {self.number} of {self.composition_id} ({self.get_status_display()})"

    @property
    def score_state(self) -> str:
        """ "ready", "none" (engraving gave a reason), "pending" (done, being engraved) or "" (not done)."""
        if self.score_svg:
            return "ready"
        if self.score_error:
            return "none"
        return "pending" if self.status == self.Status.DONE else ""

    @property
    def key_label(self) -> str:
        """The key the piece was written in ("Db major"), else the one heard in its notes; "" before it is done."""
        return str((self.form_json or {}).get("key") or self.detected_key)

    @property
    def length_label(self) -> str:
        """The requested length as the user gave it: "30 s" or "200 notes"."""
        notes, seconds = self.params.get("notes"), self.params.get("seconds")
        return f"{notes} notes" if notes is not None else f"{seconds or 0:g} s"

    @property
    def seed_used(self) -> int | None:
        """The seed that reproduces this version: drawn when it was written, else the one it was asked with."""
        return self.seed if self.seed is not None else self.params.get("seed")

    @property
    def summary(self) -> str:
        """What this version is, in words: "Continued from version 1, seed 42"."""
        text = self.change or self.get_kind_display()
        seed = self.seed_used
        return f"{text[:1].upper()}{text[1:]}" + (f", seed {seed}" if seed is not None else "")


class MusicModel(models.Model):
    """A trained network; the active one serves new compositions.

    Its .keras file is kept in the site's storage (`file`, shared by every host; each worker copies
    it once into MODEL_CACHE_DIR), or lies at `path` on every worker machine.
    """

    name = models.CharField(max_length=200, unique=True)
    file = models.FileField(upload_to="models/", blank=True)
    path = models.CharField(max_length=500, blank=True,
                            help_text="Path of the .keras file on the worker machines, where there is no stored file.")
    styles = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=False)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_music_model"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def stem(self) -> str:
        """The file's name without its folder and extension: what versions record as their model_name."""
        return Path(self.file.name or self.path).stem


class TrainingDataset(models.Model):
    """A source of MIDI files to train on."""

    class Source(models.TextChoices):
        CORPUS = "corpus", "Bundled corpus"
        MAESTRO = "maestro", "MAESTRO"
        FOLDER = "folder", "Folder of MIDI files"

    class Status(models.TextChoices):
        IDLE = "idle", "Not trained"
        QUEUED = "queued", "Queued"
        TRAINING = "training", "Training"
        TRAINED = "trained", "Trained"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200, unique=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.FOLDER)
    path = models.CharField(max_length=500, blank=True)  # a folder on the worker machines
    archive = models.FileField(upload_to="datasets/", blank=True)  # or an uploaded zip of MIDI files, stored
    style = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    status_changed_at = models.DateTimeField(null=True, blank=True)  # when a training run last touched it
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def of_current_password(self, user: Any) -> ApiTokenQuerySet:
        """`user`'s tokens made since the last password change (expired ones too), newest first."""
        return self.filter(user=user, password_fingerprint=ApiToken.fingerprint_of(user)).order_by("-created", "-id")


class ApiToken(models.Model):
    """A key to the API for one of a user's devices, kept as a digest: the key itself is shown once.

    It dies when it expires, when it is revoked, and when the password changes (its fingerprint no
    longer matches).
    """

    # The key's first characters, kept in the clear: the owner tells keys apart by them, and
    # authentication finds a key's row by them before comparing digests.
    PREFIX_LENGTH = 10

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True)
    digest = models.CharField(max_length=64, unique=True)  # SHA-256 of the key, in hex
    password_fingerprint = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: lives until revoked
    last_used_at = models.DateTimeField(null=True, blank=True)  # to the minute

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    @staticmethod
    def fingerprint_of(user: Any) -> str:
        """A digest of the user's password hash: it changes whenever the password does."""
        return salted_hmac("compositions.ApiToken", user.password, algorithm="sha256").hexdigest()

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"


class Primer(models.Model):
    """A MIDI file a user uploaded to continue, checked when it arrived, to name in later requests."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="primers")
    file = models.FileField(upload_to="primers/")
    notes = models.PositiveIntegerField()
    seconds = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Primer {self.public_id} of {self.user}"


class AccountExport(models.Model):
    """A zip of everything a user made ("Export everything"), written by a background job.

    It holds every version of every piece (MIDI, MP3, score, settings) and a JSON of the account.
    A user has at most one export pending or running at a time (the constraint below); the zip is
    deleted EXPORT_KEEP_HOURS after it is made, and the row stays to say that it expired.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Being made"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"

    UNFINISHED_STATUSES = ("pending", "running")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_exports")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)  # percent, 0..100
    file = models.FileField(upload_to="exports/", blank=True)  # "" before it is done and once it expired
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)  # of the zip, once it is done
    error = models.CharField(max_length=300, blank=True)  # why it failed, shown to the user
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker took it: the job's time limit (Q_TIMEOUT) counts from here.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user"], condition=models.Q(status__in=("pending", "running")),
                                    name="one_unfinished_export_per_user"),
        ]

    def __str__(self) -> str:
        return f"Export {self.public_id} of {self.user} ({self.get_status_display()})"

    @property
    def expires_at(self) -> datetime | None:
        """When a finished export's zip is deleted; None for one that is not done."""
        if self.status != self.Status.DONE or self.finished_at is None:
            return None
        return self.finished_at + timedelta(hours=settings.EXPORT_KEEP_HOURS)

    @property
    def is_expired(self) -> bool:
        """Done, and its zip deleted or past its time (the sweep deletes it within a minute)."""
        expires_at = self.expires_at
        return expires_at is not None and (not self.file or expires_at <= timezone.now())

    @property
    def is_ready(self) -> bool:
        """Done and not expired: its zip can be downloaded."""
        return self.status == self.Status.DONE and not self.is_expired
