"""`manage.py check` warnings for what composing needs on this machine."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

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
