"""Every existing piece becomes its own version 1: its request, its task's state, its files and its music."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import migrations

# The columns that move from the piece to its version, under the same names.
MOVED = (
    "status", "progress", "status_message", "error", "error_detail", "claim", "claimed_by", "attempts",
    "queue_count", "queued_at", "params", "primer_file", "model_name", "midi_file", "mp3_file",
    "duration_seconds", "notes_json", "primer_end", "chords_json", "form_json", "detected_key",
)


def _model_paths(apps: Any) -> dict[str, str]:
    """The .keras files the site knows, by the name a piece records (the file's stem)."""
    paths = [str(row) for row in apps.get_model("compositions", "MusicModel").objects.values_list("path", flat=True)]
    paths.append(str(settings.MUSIC_MODEL_PATH))
    return {Path(path).stem: path for path in paths}


def to_versions(apps: Any, schema_editor: Any) -> None:
    Composition = apps.get_model("compositions", "Composition")
    CompositionVersion = apps.get_model("compositions", "CompositionVersion")
    model_paths = _model_paths(apps)
    for piece in Composition.objects.filter(current_version__isnull=True).iterator():
        fields = {name: getattr(piece, name) for name in MOVED}
        # A finished piece's params already hold the seed that reproduces it; a version keeps
        # that seed in its own column.
        seed = piece.params.get("seed") if piece.status == "done" else None
        version = CompositionVersion.objects.create(
            composition=piece, number=1, kind="original", batch_id=piece.batch_id, seed=seed,
            model_path=model_paths.get(piece.model_name, "") if piece.model_name else "", **fields,
        )
        # auto_now fields: the version keeps the piece's own times.
        CompositionVersion.objects.filter(id=version.id).update(created_at=piece.created_at,
                                                                updated_at=piece.updated_at)
        Composition.objects.filter(id=piece.id).update(current_version=version)


def from_versions(apps: Any, schema_editor: Any) -> None:
    Composition = apps.get_model("compositions", "Composition")
    for piece in Composition.objects.select_related("current_version").iterator():
        version = piece.current_version
        if version is None:
            continue
        fields = {name: getattr(version, name) for name in MOVED}
        if version.seed is not None:
            fields["params"] = {**version.params, "seed": version.seed}
        Composition.objects.filter(id=piece.id).update(**fields)


class Migration(migrations.Migration):
    dependencies = [("compositions", "0011_composition_versions")]

    operations = [migrations.RunPython(to_versions, from_versions)]
