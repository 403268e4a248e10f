"""Admin: browse compositions, manage models, and queue training from data sets."""

from __future__ import annotations

import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.text import slugify

from compositions import selectors
from compositions.errors import NotAllowed
from compositions.models import (
    AccountExport,
    ApiToken,
    Composition,
    CompositionVersion,
    MusicModel,
    TrainingDataset,
)
from compositions.services.training import music_model_activate, training_request
from ml.data.archives import ArchiveError, extract_midi_zip
from ml.model.config import read_model_info


class CompositionVersionInline(admin.TabularInline):
    """A piece's versions, with the technical detail of failed ones; written by the task, never edited here."""

    model = CompositionVersion
    fk_name = "composition"
    fields = ("number", "kind", "change", "status", "error", "error_detail", "seed", "model_name", "attempts",
              "claimed_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Composition | None = None) -> bool:
        return False


@admin.register(Composition)
class CompositionAdmin(admin.ModelAdmin):
    list_display = ("display_title", "user", "style", "length_label", "status", "visibility", "hidden", "play_count",
                    "created_at")
    list_filter = ("current_version__status", "style", "visibility", "hidden")
    list_select_related = ("current_version", "user")
    search_fields = ("public_id", "title", "user__username", "current_version__error")
    readonly_fields = ("public_id", "batch_id", "created_at", "updated_at", "share_token", "current_version")
    inlines = [CompositionVersionInline]
    actions = ["hide", "unhide"]

    @admin.display(description="Status", ordering="current_version__status")
    def status(self, composition: Composition) -> str:
        version = composition.current_version
        return version.get_status_display() if version else "—"

    @admin.action(description="Hide the selected pieces from everyone but their owners (moderation)")
    def hide(self, request: HttpRequest, queryset: QuerySet[Composition]) -> None:
        self.message_user(request, f"{queryset.update(hidden=True)} pieces hidden.")

    @admin.action(description="Show the selected pieces again")
    def unhide(self, request: HttpRequest, queryset: QuerySet[Composition]) -> None:
        self.message_user(request, f"{queryset.update(hidden=False)} pieces shown again.")


class UsageUserAdmin(UserAdmin):
    """Users, with their use of the quotas."""

    list_display = (*UserAdmin.list_display, "active_pieces", "pieces_today")

    @admin.display(description="Active / quota")
    def active_pieces(self, user: User) -> str:
        active = CompositionVersion.objects.filter(composition__user=user,
                                                   status__in=CompositionVersion.UNFINISHED_STATUSES).count()
        return f"{active} / {settings.QUOTA_ACTIVE_PIECES}"

    @admin.display(description="Last 24 h / quota")
    def pieces_today(self, user: User) -> str:
        today = CompositionVersion.objects.filter(composition__user=user,
                                                  created_at__gte=timezone.now() - timedelta(days=1)).count()
        return f"{today} / {settings.QUOTA_PIECES_PER_DAY}"


admin.site.unregister(User)
admin.site.register(User, UsageUserAdmin)


MAX_MODEL_BYTES = 200 * 1024 * 1024


def _spool(upload: UploadedFile, path: Path) -> Path:
    """Write an upload to `path` (in a temporary folder) a chunk at a time, to be checked there."""
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


class MusicModelForm(forms.ModelForm):
    """A model is added by uploading its .keras file, checked before it is stored (or by naming a path)."""

    upload = forms.FileField(required=False, help_text="A .keras file written by `make train` (at most 200 MB); "
                                                       "it is kept in the site's storage, for every worker.")
    path = forms.CharField(required=False, max_length=500,
                           help_text="Or the path of a .keras file on every worker machine.")

    class Meta:
        model = MusicModel
        fields = ("name", "path", "upload")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload is not None:
            if upload.size > MAX_MODEL_BYTES:
                raise forms.ValidationError("The model file is larger than 200 MB.")
            with tempfile.TemporaryDirectory(prefix="musicgen-upload-") as folder:
                try:
                    info = read_model_info(_spool(upload, Path(folder) / "model.keras"))
                except ValueError as exc:
                    raise forms.ValidationError(f"This is not a music model: {exc}") from exc
            upload.seek(0)
            cleaned["path"] = ""
            self.instance.styles = list(info["config"].styles)
            self.instance.metrics = dict(info["extra"].get("training", {}))
        elif not cleaned.get("path") and not self.instance.file:
            raise forms.ValidationError("Upload a .keras file or give its path on the workers.")
        return cleaned

    def save(self, commit: bool = True) -> MusicModel:
        upload = self.cleaned_data.get("upload")
        if upload is not None:  # checked in clean(); stored only now that the whole form is valid
            self.instance.file.save(f"{slugify(self.cleaned_data['name']) or 'model'}.keras", upload, save=False)
        return super().save(commit)


@admin.register(MusicModel)
class MusicModelAdmin(admin.ModelAdmin):
    form = MusicModelForm
    list_display = ("name", "is_active", "style_list", "best_validation_loss", "created_at")
    readonly_fields = ("styles", "metrics", "samples")
    actions = ["activate"]

    @admin.display(description="Pieces it wrote (listen)")
    def samples(self, music_model: MusicModel) -> str:
        # Public pieces only: a model's samples never expose someone's private work.
        pieces = selectors.composition_public_list().filter(
            current_version__model_name=music_model.stem)[:3]
        if not pieces:
            return "No piece yet."
        return format_html_join(
            "", '<p>{}<br><audio controls preload="none" src="{}"></audio></p>',
            ((piece.display_title, reverse("compositions:mp3", args=[piece.public_id])) for piece in pieces),
        )

    @admin.display(description="Styles")
    def style_list(self, music_model: MusicModel) -> str:
        return ", ".join(music_model.styles)

    @admin.display(description="Best validation loss")
    def best_validation_loss(self, music_model: MusicModel) -> str:
        value = music_model.metrics.get("best_val_loss") if isinstance(music_model.metrics, dict) else None
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"

    @admin.action(description="Use the selected model for new compositions")
    def activate(self, request: HttpRequest, queryset: QuerySet[MusicModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        music_model = music_model_activate(music_model=queryset.get())
        self.message_user(request, f"{music_model} now writes new compositions.")


MAX_ZIP_BYTES = 500 * 1024 * 1024


class TrainingDatasetForm(forms.ModelForm):
    """A data set is the bundled corpus, a MAESTRO or MIDI folder on the workers, or an uploaded zip of MIDI files."""

    upload = forms.FileField(required=False, help_text="A zip of .mid files (at most 500 MB), kept in the site's "
                                                       "storage and unpacked by the worker that trains on it.")
    path = forms.CharField(required=False, max_length=500, help_text="A MAESTRO or MIDI folder on the worker machines.")

    class Meta:
        model = TrainingDataset
        fields = ("name", "source", "style", "path", "upload")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload is not None:
            if upload.size > MAX_ZIP_BYTES:
                raise forms.ValidationError("The zip is larger than 500 MB.")
            # Unpacked once here to check it (and report what it holds), then kept only as the zip.
            with tempfile.TemporaryDirectory(prefix="musicgen-upload-") as folder:
                try:
                    report = extract_midi_zip(_spool(upload, Path(folder) / "set.zip"), Path(folder) / "files")
                except ArchiveError as exc:
                    raise forms.ValidationError(str(exc)) from exc
            if not report.extracted:
                raise forms.ValidationError(f"The zip holds no usable MIDI file ({dict(report.skipped)}).")
            upload.seek(0)
            cleaned["path"], cleaned["source"] = "", TrainingDataset.Source.FOLDER
            self.instance.report = {"upload": report.to_dict()}
        elif cleaned.get("source") != TrainingDataset.Source.CORPUS and not cleaned.get("path") \
                and not self.instance.archive:
            raise forms.ValidationError("Give the folder's path, or upload a zip of MIDI files.")
        return cleaned

    def save(self, commit: bool = True) -> TrainingDataset:
        upload = self.cleaned_data.get("upload")
        if upload is not None:
            self.instance.archive.save(f"{uuid.uuid4().hex}.zip", upload, save=False)
        return super().save(commit)


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(admin.ModelAdmin):
    form = TrainingDatasetForm
    list_display = ("name", "source", "style", "status", "progress", "created_at")
    list_filter = ("source", "status")
    readonly_fields = ("status", "report")
    actions = ["train"]

    @admin.display(description="Progress")
    def progress(self, dataset: TrainingDataset) -> str:
        step = dataset.report.get("progress") if isinstance(dataset.report, dict) else None
        if dataset.status != TrainingDataset.Status.TRAINING or not step:
            return "—"
        loss = f", validation loss {step['val_loss']:.3f}" if step.get("val_loss") is not None else ""
        return f"epoch {step['epoch']} of at most {step['epochs']}{loss}"

    @admin.action(description="Train a new model on the selected data sets")
    def train(self, request: HttpRequest, queryset: QuerySet[TrainingDataset]) -> None:
        # Named by time so none is overwritten; the worker stores the file where every host reads it.
        out_path = Path(f"model-{timezone.now():%Y%m%d-%H%M%S}.keras")
        try:
            training_request(datasets=list(queryset), out_path=out_path)
        except NotAllowed as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Training queued; the model will be saved as {out_path.name}.")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # Only the key's digest is stored: an admin sees which token it is, never the key.
    list_display = ("name", "prefix", "user", "created", "last_used_at", "expires_at")
    search_fields = ("user__username", "name", "prefix")
    readonly_fields = ("name", "prefix", "user", "created", "last_used_at", "expires_at")
    exclude = ("digest", "password_fingerprint")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token is made by signing in (POST /api/auth/token/), bound to the password


@admin.register(AccountExport)
class AccountExportAdmin(admin.ModelAdmin):
    """Users' exports, to see how far one is or why it failed; written by the task, never edited here.

    No deleting either: a row deleted here would leave its zip in storage (the sweep deletes zips,
    deleting the account deletes the rows).
    """

    list_display = ("public_id", "user", "status", "progress", "size_bytes", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("user__username", "public_id")
    readonly_fields = ("public_id", "user", "status", "progress", "file", "size_bytes", "error", "created_at",
                       "started_at", "finished_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
