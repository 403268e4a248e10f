from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def test_a_killed_training_run_leaves_its_data_sets_failed_with_a_reason(db: None, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from compositions.services import composition_reconcile

    long_ago = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"] + 60)
    stuck = TrainingDataset.objects.create(name="stuck", style="chorale", status=TrainingDataset.Status.TRAINING,
                                           status_changed_at=long_ago)
    fresh = TrainingDataset.objects.create(name="fresh", style="chorale", status=TrainingDataset.Status.TRAINING,
                                           status_changed_at=timezone.now())
    assert composition_reconcile()["training_failed"] == 1
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert stuck.status == TrainingDataset.Status.FAILED and "stopped before it finished" in stuck.report["error"]
    assert fresh.status == TrainingDataset.Status.TRAINING


def test_an_uploaded_model_is_checked_before_it_is_kept(
        admin_client: Any, tiny_model_path: Path, settings: Any, tmp_path: Path) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MUSIC_MODEL_PATH = tmp_path / "default.keras"
    bad = admin_client.post("/admin/compositions/musicmodel/add/",
                            {"name": "junk", "path": "", "upload": SimpleUploadedFile("junk.keras", b"PK nonsense")})
    assert bad.status_code == 200 and b"This is not a music model" in bad.content
    good = admin_client.post("/admin/compositions/musicmodel/add/", {
        "name": "tiny-upload", "path": "", "upload": SimpleUploadedFile("tiny.keras", tiny_model_path.read_bytes())})
    assert good.status_code == 302
    model = MusicModel.objects.get(name="tiny-upload")
    assert Path(model.path).is_file() and model.styles == ["alpha", "beta"]
    assert list(tmp_path.glob("*.keras")) == [Path(model.path)]  # the junk left nothing behind


def test_an_uploaded_zip_of_midi_files_becomes_a_data_set_folder(admin_client: Any, tmp_path: Path) -> None:
    import io
    import zipfile

    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import midi_bytes

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("a.mid", midi_bytes([60, 62, 64, 65, 67, 69, 71, 72]))
        bundle.writestr("../evil.mid", midi_bytes([60, 62]))
        bundle.writestr("notes.txt", b"hi")
    response = admin_client.post("/admin/compositions/trainingdataset/add/", {
        "name": "mine", "source": "folder", "style": "reels", "path": "",
        "upload": SimpleUploadedFile("set.zip", buffer.getvalue())})
    assert response.status_code == 302
    dataset = TrainingDataset.objects.get(name="mine")
    assert [p.suffix for p in Path(dataset.path).iterdir()] == [".mid"]
    assert dataset.report["upload"]["skipped"] == {"path outside the archive": 1, "not a MIDI file": 1}
    refused = admin_client.post("/admin/compositions/trainingdataset/add/", {
        "name": "junk", "source": "folder", "style": "reels", "path": "",
        "upload": SimpleUploadedFile("junk.zip", b"<html>")})
    assert b"This is not a zip file." in refused.content


def test_training_reports_its_progress_per_epoch_to_the_data_sets(
        db: None, tmp_path: Path, monkeypatch: Any, admin_client: Any) -> None:
    from compositions import training

    dataset = TrainingDataset.objects.create(name="tiny", style="alpha", status=TrainingDataset.Status.TRAINING)
    seen: list[dict[str, Any]] = []

    def fake_train(merged: Any, config: Any, out: Path, *, verbose: int, on_epoch: Any) -> None:
        on_epoch(2, 30, {"val_loss": 1.5})
        seen.append(TrainingDataset.objects.get(id=dataset.id).report)
        raise RuntimeError("stop here")

    from tests.tiny import tiny_dataset

    monkeypatch.setattr(training, "load_dataset", lambda row: (tiny_dataset(), type("R", (), {"to_dict": dict})()))
    monkeypatch.setattr("ml.model.train.train", fake_train)
    tasks.model_train([dataset.id], str(tmp_path / "m.keras"))
    assert seen == [{"progress": {"epoch": 2, "epochs": 30, "val_loss": 1.5}}]
    dataset.refresh_from_db()
    assert dataset.status == TrainingDataset.Status.FAILED  # and the failure is recorded, not lost


def test_the_admin_shows_training_progress_and_a_models_public_samples(
        admin_client: Any, user: User, composition_factory: Callable, tiny_model_path: Path) -> None:
    from django.core.files.base import ContentFile

    from compositions import services

    TrainingDataset.objects.create(name="busy", style="alpha", status=TrainingDataset.Status.TRAINING,
                                   report={"progress": {"epoch": 3, "epochs": 30, "val_loss": 2.25}})
    assert b"epoch 3 of at most 30, validation loss 2.250" in admin_client.get(
        "/admin/compositions/trainingdataset/").content
    model = MusicModel.objects.create(name="tiny", path=str(tiny_model_path), styles=["alpha", "beta"])
    shared, private = (composition_factory(user, status="done", model_name="tiny", title=t) for t in ("Shown", "Mine"))
    for piece in (shared, private):
        piece.mp3_file.save("s.mp3", ContentFile(b"ID3"), save=True)
    services.composition_share(composition=shared, visibility="public")
    page = admin_client.get(f"/admin/compositions/musicmodel/{model.id}/change/").content.decode()
    assert "Shown" in page and f"/compositions/{shared.public_id}/audio.mp3" in page and "Mine" not in page
