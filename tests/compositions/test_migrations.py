"""The migration to versions: every piece the site had becomes its own version 1, and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("compositions", "0010_form")]
AFTER = [("compositions", "0013_piece_columns_move_to_versions")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to `targets`; the app registry of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_every_existing_piece_becomes_its_own_version_1(settings: Any, tiny_model_path: Path) -> None:
    settings.MUSIC_MODEL_PATH = tiny_model_path
    try:
        old = _migrate(BEFORE)
        user = old.get_model("auth", "User").objects.create(username="before")
        Composition = old.get_model("compositions", "Composition")
        done = Composition.objects.create(
            user_id=user.id, style="alpha", status="done", progress=100, status_message="Done",
            params={"style": "alpha", "seconds": 5.0, "seed": 123}, model_name="tiny", midi_file="midi/a.mid",
            mp3_file="mp3/a.mp3", duration_seconds=6.0, notes_json=[[60, 0.0, 1.0, 80]],
            chords_json=[[0.0, None]], form_json={"form": "AB"}, detected_key="C major",
            primer_file="primers/b.mid", primer_end=2.0, title="Kept", play_count=3, visibility="public",
            share_token="link", attempts=1,
        )
        failed = Composition.objects.create(
            user_id=user.id, style="alpha", status="failed", error="MP3 encoding failed", attempts=2,
            params={"style": "alpha", "seconds": 5.0, "seed": None},
        )

        new = _migrate(AFTER)
        Version = new.get_model("compositions", "CompositionVersion")
        piece = new.get_model("compositions", "Composition").objects.get(id=done.id)
        version = Version.objects.get(id=piece.current_version_id)
        assert (version.composition_id, version.number, version.kind, version.batch_id) == (
            piece.id, 1, "original", piece.batch_id)
        assert (version.status, version.progress, version.attempts) == ("done", 100, 1)
        assert (version.seed, version.params["seed"]) == (123, 123)  # a finished piece's seed reproduces it
        assert (version.mp3_file.name, version.midi_file.name, version.primer_file.name) == (
            "mp3/a.mp3", "midi/a.mid", "primers/b.mid")
        assert (version.notes_json, version.chords_json, version.form_json, version.detected_key,
                version.duration_seconds, version.primer_end) == (
            [[60, 0.0, 1.0, 80]], [[0.0, None]], {"form": "AB"}, "C major", 6.0, 2.0)
        assert (version.model_name, version.model_path) == ("tiny", str(tiny_model_path))
        assert version.created_at == piece.created_at
        assert (piece.title, piece.play_count, piece.visibility, piece.share_token) == ("Kept", 3, "public", "link")
        lost = Version.objects.get(composition_id=failed.id)
        assert (lost.number, lost.status, lost.error, lost.attempts, lost.seed) == (
            1, "failed", "MP3 encoding failed", 2, None)
        assert Version.objects.count() == 2

        back = _migrate(BEFORE)
        restored = back.get_model("compositions", "Composition").objects.get(id=done.id)
        assert (restored.status, restored.mp3_file.name, restored.detected_key, restored.params["seed"]) == (
            "done", "mp3/a.mp3", "C major", 123)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
