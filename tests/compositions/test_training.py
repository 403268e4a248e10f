from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.contrib.auth.models import User
from django.test import Client

from compositions import services, tasks
from compositions.models import MusicModel, TrainingDataset


def test_training_queues_a_task_for_the_selected_datasets(
    db: None, tmp_path: Path, queued_tasks: list, django_capture_on_commit_callbacks: Callable
) -> None:
    dataset = TrainingDataset.objects.create(name="folk", source="folder", path=str(tmp_path), style="folk")
    with django_capture_on_commit_callbacks(execute=True):
        services.training_request(datasets=[dataset], out_path=tmp_path / "m.keras")
    dataset.refresh_from_db()
    assert dataset.status == TrainingDataset.Status.QUEUED
    assert queued_tasks == [("compositions.tasks.model_train", [dataset.id], str(tmp_path / "m.keras"))]


def test_failed_training_marks_the_datasets_failed_without_raising(db: None, tmp_path: Path) -> None:
    dataset = TrainingDataset.objects.create(name="gone", source="folder", path=str(tmp_path / "nope"), style="x")
    tasks.model_train([dataset.id], str(tmp_path / "m.keras"))
    dataset.refresh_from_db()
    assert dataset.status == TrainingDataset.Status.FAILED
    assert "is not a folder" in dataset.report["error"]
    assert not MusicModel.objects.exists()


def test_an_active_music_model_decides_the_styles_offered(
    user: User, user_client: Client, tiny_model_path: Path
) -> None:
    old = MusicModel.objects.create(name="old", path="/nowhere.keras", styles=["waltz"], is_active=True)
    new = MusicModel.objects.create(name="tiny", path=str(tiny_model_path), styles=["alpha", "beta"])
    services.music_model_activate(music_model=new)

    old.refresh_from_db()
    assert not old.is_active
    html = user_client.get("/compositions/new/").content.decode()
    assert 'value="alpha"' in html and 'value="waltz"' not in html
