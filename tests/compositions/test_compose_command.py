from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from pydub import AudioSegment

from ml.notes import notes_from_midi
from ml.render import RELEASE_TAIL_SECONDS


def test_compose_command_writes_an_mp3_and_a_midi_file(db: None, style: str, tmp_path: Path) -> None:
    out, midi = tmp_path / "piece.mp3", tmp_path / "piece.mid"
    call_command("compose", "--style", style, "--seconds", "5", "--out", str(out), "--midi", str(midi), "--seed", "3")
    music = notes_from_midi(midi)
    assert music.end_time == pytest.approx(5, abs=1)
    audio = AudioSegment.from_file(out, format="mp3")
    assert audio.duration_seconds == pytest.approx(music.end_time + RELEASE_TAIL_SECONDS, abs=0.2)


def test_compose_command_numbers_variations(db: None, style: str, tmp_path: Path) -> None:
    call_command("compose", "--style", style, "--seconds", "5", "--out", str(tmp_path / "p.mp3"), "--variations", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-1.mp3", "p-2.mp3"]


def test_compose_command_explains_bad_input(db: None, style: str, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="between 5 and 600"):
        call_command("compose", "--style", style, "--seconds", "1", "--out", str(tmp_path / "p.mp3"))
