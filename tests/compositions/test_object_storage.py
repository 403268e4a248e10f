"""Pieces kept in S3-compatible object storage: written, served, redirected and deleted through it.

Against moto's S3 server in a child process, reached over loopback by django-storages and boto3 as
AWS or MinIO would be; nothing of the piece touches MEDIA_ROOT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.core.files.storage import default_storage
from django.test import Client

from compositions.models import CompositionVersion
from tests.s3 import S3Server, s3_server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server, settings: Any) -> str:
    """A new bucket as the site's storage, streamed by default."""
    name = s3.new_bucket()
    settings.STORAGES = s3.storages(name)
    settings.MEDIA_PRESIGNED_SECONDS = 0
    return name




def test_a_piece_is_written_to_the_bucket_and_streamed_from_it(
    s3: S3Server, bucket: str, compose: Callable[..., CompositionVersion], user_client: Client, settings: Any,
) -> None:
    version = compose()
    assert version.status == CompositionVersion.Status.DONE, version.error_detail
    names = [version.midi_file.name, version.mp3_file.name, version.score_svg.name, version.score_musicxml.name]
    assert all(names), names
    assert s3.keys(bucket) == sorted(f"media/{name}" for name in names)
    assert not Path(settings.MEDIA_ROOT).exists() or not any(Path(settings.MEDIA_ROOT).rglob("*.mp3"))

    public_id = version.composition.public_id
    mp3 = user_client.get(f"/compositions/{public_id}/audio.mp3")
    assert mp3.status_code == 200 and mp3["Content-Type"] == "audio/mpeg"
    body = b"".join(mp3.streaming_content)
    stored = s3.client().get_object(Bucket=bucket, Key=f"media/{version.mp3_file.name}")["Body"].read()
    assert body == stored and len(body) > 10_000
    midi = user_client.get(f"/compositions/{public_id}/score.mid")
    assert b"".join(midi.streaming_content).startswith(b"MThd")


def test_with_presigned_urls_the_permission_check_redirects_to_a_url_that_expires(
    s3: S3Server, bucket: str, compose: Callable[..., CompositionVersion], user_client: Client, settings: Any,
    client: Client,
) -> None:
    version = compose()
    settings.MEDIA_PRESIGNED_SECONDS = 120
    public_id = version.composition.public_id
    answer = user_client.get(f"/compositions/{public_id}/audio.mp3?download=1")
    assert answer.status_code == 302 and answer["Cache-Control"] == "private, no-store"
    url = answer["Location"]
    assert url.startswith(s3.endpoint + f"/{bucket}/media/mp3/")
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Expires"] == ["120"] and "X-Amz-Signature" in query
    fetched = requests.get(url, timeout=30)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "audio/mpeg"
    assert fetched.headers["Content-Disposition"].startswith("attachment; filename=")
    assert fetched.content == s3.client().get_object(Bucket=bucket, Key=f"media/{version.mp3_file.name}")["Body"].read()
    # The permission check still comes first: another user, or nobody, gets no URL.
    assert client.get(f"/compositions/{public_id}/audio.mp3").status_code in (302, 404)
    assert "X-Amz-Signature" not in client.get(f"/compositions/{public_id}/audio.mp3").get("Location", "")


def test_deleting_a_piece_deletes_its_objects(
    s3: S3Server, bucket: str, compose: Callable[..., CompositionVersion], user_client: Client,
) -> None:
    version = compose()
    assert len(s3.keys(bucket)) == 4
    response = user_client.post(f"/compositions/{version.composition.public_id}/delete/")
    assert response.status_code == 302
    assert s3.keys(bucket) == []
    assert not default_storage.exists(version.mp3_file.name)


def test_verify_media_finds_an_object_lost_from_the_bucket_and_renders_it_again(
    s3: S3Server, bucket: str, compose: Callable[..., CompositionVersion],
) -> None:
    from django.core.management import call_command

    version = compose()
    s3.client().delete_object(Bucket=bucket, Key=f"media/{version.mp3_file.name}")
    call_command("verify_media", "--repair", verbosity=0)
    version.refresh_from_db()
    assert version.status == CompositionVersion.Status.DONE
    assert default_storage.exists(version.mp3_file.name)
    assert f"media/{version.mp3_file.name}" in s3.keys(bucket)


def test_a_model_in_the_bucket_is_copied_once_per_machine_and_an_activation_reaches_the_next_piece(
    s3: S3Server, bucket: str, compose: Callable[..., CompositionVersion], settings: Any, tmp_path: Path,
    tiny_model_path: Path,
) -> None:
    from django.core.files.base import ContentFile

    from compositions import runtime
    from compositions.models import MusicModel
    from compositions.services.training import music_model_activate

    settings.MODEL_CACHE_DIR = tmp_path / "model-cache"
    settings.MUSIC_MODEL_PATH = tmp_path / "not-here.keras"  # only the bucket has a model
    rows = []
    for name in ("first", "second"):
        row = MusicModel(name=name, styles=["alpha", "beta"])
        row.file.save(f"{name}.keras", ContentFile(tiny_model_path.read_bytes()), save=True)
        rows.append(row)
    assert s3.keys(bucket) == ["media/models/first.keras", "media/models/second.keras"]
    music_model_activate(music_model=rows[0])

    local = runtime.active_model_path()
    assert local.is_relative_to(settings.MODEL_CACHE_DIR) and local.name == "first.keras"
    assert local.read_bytes() == tiny_model_path.read_bytes()
    copied_at = local.stat().st_mtime_ns
    version = compose()
    assert (version.status, version.model_name) == (CompositionVersion.Status.DONE, "first")
    assert runtime.active_model_path().stat().st_mtime_ns == copied_at  # not fetched again

    music_model_activate(music_model=rows[1])  # as the admin's action does, with workers running
    assert compose().model_name == "second"
    assert sorted(path.name for path in settings.MODEL_CACHE_DIR.rglob("*.keras")) == ["first.keras", "second.keras"]
    assert not list(settings.MODEL_CACHE_DIR.rglob("*.part"))

    # A stored file that went missing says so, instead of a 500 or a crashed worker.
    s3.client().delete_object(Bucket=bucket, Key="media/models/second.keras")
    for path in settings.MODEL_CACHE_DIR.rglob("second.keras"):
        path.unlink()
    from compositions.errors import ComposingUnavailable

    with pytest.raises(ComposingUnavailable, match="cannot be read from storage"):
        runtime.active_model_path()
