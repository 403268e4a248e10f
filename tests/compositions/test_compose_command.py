from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from pydub import AudioSegment

from ml.audio.render import MAX_TAIL_SECONDS
from ml.data.notes import notes_from_midi, parse_key, scale_pitch_classes
from tests.conftest import midi_bytes

ROOT = Path(__file__).resolve().parents[2]


def test_compose_command_writes_an_mp3_and_a_midi_file(db: None, style: str, tmp_path: Path) -> None:
    out, midi = tmp_path / "piece.mp3", tmp_path / "piece.mid"
    call_command("compose", "--style", style, "--seconds", "5", "--out", str(out), "--midi", str(midi), "--seed", "3")
    music = notes_from_midi(midi)
    assert music.end_time == pytest.approx(5, abs=1)
    audio = AudioSegment.from_file(out, format="mp3")
    # The music, then its tail ringing on (up to MAX_TAIL_SECONDS, less where it has died away).
    assert music.end_time + 0.2 < audio.duration_seconds <= music.end_time + MAX_TAIL_SECONDS + 0.2


def test_compose_command_numbers_variations(db: None, style: str, tmp_path: Path) -> None:
    call_command("compose", "--style", style, "--seconds", "5", "--out", str(tmp_path / "p.mp3"), "--variations", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-1.mp3", "p-2.mp3"]


def test_compose_command_explains_bad_input(db: None, style: str, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="between 5 and 600"):
        call_command("compose", "--style", style, "--seconds", "1", "--out", str(tmp_path / "p.mp3"))


def test_compose_command_takes_every_control(db: None, style: str, tmp_path: Path) -> None:
    midi = tmp_path / "piece.mid"
    call_command(
        "compose", "--style", style, "--notes", "40", "--tempo", "90", "--time-signature", "3/4",
        "--key", "D", "--mode", "dorian", "--pitch-low", "C3", "--pitch-high", "72",
        "--temperature", "0.9", "--timing-temperature", "0.8", "--top-k", "20", "--top-p", "0.9",
        "--dynamics", "soft", "--instrument", "40", "--seed", "2",
        "--out", str(tmp_path / "piece.mp3"), "--midi", str(midi),
    )
    music = notes_from_midi(midi)
    assert 20 <= len(music) <= 80  # a length in notes plans about that many, in whole bars
    assert (music.program, music.time_signature, round(music.tempo_bpm)) == (40, (3, 4), 90)
    assert 48 <= music.pitch.min() and music.pitch.max() <= 72
    # The key makes other notes rarer (not impossible): most notes are in D dorian.
    scale = scale_pitch_classes(parse_key("D"), "dorian")
    assert sum(int(p) % 12 in scale for p in music.pitch) >= 0.8 * len(music)


def test_compose_command_continues_a_midi_file(db: None, style: str, tmp_path: Path) -> None:
    primer, midi = tmp_path / "tune.mid", tmp_path / "piece.mid"
    primer.write_bytes(midi_bytes([60, 62, 64, 65, 67, 69], step=0.25))
    call_command(
        "compose", "--style", style, "--seconds", "5", "--continue", str(primer),
        "--out", str(tmp_path / "piece.mp3"), "--midi", str(midi), "--seed", "1",
    )
    assert notes_from_midi(midi).pitch[:6].tolist() == [60, 62, 64, 65, 67, 69]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--key", "H"], "Unknown key 'H'"),
        (["--mode", "lydian"], "Unknown mode 'lydian'"),
        (["--instrument", "128"], "between 0 and 127"),
        (["--temperature", "0"], "Temperature must be above 0"),
        (["--top-p", "0"], "Top-p must be above 0 and at most 1"),
        (["--top-p", "1.5"], "Top-p must be above 0 and at most 1"),
        (["--variations", "5"], "Variations must be between 1 and 4"),
        (["--seconds", "20", "--notes", "100"], "either in seconds or in notes, not both"),
        (["--time-signature", "3:4"], "is not like 4/4"),
        (["--pitch-low", "60", "--pitch-high", "64"], "at least an octave"),
        (["--pitch-low", "Q9"], "neither a MIDI note number nor a note name"),
        (["--continue", "/nonexistent/tune.mid"], "Cannot read /nonexistent/tune.mid"),
    ],
    ids=[
        "key", "mode", "instrument-128", "temperature-0", "top-p-0", "top-p-1.5", "variations-5",
        "seconds-and-notes", "time-signature", "narrow-range", "pitch-name", "missing-primer",
    ],
)
def test_compose_command_explains_each_bad_control(
    db: None, style: str, tmp_path: Path, flags: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("compose", "--style", style, *flags, "--out", str(tmp_path / "p.mp3"))
    assert not list(tmp_path.iterdir())


def test_compose_command_explains_an_unreachable_length(db: None, busiest_style: str, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="choose a shorter length or a slower tempo"):
        call_command(
            "compose", "--style", busiest_style, "--seconds", "600", "--tempo", "300",
            "--out", str(tmp_path / "p.mp3"),
        )


def test_compose_command_says_when_the_model_file_is_missing(
    db: None, style: str, settings: Any, tmp_path: Path
) -> None:
    settings.MUSIC_MODEL_PATH = tmp_path / "gone.keras"
    with pytest.raises(CommandError, match="^The music model file is missing") as error:
        call_command("compose", "--style", style, "--out", str(tmp_path / "p.mp3"))
    assert "Unknown style" not in str(error.value)


def test_compose_command_writes_wav_when_asked_for_wav(db: None, style: str, tmp_path: Path) -> None:
    out = tmp_path / "piece.wav"
    call_command("compose", "--style", style, "--seconds", "5", "--out", str(out), "--seed", "3")
    header = out.read_bytes()[:12]
    assert header[:4] == b"RIFF" and header[8:12] == b"WAVE"


@pytest.mark.parametrize("name", ["piece.ogg", "piece"])
def test_compose_command_refuses_an_audio_format_it_cannot_write(
        db: None, style: str, tmp_path: Path, name: str) -> None:
    with pytest.raises(CommandError, match=r"\.mp3 or \.wav"):
        call_command("compose", "--style", style, "--seconds", "5", "--out", str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


def test_compose_from_the_shell_never_imports_tensorflow(tiny_model_path: Path, tmp_path: Path) -> None:
    """One piece and the process ends: the NumPy engine (ml.model.inference) writes it, nothing is compiled."""
    shutil.copy(tiny_model_path, tmp_path / "model.keras")
    code = (
        "import json, sys, django\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "from ml.model.config import read_model_info\n"
        f"style = read_model_info({str(tmp_path / 'model.keras')!r})['config'].styles[0]\n"
        f"call_command('compose', '--style', style, '--notes', '24', '--out', {str(tmp_path / 'p.mp3')!r})\n"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]))\n"
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))},
           "DJANGO_SETTINGS_MODULE": "musicgen.settings", "MUSIC_MODEL_PATH": str(tmp_path / "model.keras"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "p.mp3").stat().st_size > 1000
