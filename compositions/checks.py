"""`manage.py check` warnings for what composing needs on this machine."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections, router

from compositions import runtime


@register()
def composing_tools_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """One warning per missing tool (FluidSynth, ffmpeg, SoundFont) and for a missing model file."""
    from ml.audio.render import check_tools

    warnings: list[CheckMessage] = [
        Warning(problem, id="compositions.W001") for problem in check_tools(settings.SOUNDFONT_PATH or None)
    ]
    model_path = runtime.active_model_path()
    if not model_path.is_file():
        warnings.append(
            Warning(
                f"The music model file {model_path} is missing.",
                hint="Train one (make train) or set MUSIC_MODEL_PATH.",
                id="compositions.W002",
            )
        )
    return warnings


@register()
def loudness_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The loudness targets must make sense together (soft <= medium <= loud, all at most 0)."""
    try:
        runtime.loudness_for("medium")
    except ValueError as exc:
        return [Error(str(exc), hint="Fix the MUSIC_LOUDNESS_* and MUSIC_TRUE_PEAK_DBTP settings.",
                      id="compositions.E001")]
    return []


@register(Tags.database, deploy=True)
def cache_table_check(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With the database cache, its table must exist: without it signing in answers 500.

    Run by `check --deploy --database default` (and the health endpoint's database probe): a
    database check needs the database named, and a deploy check stays out of `migrate`'s own
    checks, which run before the migration that makes the table."""
    if databases is None:
        return []
    errors: list[CheckMessage] = []
    for alias in settings.CACHES:
        cache = caches[alias]
        if not isinstance(cache, DatabaseCache):
            continue
        using = router.db_for_read(cache.cache_model_class)
        if using not in databases:
            continue
        try:
            with connections[using].cursor() as cursor:
                tables = connections[using].introspection.table_names(cursor)
        except DatabaseError as exc:
            errors.append(Error(f"The database {using!r} cannot be reached: {exc}", id="compositions.E003"))
            continue
        if cache._table not in tables:
            errors.append(Error(
                f"The cache table {cache._table!r} is missing from the database {using!r}.",
                hint="Run `manage.py migrate` (it makes the table) or `manage.py createcachetable`.",
                id="compositions.E002",
            ))
    return errors


@register()
def storage_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The ways of serving private files must fit where they are stored."""
    object_storage = "storages.backends" in str(settings.STORAGES["default"]["BACKEND"])
    messages: list[CheckMessage] = []
    if object_storage and settings.MEDIA_ACCEL_REDIRECT_PREFIX:
        messages.append(Error(
            "MEDIA_ACCEL_REDIRECT_PREFIX sends files from a local folder, but STORAGE_URL keeps them elsewhere.",
            hint="Unset MEDIA_ACCEL_REDIRECT_PREFIX, and set MEDIA_PRESIGNED_SECONDS to send listeners to the store.",
            id="compositions.E004",
        ))
    if settings.MEDIA_PRESIGNED_SECONDS and not object_storage:
        messages.append(Warning(
            "MEDIA_PRESIGNED_SECONDS has no effect with files on this machine's disk (no STORAGE_URL).",
            id="compositions.W003",
        ))
    return messages
