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
