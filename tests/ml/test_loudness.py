"""Loudness: every piece at its target integrated loudness, its true peak under the ceiling, measured
on the encoded MP3 by ffmpeg (not by the normaliser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.audio.arrangement import arrange
from ml.audio.loudness import (
    LoudnessTargets,
    integrated_loudness,
    measure,
    normalise,
    peak_envelope,
    read_wav,
    write_wav,
)
from ml.audio.render import Renderer, encode_mp3, find_soundfont
from ml.data.notes import NoteSequence
from ml.generation.piece import apply_dynamics
from ml.pipeline import render_piece

RATE = 44100
TARGETS = LoudnessTargets()


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    with Renderer(find_soundfont()) as shared:
        yield shared


def tone(seconds: float = 3.0, level: float = 0.05, spike: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    mono = level * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    if spike:  # one loud click, as a sharp attack makes: the limiter's work
        mono[RATE:RATE + 40] += 0.9
    return np.stack([mono, mono * 0.8], axis=1).astype(np.float32)


def db(value: float) -> float:
    return 20 * np.log10(value)


def test_normalise_reaches_the_target_and_keeps_true_peaks_under_the_ceiling() -> None:
    quiet = tone(level=0.01, spike=True)
    out = normalise(quiet, RATE, target=-14.0, ceiling=-1.0)
    assert integrated_loudness(out, RATE) == pytest.approx(-14.0, abs=0.3)
    assert db(peak_envelope(out).max()) <= -1.0
    # Away from the click the gain is the plain gain: only the moment of the peak is limited.
    gain = out[RATE * 2:RATE * 2 + 1000, 0] / quiet[RATE * 2:RATE * 2 + 1000, 0]
    assert np.ptp(gain) < 1e-3


def test_silence_is_left_as_it_is() -> None:
    silence = np.zeros((RATE, 2), dtype=np.float32)
    assert not normalise(silence, RATE, target=-14.0, ceiling=-1.0).any()


def test_the_encoded_mp3_is_measured_by_ffmpeg_as_the_target(tmp_path: Path) -> None:
    wav, mp3 = tmp_path / "tone.wav", tmp_path / "tone.mp3"
    write_wav(wav, normalise(tone(level=0.3), RATE, target=-20.0, ceiling=-1.0), RATE)
    encode_mp3(wav, mp3)
    heard = measure(mp3)
    assert heard.integrated == pytest.approx(-20.0, abs=0.5)
    assert heard.true_peak <= -1.0
    assert read_wav(wav)[1] == RATE


def pieces() -> dict[str, dict[str, Any]]:
    """Four seconds of each style's texture: four voices in chords, or one line."""
    chords = [(38, 53, 57, 62), (43, 55, 58, 67), (45, 52, 57, 61), (38, 50, 57, 62)] * 2
    start = np.repeat(np.arange(8) * 0.5, 4)
    four = dict(start=start, pitch=np.array(chords).ravel(), duration=np.full(32, 0.5))
    line = dict(start=np.arange(16) * 0.25, pitch=np.array([62, 64, 65, 67, 69, 67, 65, 64] * 2),
                duration=np.full(16, 0.25))
    return {"chorale": four, "string-quartet": four, "renaissance": four, "fiddle": line, "folk": line}


@pytest.mark.parametrize("style", ["chorale", "string-quartet", "renaissance", "fiddle", "folk"])
def test_every_style_at_every_dynamics_is_at_its_loudness_on_the_mp3(renderer: Renderer, tmp_path: Path,
                                                                      style: str) -> None:
    texture = pieces()[style]
    onsets = texture["start"] * 2  # beats at 120 BPM
    heard = {}
    for dynamics in ("soft", "medium", "loud", "crescendo", "diminuendo"):
        velocity = apply_dynamics(np.full(len(onsets), 80.0), onsets, dynamics)
        notes = NoteSequence.from_notes(velocity=velocity, tempo_bpm=120, **texture)
        target = TARGETS.for_dynamics(dynamics)
        rendered = render_piece(renderer, arrange(notes, style=style), midi_path=tmp_path / f"{dynamics}.mid",
                                audio_path=tmp_path / f"{dynamics}.mp3", loudness=target, ceiling=-1.0)
        assert rendered.loudness is not None
        assert rendered.loudness.integrated == pytest.approx(target, abs=1.0), dynamics
        assert rendered.loudness.true_peak <= -1.0, dynamics
        heard[dynamics] = tmp_path / f"{dynamics}.mp3"
    # A crescendo keeps its shape: its last second is louder than its first, a diminuendo the reverse.
    first, last = (measure_part(heard["crescendo"], at) for at in (0.2, 2.8))
    assert last > first + 6
    first, last = (measure_part(heard["diminuendo"], at) for at in (0.2, 2.8))
    assert first > last + 6


def measure_part(mp3: Path, at: float) -> float:
    """The RMS level (dBFS) of one second of an MP3, from `at` seconds."""
    from pydub import AudioSegment

    return AudioSegment.from_file(mp3, format="mp3")[int(at * 1000):int(at * 1000) + 1000].dBFS


@pytest.mark.parametrize("bad", [dict(soft=-10.0, medium=-14.0), dict(ceiling=3.0), dict(loud=float("nan"))])
def test_targets_that_do_not_make_sense_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Loudness"):
        LoudnessTargets(**bad)
