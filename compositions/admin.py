"""Admin: browse compositions, manage models, and queue training from data sets."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from compositions import services
from compositions.models import ApiToken, Composition, MusicModel, TrainingDataset


@admin.register(Composition)
class CompositionAdmin(admin.ModelAdmin):
    list_display = ("public_id", "user", "style", "length_label", "status", "progress", "model_name", "created_at")
    list_filter = ("status", "style", "visibility")
    search_fields = ("public_id", "user__username", "error")
    readonly_fields = ("public_id", "batch_id", "created_at", "updated_at", "error_detail")
    exclude = ("notes_json", "chords_json")


@admin.register(MusicModel)
class MusicModelAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "is_active", "created_at")
    actions = ["activate"]

    @admin.action(description="Use the selected model for new compositions")
    def activate(self, request: HttpRequest, queryset: QuerySet[MusicModel]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model.", messages.ERROR)
            return
        music_model = services.music_model_activate(music_model=queryset.get())
        self.message_user(request, f"{music_model} now writes new compositions.")


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "style", "status", "created_at")
    list_filter = ("source", "status")
    readonly_fields = ("status", "report")
    actions = ["train"]

    @admin.action(description="Train a new model on the selected data sets")
    def train(self, request: HttpRequest, queryset: QuerySet[TrainingDataset]) -> None:
        # New models go beside the configured one, named by time so none is overwritten.
        out_path = settings.MUSIC_MODEL_PATH.parent / f"model-{timezone.now():%Y%m%d-%H%M%S}.keras"
        try:
            services.training_request(datasets=list(queryset), out_path=out_path)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Training queued; the model will be saved as {out_path.name}.")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "created")
    search_fields = ("user__username",)
    readonly_fields = ("key", "user", "password_fingerprint", "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token is made by signing in (POST /api/auth/token/), bound to the password
