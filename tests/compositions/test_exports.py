"""Export everything: the zip an account's export holds, its progress, its cap, who may download it,
its expiry, the account page and the API, and an export whose files are in S3."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from compositions import selectors, tasks
from compositions.exporting import account_export_write
from compositions.models import AccountExport, Composition, CompositionVersion
from compositions.services.accounts import api_token_create
from compositions.services.exports import account_export_progress, account_export_request, account_export_sweep
from compositions.services.reconciling import composition_reconcile
from tests.conftest import PASSWORD
from tests.s3 import S3Server, s3_server

Capture = Callable[..., Any]


@pytest.fixture
def export_now(django_capture_on_commit_callbacks: Capture) -> Callable[[User], AccountExport]:
    """Ask for an export of `user`'s account and run its task (Q_SYNC: inline, after the commit)."""

    def run(user: User) -> AccountExport:
        with django_capture_on_commit_callbacks(execute=True):
            requested = account_export_request(user=user)
        assert requested.created
        requested.export.refresh_from_db()
        return requested.export

    return run


def _api(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    return client


def _zip_of(export: AccountExport) -> zipfile.ZipFile:
    with export.file.open("rb") as f:
        return zipfile.ZipFile(io.BytesIO(f.read()))


def _stored(file: Any) -> bytes:
    with default_storage.open(file.name, "rb") as f:
        return bytes(f.read())


def _exports_stored() -> list[str]:
    return default_storage.listdir("exports")[1] if default_storage.exists("exports") else []


@pytest.fixture
def account(user: User, composition_factory: Callable[..., Composition],
            version_factory: Callable[..., CompositionVersion]) -> list[Composition]:
    """Two pieces of `user`: one with a second version (with its score and the MIDI file it continues)
    and a failed third, one public with plays."""
    first = composition_factory(user, files=True, title="Morning Song", status=CompositionVersion.Status.DONE)
    second = version_factory(first, current=True)
    second.score_svg.save("score.svg", ContentFile(b"<svg>v2</svg>"), save=False)
    second.score_musicxml.save("score.musicxml", ContentFile(b"<score-partwise>v2</score-partwise>"), save=False)
    second.primer_file.save("primer.mid", ContentFile(b"MThd-primer"), save=False)
    second.save()
    version_factory(first, files=False, status=CompositionVersion.Status.FAILED, error="It broke")
    other = composition_factory(user, files=True, visibility=Composition.Visibility.PUBLIC, play_count=7,
                                status=CompositionVersion.Status.DONE)
    return [first, other]


# -- what the zip holds --------------------------------------------------------------------------------


def test_the_zip_holds_every_version_with_its_files_settings_and_the_account_json(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport]) -> None:
    export = export_now(user)
    assert export.status == AccountExport.Status.DONE, export.error
    assert export.progress == 100 and export.finished_at is not None
    assert export.file.name.startswith("exports/") and export.size_bytes == export.file.size
    archive = _zip_of(export)
    manifest = json.loads(archive.read("account.json"))
    assert manifest["username"] == "alice" and manifest["date_joined"].startswith(str(user.date_joined.year))
    pieces = {piece["id"]: piece for piece in manifest["pieces"]}
    assert set(pieces) == {str(composition.public_id) for composition in account}

    first, other = (pieces[str(composition.public_id)] for composition in account)
    assert first["title"] == "Morning Song" and first["visibility"] == "private" and first["play_count"] == 0
    assert other["title"] == account[1].display_title and other["visibility"] == "public"
    assert other["play_count"] == 7
    assert [(v["number"], v["status"], v["current"]) for v in first["versions"]] == [
        (1, "done", False), (2, "done", True), (3, "failed", False)]
    assert first["versions"][2]["files"] == {}

    for composition in account:
        entries = {v["number"]: v for v in pieces[str(composition.public_id)]["versions"]}
        for version in composition.versions.all():
            entry = entries[version.number]
            kinds = {"mp3": version.mp3_file, "midi": version.midi_file, "svg": version.score_svg,
                     "musicxml": version.score_musicxml, "primer": version.primer_file}
            assert set(entry["files"]) == {kind for kind, file in kinds.items() if file}
            for kind, name in entry["files"].items():
                assert archive.read(name) == _stored(kinds[kind]), (version, kind)
            settings_json = json.loads(archive.read(entry["settings"]))
            assert settings_json["version"] == version.number and settings_json["status"] == version.status
            assert settings_json["settings"] == json.loads(json.dumps(selectors.composition_settings(version=version)))
    assert {name.rsplit(".", 1)[-1] for name in archive.namelist()} == {"json", "mid", "mp3", "svg", "musicxml"}
    assert archive.testzip() is None


def test_private_files_of_other_users_never_appear(
        user: User, other_user: User, account: list[Composition], composition_factory: Callable[..., Composition],
        export_now: Callable[[User], AccountExport]) -> None:
    theirs = composition_factory(other_user, files=True, title="Mallory's secret")
    version = theirs.current_version
    assert version is not None
    version.mp3_file.save("secret.mp3", ContentFile(b"mallory-secret-audio"))
    archive = _zip_of(export_now(user))
    assert not any(b"mallory-secret-audio" in archive.read(name) for name in archive.namelist())
    everything = b"".join(archive.read(name) for name in archive.namelist() if name.endswith(".json"))
    assert str(theirs.public_id).encode() not in everything and b"Mallory" not in everything
    assert not any(theirs.public_id.hex[:8] in name for name in archive.namelist())


def test_an_account_without_pieces_exports_its_account_json(
        user: User, export_now: Callable[[User], AccountExport]) -> None:
    export = export_now(user)
    assert export.status == AccountExport.Status.DONE and export.progress == 100
    archive = _zip_of(export)
    assert archive.namelist() == ["account.json"]
    assert json.loads(archive.read("account.json"))["pieces"] == []


def test_a_file_missing_from_storage_is_named_in_the_account_json_and_the_export_goes_on(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport]) -> None:
    version = account[1].versions.get()
    default_storage.delete(version.mp3_file.name)
    export = export_now(user)
    assert export.status == AccountExport.Status.DONE
    manifest = json.loads(_zip_of(export).read("account.json"))
    [entry] = next(p for p in manifest["pieces"] if p["id"] == str(account[1].public_id))["versions"]
    assert entry["missing"] == ["mp3"] and set(entry["files"]) == {"midi"}


# -- the job: progress, cap, idempotence, failures ---------------------------------------------------


def test_progress_is_written_as_the_job_goes_and_reaches_100(
        user: User, composition_factory: Callable[..., Composition], export_now: Callable[[User], AccountExport],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(30):
        composition_factory(user, files=True, status=CompositionVersion.Status.DONE)
    written: list[int] = []
    real = account_export_progress

    def record(*, export_id: int, percent: int) -> bool:
        written.append(percent)
        assert AccountExport.objects.get(id=export_id).status == AccountExport.Status.RUNNING
        return real(export_id=export_id, percent=percent)

    monkeypatch.setattr(tasks, "account_export_progress", record)
    export = export_now(user)
    assert written == sorted(written) and len(written) >= 10 and 0 < written[0] and written[-1] <= 95
    assert export.status == AccountExport.Status.DONE and export.progress == 100


def test_past_the_size_cap_the_export_fails_with_a_reason_and_leaves_no_file(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport], settings: Any) -> None:
    settings.EXPORT_MAX_BYTES = 2048
    export = export_now(user)
    assert export.status == AccountExport.Status.FAILED and not export.file
    assert "2 kB, the most one export may hold" in export.error
    assert _exports_stored() == []


def test_a_second_delivery_of_a_finished_export_does_nothing(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport]) -> None:
    export = export_now(user)
    tasks.account_export_build(export.id)
    again = AccountExport.objects.get(id=export.id)
    assert (again.status, again.file.name, again.finished_at) == (export.status, export.file.name, export.finished_at)
    assert _exports_stored() == [Path(export.file.name).name]


def test_a_crash_is_recorded_as_failed_with_a_reason_and_the_worker_carries_on(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(**kwargs: Any) -> Path:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tasks, "account_export_write", crash)
    export = export_now(user)  # the task returns: nothing raised
    assert export.status == AccountExport.Status.FAILED and "RuntimeError" in export.error
    assert "disk on fire" not in export.error and _exports_stored() == []


def test_an_export_deleted_while_it_runs_stops_and_stores_nothing(
        user: User, account: list[Composition], queued_tasks: list[tuple[Any, ...]],
        django_capture_on_commit_callbacks: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        export = account_export_request(user=user).export
    real = account_export_write

    def gone_midway(**kwargs: Any) -> Path:
        AccountExport.objects.filter(id=export.id).delete()
        return real(**kwargs)

    monkeypatch.setattr(tasks, "account_export_write", gone_midway)
    tasks.account_export_build(export.id)
    assert _exports_stored() == []


# -- one at a time, and who may download ---------------------------------------------------------------


def test_a_second_request_while_one_runs_is_refused_and_names_the_running_one(
        user: User, queued_tasks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Capture) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = account_export_request(user=user)
        second = account_export_request(user=user)
    assert first.created and not second.created and second.export.id == first.export.id
    assert queued_tasks == [("compositions.tasks.account_export_build", first.export.id)]
    response = _api(user).post("/api/v1/auth/export/")
    assert response.status_code == 409
    assert response.json()["status_url"] == f"/api/v1/auth/export/{first.export.public_id}/"


def test_the_database_holds_one_unfinished_export_per_user(user: User) -> None:
    from django.db import IntegrityError, transaction

    AccountExport.objects.create(user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountExport.objects.create(user=user, status=AccountExport.Status.RUNNING)
    AccountExport.objects.create(user=user, status=AccountExport.Status.DONE)


def test_a_new_export_replaces_the_earlier_one_and_its_file(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport]) -> None:
    old = export_now(user)
    new = export_now(user)
    assert list(AccountExport.objects.filter(user=user)) == [new]
    assert _exports_stored() == [Path(new.file.name).name] and not default_storage.exists(old.file.name)


def test_download_is_404_for_another_user_and_409_while_the_export_runs(
        user: User, other_user: User, account: list[Composition], client_for: Callable[[User], Client],
        queued_tasks: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Capture) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        export = account_export_request(user=user).export
    page_url = reverse("account-export-download", args=[export.public_id])
    api_url = f"/api/v1/auth/export/{export.public_id}/download.zip"
    assert client_for(other_user).get(page_url).status_code == 404
    assert _api(other_user).get(api_url).status_code == 404
    assert _api(other_user).get(f"/api/v1/auth/export/{export.public_id}/").status_code == 404
    assert client_for(user).get(page_url).status_code == 409
    running = _api(user).get(api_url)
    assert running.status_code == 409 and running.json()["status"] == "pending"

    tasks.account_export_build(export.id)
    assert client_for(other_user).get(page_url).status_code == 404
    download = client_for(user).get(page_url)
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"].startswith('attachment; filename="musicgen-alice-')
    assert "no-store" in download["Cache-Control"]
    export.refresh_from_db()
    assert b"".join(download.streaming_content) == _stored(export.file)


def test_with_an_accel_prefix_the_web_server_sends_the_zip_after_the_owner_check(
        user: User, other_user: User, account: list[Composition], export_now: Callable[[User], AccountExport],
        settings: Any) -> None:
    export = export_now(user)
    settings.MEDIA_ACCEL_REDIRECT_PREFIX = "/protected/"
    url = f"/api/v1/auth/export/{export.public_id}/download.zip"
    response = _api(user).get(url)
    assert response.status_code == 200 and response["X-Accel-Redirect"] == f"/protected/{export.file.name}"
    assert response["Content-Disposition"].startswith("attachment") and response.content == b""
    assert _api(other_user).get(url).status_code == 404


def test_a_failed_export_is_410_with_its_reason(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport], settings: Any,
        user_client: Client) -> None:
    settings.EXPORT_MAX_BYTES = 10
    export = export_now(user)
    response = _api(user).get(f"/api/v1/auth/export/{export.public_id}/download.zip")
    assert response.status_code == 410 and "the most one export may hold" in response.json()["detail"]
    assert user_client.get(reverse("account-export-download", args=[export.public_id])).status_code == 410


# -- expiry and deletion --------------------------------------------------------------------------------


def test_expired_exports_are_swept_by_the_reconciler_and_their_files_deleted(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport], settings: Any) -> None:
    settings.EXPORT_KEEP_HOURS = 24
    export = export_now(user)
    name = export.file.name
    assert export.expires_at == export.finished_at + timedelta(hours=24)
    composition_reconcile()
    assert default_storage.exists(name)  # not yet

    AccountExport.objects.filter(id=export.id).update(finished_at=timezone.now() - timedelta(hours=25))
    composition_reconcile()
    assert not default_storage.exists(name) and _exports_stored() == []
    export.refresh_from_db()
    assert not export.file and export.is_expired and not export.is_ready
    status = _api(user).get(f"/api/v1/auth/export/{export.public_id}/").json()
    assert status["status"] == "done" and status["expired"] is True and status["download_url"] is None
    assert _api(user).get(f"/api/v1/auth/export/{export.public_id}/download.zip").status_code == 410


def test_an_export_past_its_time_is_refused_before_the_sweep_comes(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport]) -> None:
    export = export_now(user)
    AccountExport.objects.filter(id=export.id).update(finished_at=timezone.now() - timedelta(hours=25))
    assert _api(user).get(f"/api/v1/auth/export/{export.public_id}/download.zip").status_code == 410


def test_the_sweep_fails_exports_whose_job_died(user: User, user_factory: Callable[..., User],
                                               settings: Any) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["retry"] + 60)
    killed = AccountExport.objects.create(user=user, status=AccountExport.Status.RUNNING, started_at=long_ago)
    lost = AccountExport.objects.create(user=user_factory(), status=AccountExport.Status.PENDING)
    AccountExport.objects.filter(id=lost.id).update(created_at=long_ago)
    alive = AccountExport.objects.create(user=user_factory(), status=AccountExport.Status.RUNNING,
                                         started_at=timezone.now())
    assert account_export_sweep() == {"expired": 0, "stopped": 2}
    for export in (killed, lost):
        export.refresh_from_db()
        assert export.status == AccountExport.Status.FAILED and "Ask for a new one" in export.error
    alive.refresh_from_db()
    assert alive.status == AccountExport.Status.RUNNING
    tasks.account_export_build(lost.id)  # its task turns up after all: nothing happens
    assert AccountExport.objects.get(id=lost.id).status == AccountExport.Status.FAILED


def test_deleting_the_account_deletes_its_exports_and_their_files(
        user: User, other_user: User, account: list[Composition], export_now: Callable[[User], AccountExport],
        user_client: Client) -> None:
    mine, theirs = export_now(user), export_now(other_user)
    response = user_client.post(reverse("account-delete"), {"password": PASSWORD})
    assert response.status_code == 302
    assert not AccountExport.objects.filter(id=mine.id).exists() and not default_storage.exists(mine.file.name)
    assert default_storage.exists(theirs.file.name)


# -- the account page -----------------------------------------------------------------------------------


def test_the_account_page_offers_an_export_then_follows_it_and_offers_the_download(
        user: User, account: list[Composition], user_client: Client, queued_tasks: list[tuple[Any, ...]],
        django_capture_on_commit_callbacks: Capture) -> None:
    page = user_client.get(reverse("account")).content.decode()
    assert f'action="{reverse("account-export-create")}"' in page and "Export everything" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(reverse("account-export-create"))
    assert response.status_code == 302 and response["Location"] == reverse("account") + "#export"
    export = AccountExport.objects.get(user=user)
    page = user_client.get(reverse("account")).content.decode()
    assert f'data-status-url="/api/v1/auth/export/{export.public_id}/"' in page
    assert "js/export.js" in page and '<progress id="export-bar" max="100" value="0">' in page
    assert f'action="{reverse("account-export-create")}"' not in page  # one at a time
    # Nothing inline that a Content-Security-Policy without 'unsafe-inline' would block.
    section = page[page.index('id="export"'):].split("</section>", 1)[0]
    assert not re.search(r"\son[a-z]+=|style=|<script", section)
    assert re.search(r'<script src="[^"]*js/export\.js" defer></script>', page)
    with django_capture_on_commit_callbacks(execute=True):
        user_client.post(reverse("account-export-create"))
    assert AccountExport.objects.filter(user=user).count() == 1

    tasks.account_export_build(export.id)
    page = user_client.get(reverse("account")).content.decode()
    assert reverse("account-export-download", args=[export.public_id]) in page
    assert "It is deleted on" in page and "data-status-url" not in page


def test_the_account_page_says_why_an_export_failed(
        user: User, account: list[Composition], export_now: Callable[[User], AccountExport], settings: Any,
        user_client: Client) -> None:
    settings.EXPORT_MAX_BYTES = 10
    export_now(user)
    page = user_client.get(reverse("account")).content.decode()
    assert "Your last export failed: Your pieces come to more than 10 bytes" in page


# -- the API ------------------------------------------------------------------------------------------


def test_the_api_flow_from_request_to_download(
        user: User, account: list[Composition], django_capture_on_commit_callbacks: Capture) -> None:
    api = _api(user)
    with django_capture_on_commit_callbacks(execute=True):
        created = api.post("/api/v1/auth/export/")
    assert created.status_code == 202
    body = created.json()
    assert body["status"] == "pending" and created["Location"] == body["status_url"]
    status = api.get(body["status_url"])
    assert status.status_code == 200
    data = status.json()
    assert data["status"] == "done" and data["progress"] == 100 and data["expired"] is False
    assert data["download_url"] == f"/api/v1/auth/export/{body['id']}/download.zip"
    assert data["size_bytes"] > 0 and data["expires_at"]
    download = api.get(data["download_url"], HTTP_ACCEPT="application/zip")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert "account.json" in archive.namelist() and len(archive.namelist()) > 5


def test_the_api_needs_a_token(db: None) -> None:
    client = APIClient()
    assert client.post("/api/v1/auth/export/").status_code == 401
    some = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/api/v1/auth/export/{some}/").status_code == 401
    assert client.get(f"/api/v1/auth/export/{some}/download.zip").status_code == 401


# -- files in object storage ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_an_export_reads_from_and_writes_to_s3(
        s3: S3Server, settings: Any, user: User, composition_factory: Callable[..., Composition],
        version_factory: Callable[..., CompositionVersion], export_now: Callable[[User], AccountExport]) -> None:
    bucket = s3.new_bucket()
    settings.STORAGES = s3.storages(bucket)
    settings.MEDIA_PRESIGNED_SECONDS = 0
    piece = composition_factory(user, files=True, status=CompositionVersion.Status.DONE)
    version_factory(piece, current=True)
    export = export_now(user)
    assert export.status == AccountExport.Status.DONE, export.error
    assert f"media/{export.file.name}" in s3.keys(bucket)
    assert not (Path(settings.MEDIA_ROOT) / "exports").exists()

    response = _api(user).get(f"/api/v1/auth/export/{export.public_id}/download.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    for version in piece.versions.all():
        stored = s3.client().get_object(Bucket=bucket, Key=f"media/{version.mp3_file.name}")["Body"].read()
        [mp3] = [name for name in archive.namelist() if name.endswith(f"-v{version.number}.mp3")]
        assert archive.read(mp3) == stored

    settings.MEDIA_PRESIGNED_SECONDS = 30  # a presigned redirect, with the zip's name
    redirect = _api(user).get(f"/api/v1/auth/export/{export.public_id}/download.zip")
    assert redirect.status_code == 302 and "X-Amz-Signature" in redirect["Location"]
    assert "musicgen-alice-" in redirect["Location"]

    AccountExport.objects.filter(id=export.id).update(finished_at=timezone.now() - timedelta(days=2))
    account_export_sweep()
    assert f"media/{export.file.name}" not in s3.keys(bucket)
