from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client

from compositions import runtime, tasks
from compositions.errors import NotAllowed
from compositions.models import MusicModel, TrainingDataset
from compositions.services.sharing import composition_share
from compositions.services.training import (
    music_model_activate,
    training_fail,
    training_finish,
    training_progress,
    training_request,
    training_start,
)
from compositions.training import TrainingResult


def test_training_queues_a_task_for_the_selected_datasets(
    db: None, tmp_path: Path, queued_tasks: list, django_capture_on_commit_callbacks: Callable
) -> None:
    dataset = TrainingDataset.objects.create(name="folk", source="folder", path=str(tmp_path), style="folk")
    with django_capture_on_commit_callbacks(execute=True):
        training_request(datasets=[dataset], out_path=tmp_path / "m.keras")
    dataset.refresh_from_db()
    assert dataset.status == TrainingDataset.Status.QUEUED
    assert queued_tasks == [("compositions.tasks.model_train", [dataset.id], str(tmp_path / "m.keras"))]


def test_failed_training_marks_the_datasets_failed_without_raising(db: None, tmp_path: Path) -> None:
    dataset = TrainingDataset.objects.create(name="gone", source="folder", path=str(tmp_path / "nope"), style="x",
                                             status=TrainingDataset.Status.QUEUED)
    tasks.model_train([dataset.id], str(tmp_path / "m.keras"))
    dataset.refresh_from_db()
    assert dataset.status == TrainingDataset.Status.FAILED
    assert "is not a folder" in dataset.report["error"]
    assert not MusicModel.objects.exists()


def test_a_data_set_already_queued_or_training_is_not_queued_again(
    db: None, tmp_path: Path, queued_tasks: list, django_capture_on_commit_callbacks: Callable
) -> None:
    busy = TrainingDataset.objects.create(name="busy", style="folk", status=TrainingDataset.Status.TRAINING)
    idle = TrainingDataset.objects.create(name="idle", style="folk")
    with pytest.raises(NotAllowed, match="Already queued or training: busy"):
        training_request(datasets=[busy, idle], out_path=tmp_path / "m.keras")
    with pytest.raises(NotAllowed, match="at least one"):
        training_request(datasets=[], out_path=tmp_path / "m.keras")
    idle.refresh_from_db()
    assert idle.status == TrainingDataset.Status.IDLE and queued_tasks == []


def _finished_run(styles: list[str]) -> TrainingResult:
    return TrainingResult(styles=styles, metrics={"best_val_loss": 1.25}, reports={})


def test_the_training_runs_writes_are_guarded_by_the_data_sets_status(db: None, tmp_path: Path) -> None:
    queued = TrainingDataset.objects.create(name="q", style="folk", status=TrainingDataset.Status.QUEUED)
    idle = TrainingDataset.objects.create(name="i", style="folk")
    ids = [queued.id, idle.id]
    # Only queued rows are started, and only once: a second delivery of the task finds nothing to do.
    assert training_start(dataset_ids=ids) == [queued.id]
    assert training_start(dataset_ids=ids) == []
    assert training_progress(dataset_ids=ids, epoch=1, epochs=3, val_loss=2.0) == 1
    model = training_finish(dataset_ids=[queued.id], out_path=tmp_path / "m.keras", result=_finished_run(["folk"]))
    assert model is not None and (model.name, model.styles, model.is_active) == ("m", ["folk"], False)
    queued.refresh_from_db()
    assert queued.status == TrainingDataset.Status.TRAINED
    # Finished once: no progress, no second finish and no failure moves it back.
    assert training_progress(dataset_ids=ids, epoch=2, epochs=3, val_loss=1.0) == 0
    assert training_fail(dataset_ids=ids, error="late") == 0
    assert training_finish(dataset_ids=ids, out_path=tmp_path / "n.keras", result=_finished_run(["folk"])) is None
    assert list(MusicModel.objects.values_list("name", flat=True)) == ["m"]
    idle.refresh_from_db()
    assert idle.status == TrainingDataset.Status.IDLE


def test_a_run_given_up_for_dead_registers_no_model(db: None, tmp_path: Path) -> None:
    dataset = TrainingDataset.objects.create(name="d", style="folk", status=TrainingDataset.Status.QUEUED)
    assert training_start(dataset_ids=[dataset.id]) == [dataset.id]
    TrainingDataset.objects.filter(id=dataset.id).update(status=TrainingDataset.Status.FAILED)  # the reconciler
    assert training_finish(dataset_ids=[dataset.id], out_path=tmp_path / "m.keras",
                           result=_finished_run(["folk"])) is None
    assert not MusicModel.objects.exists()


def test_a_second_delivery_of_the_training_task_changes_nothing(db: None, tmp_path: Path) -> None:
    dataset = TrainingDataset.objects.create(name="done", style="folk", status=TrainingDataset.Status.TRAINED,
                                             report={"pieces": 3})
    tasks.model_train([dataset.id], str(tmp_path / "m.keras"))
    dataset.refresh_from_db()
    assert (dataset.status, dataset.report) == (TrainingDataset.Status.TRAINED, {"pieces": 3})


def test_an_active_music_model_decides_the_styles_offered(
    user: User, user_client: Client, tiny_model_path: Path
) -> None:
    old = MusicModel.objects.create(name="old", path="/nowhere.keras", styles=["waltz"], is_active=True)
    new = MusicModel.objects.create(name="tiny", path=str(tiny_model_path), styles=["alpha", "beta"])
    music_model_activate(music_model=new)

    old.refresh_from_db()
    assert not old.is_active
    html = user_client.get("/compositions/new/").content.decode()
    assert 'value="alpha"' in html and 'value="waltz"' not in html


def test_a_killed_training_run_leaves_its_data_sets_failed_with_a_reason(db: None, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from compositions.services.reconciling import composition_reconcile

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
    assert model.path == "" and model.file.name == "models/tiny-upload.keras" and model.styles == ["alpha", "beta"]
    assert default_storage.open(model.file.name).read() == tiny_model_path.read_bytes()
    assert default_storage.listdir("models")[1] == ["tiny-upload.keras"]  # the junk left nothing behind
    assert runtime.model_file(model).read_bytes() == tiny_model_path.read_bytes()


def test_an_uploaded_zip_of_midi_files_is_stored_and_unpacked_by_the_worker_that_trains(
        admin_client: Any, tmp_path: Path) -> None:
    import io
    import zipfile

    from django.core.files.uploadedfile import SimpleUploadedFile

    from compositions.training import load_dataset
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
    assert dataset.path == "" and default_storage.exists(dataset.archive.name)
    assert dataset.report["upload"]["skipped"] == {"path outside the archive": 1, "not a MIDI file": 1}
    notes, report = load_dataset(dataset)  # copied from storage, unpacked in a temporary folder
    assert report.imported == 1 and notes.styles == ["reels"]
    refused = admin_client.post("/admin/compositions/trainingdataset/add/", {
        "name": "junk", "source": "folder", "style": "reels", "path": "",
        "upload": SimpleUploadedFile("junk.zip", b"<html>")})
    assert b"This is not a zip file." in refused.content


def test_training_reports_its_progress_per_epoch_to_the_data_sets(
        db: None, tmp_path: Path, monkeypatch: Any, admin_client: Any) -> None:
    from compositions import training

    dataset = TrainingDataset.objects.create(name="tiny", style="alpha", status=TrainingDataset.Status.QUEUED)
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
    TrainingDataset.objects.create(name="busy", style="alpha", status=TrainingDataset.Status.TRAINING,
                                   report={"progress": {"epoch": 3, "epochs": 30, "val_loss": 2.25}})
    assert b"epoch 3 of at most 30, validation loss 2.250" in admin_client.get(
        "/admin/compositions/trainingdataset/").content
    model = MusicModel.objects.create(name="tiny", path=str(tiny_model_path), styles=["alpha", "beta"])
    shared, private = (composition_factory(user, status="done", model_name="tiny", title=t, files=True)
                       for t in ("Shown", "Mine"))
    composition_share(composition=shared, visibility="public")
    page = admin_client.get(f"/admin/compositions/musicmodel/{model.id}/change/").content.decode()
    assert "Shown" in page and f"/compositions/{shared.public_id}/audio.mp3" in page and "Mine" not in page
