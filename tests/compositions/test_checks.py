from __future__ import annotations

from pathlib import Path
from typing import Any

from compositions.checks import composing_tools_check


def test_check_warns_about_a_missing_soundfont(db: None, settings: Any, tmp_path: Path) -> None:
    settings.SOUNDFONT_PATH = str(tmp_path / "gone.sf2")
    messages = composing_tools_check()
    assert [m.id for m in messages] == ["compositions.W001"]
    assert "gone.sf2" in messages[0].msg


def test_check_warns_about_a_missing_model_file(db: None, settings: Any, tmp_path: Path) -> None:
    settings.MUSIC_MODEL_PATH = tmp_path / "none.keras"
    messages = composing_tools_check()
    assert [m.id for m in messages] == ["compositions.W002"]


def test_check_is_quiet_when_everything_is_there(db: None) -> None:
    assert composing_tools_check() == []


def test_the_compose_form_says_composing_is_unavailable_without_the_soundfont(
        db: None, settings: Any, tmp_path: Path, client: Any, django_user_model: Any) -> None:
    from compositions.models import Composition

    settings.SOUNDFONT_PATH = str(tmp_path / "gone.sf2")
    client.force_login(django_user_model.objects.create_user("sf", password="x-Long-pass-1"))
    page = client.get("/compositions/new/")
    assert b"gone.sf2" in page.content and b"composing is not possible right now" in page.content
    from ml.model.config import read_model_info

    style = read_model_info(settings.MUSIC_MODEL_PATH)["config"].styles[0]
    refused = client.post("/compositions/new/", {"style": style, "seconds": 5})
    assert refused.status_code == 503 and b"gone.sf2" in refused.content
    assert not Composition.objects.exists()


def test_the_cache_table_check_fails_loudly_when_the_table_is_missing(db: None) -> None:
    from django.db import connection

    from compositions.checks import cache_table_check

    assert cache_table_check(databases=["default"]) == []
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE musicgen_cache")
    messages = cache_table_check(databases=["default"])
    assert [m.id for m in messages] == ["compositions.E002"] and "musicgen_cache" in messages[0].msg
    # `migrate` makes it again (the post_migrate hook), so a deploy that only migrates works.
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    assert cache_table_check(databases=["default"]) == []


def test_serving_files_must_fit_where_they_are_stored(settings: Any) -> None:
    from compositions.checks import storage_settings_check

    settings.MEDIA_PRESIGNED_SECONDS = 60
    assert [m.id for m in storage_settings_check()] == ["compositions.W003"]
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    settings.MEDIA_ACCEL_REDIRECT_PREFIX = "/protected/"
    assert [m.id for m in storage_settings_check()] == ["compositions.E004"]
    settings.MEDIA_ACCEL_REDIRECT_PREFIX = ""
    assert storage_settings_check() == []
