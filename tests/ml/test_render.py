"""Tests for ml.audio.render: WAV rendering with FluidSynth and MP3 encoding with ffmpeg."""

from __future__ import annotations

import os
import stat
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from ml.audio.render import (
    MAX_TAIL_SECONDS,
    Renderer,
    RenderError,
    check_tools,
    encode_mp3,
    encode_mp3_stream,
    find_soundfont,
)

RATE = 44100


def tiny_midi(pitches: tuple[int, ...] = (60, 64, 67, 72), step: float = 0.25) -> pretty_midi.PrettyMIDI:
    """A short arpeggio on the piano, starting at 0.1 s."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for index, pitch in enumerate(pitches):
        start = 0.1 + index * step
        piano.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=start, end=start + step))
    midi.instruments.append(piano)
    return midi


def read_wav(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return params, samples.reshape(-1, 2).astype(np.int32)


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    with Renderer(find_soundfont()) as shared:
        yield shared


@pytest.fixture
def wav_file(renderer: Renderer, tmp_path: Path) -> Path:
    path = tmp_path / "piece.wav"
    renderer.render_wav(tiny_midi(), path)
    return path


def fake_converter(folder: Path, body: str) -> Path:
    """A stand-in for ffmpeg: a shell script that misbehaves as told."""
    folder.mkdir()
    script = folder / "ffmpeg"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_find_soundfont_returns_explicit_path(tmp_path: Path) -> None:
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF\0\0\0\0sfbk")
    assert find_soundfont(str(font)) == font


def test_find_soundfont_rejects_missing_explicit_path(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="The SoundFont file is missing"):
        find_soundfont(str(tmp_path / "nope.sf2"))


def test_find_soundfont_falls_back_to_an_existing_default() -> None:
    assert find_soundfont().is_file()


def test_render_wav_writes_16_bit_stereo_of_the_piece_and_its_tail(wav_file: Path, renderer: Renderer) -> None:
    params, samples = read_wav(wav_file)
    music = 0.1 + 4 * 0.25
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, RATE)
    assert music + 0.2 < params.nframes / RATE <= music + MAX_TAIL_SECONDS + 0.05
    assert renderer.render_wav(tiny_midi(), wav_file) == pytest.approx(params.nframes / RATE)


def test_render_wav_is_not_silent_once_the_first_note_starts(wav_file: Path) -> None:
    _, samples = read_wav(wav_file)
    first_note = int(0.1 * RATE)
    assert np.abs(samples[: first_note - 64]).max() == 0
    assert np.abs(samples[first_note:]).max() > 1000


def test_render_leaves_no_state_behind_for_the_next_render(renderer: Renderer, tmp_path: Path) -> None:
    _, before = read_wav(_render(renderer, tiny_midi(), tmp_path / "a.wav"))
    loud = tiny_midi(pitches=tuple(range(36, 96, 3)), step=0.05)
    for instrument in loud.instruments:
        instrument.control_changes.append(pretty_midi.ControlChange(64, 127, 0.0))  # sustain pedal down
        instrument.pitch_bends.append(pretty_midi.PitchBend(4000, 0.2))
    _render(renderer, loud, tmp_path / "b.wav")
    _, after = read_wav(_render(renderer, tiny_midi(), tmp_path / "c.wav"))
    assert before.shape == after.shape
    # Bit-identical on FluidSynth builds that can rebuild their effects; a faint
    # reverb difference is all that is allowed otherwise.
    assert np.abs(before - after).max() <= 0.02 * np.abs(before).max()


def _render(renderer: Renderer, midi: pretty_midi.PrettyMIDI, path: Path) -> Path:
    renderer.render_wav(midi, path)
    return path


def test_drums_and_several_instruments_render(renderer: Renderer, tmp_path: Path) -> None:
    midi = tiny_midi()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(velocity=110, pitch=38, start=0.0, end=0.1))
    strings = pretty_midi.Instrument(program=48)
    strings.notes.append(pretty_midi.Note(velocity=80, pitch=55, start=0.0, end=1.0))
    midi.instruments += [drums, strings]
    _, samples = read_wav(_render(renderer, midi, tmp_path / "band.wav"))
    assert np.abs(samples[: int(0.1 * RATE)]).max() > 100


def test_missing_soundfont_raises_render_error(tmp_path: Path) -> None:
    renderer = Renderer(tmp_path / "gone.sf2")
    with pytest.raises(RenderError, match="The SoundFont file is missing"):
        renderer.render_wav(tiny_midi(), tmp_path / "out.wav")
    assert list(tmp_path.iterdir()) == []


def test_too_long_piece_raises_render_error(tmp_path: Path) -> None:
    renderer = Renderer(find_soundfont(), max_seconds=1.0)
    with pytest.raises(RenderError, match="too long"):
        renderer.render_wav(tiny_midi(), tmp_path / "out.wav")
    assert list(tmp_path.iterdir()) == []


def test_mp3_decodes_to_the_wav_length(wav_file: Path, tmp_path: Path) -> None:
    from pydub import AudioSegment

    mp3 = tmp_path / "piece.mp3"
    encode_mp3(wav_file, mp3)
    wav_seconds = read_wav(wav_file)[0].nframes / RATE
    decoded = AudioSegment.from_file(mp3, format="mp3")
    assert decoded.frame_rate == RATE and decoded.channels == 2
    assert decoded.duration_seconds == pytest.approx(wav_seconds, abs=0.06)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece.mp3", "piece.wav"]


def test_encode_mp3_without_ffmpeg_raises_and_leaves_no_files(
    wav_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydub import AudioSegment

    monkeypatch.setattr(AudioSegment, "converter", "ffmpeg")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RenderError, match="ffmpeg is not installed"):
        encode_mp3(wav_file, tmp_path / "piece.mp3")
    assert [p.name for p in tmp_path.iterdir()] == ["piece.wav"]


def test_encode_mp3_failure_raises_and_leaves_no_files(
    wav_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydub import AudioSegment

    body = 'for last; do :; done; echo half > "$last"; echo "codec exploded" >&2; exit 1'
    script = fake_converter(tmp_path / "bin", body)
    monkeypatch.setattr(AudioSegment, "converter", str(script))
    with pytest.raises(RenderError, match="MP3 encoding failed: codec exploded"):
        encode_mp3(wav_file, tmp_path / "piece.mp3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "piece.wav"]


def test_encode_mp3_timeout_kills_ffmpeg_and_leaves_no_files(
    wav_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydub import AudioSegment

    script = fake_converter(tmp_path / "bin", "exec sleep 30")
    monkeypatch.setattr(AudioSegment, "converter", str(script))
    with pytest.raises(RenderError, match=r"MP3 encoding timed out after 0\.3 s"):
        encode_mp3(wav_file, tmp_path / "piece.mp3", timeout=0.3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "piece.wav"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_file_descriptors_stay_flat_over_200_renders(renderer: Renderer, tmp_path: Path) -> None:
    midi = tiny_midi(pitches=(60,), step=0.05)
    out = tmp_path / "loop.wav"
    renderer.render_wav(midi, out)  # warm up: the synth exists before counting
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        renderer.render_wav(midi, out)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_check_tools_reports_nothing_when_all_is_installed() -> None:
    assert check_tools(None) == []


def test_check_tools_reports_a_missing_soundfont(tmp_path: Path) -> None:
    problems = check_tools(str(tmp_path / "gone.sf2"))
    assert problems == [f"The SoundFont file is missing: {tmp_path / 'gone.sf2'}"]


def test_check_tools_reports_a_file_that_is_not_a_soundfont(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.sf2"
    bogus.write_text("hello")
    assert check_tools(str(bogus)) == [f"The SoundFont file is not a .sf2 SoundFont: {bogus}"]


def test_the_tail_rings_until_the_sound_has_died_away(renderer: Renderer, tmp_path: Path) -> None:
    # A piano note held with reverb: the sound after the note-off decays, and the file ends once it is
    # 60 dB below the loudest moment (or 3 s on), not cut to digital silence at once.
    midi = tiny_midi((48,), step=1.0)
    midi.instruments[0].control_changes.append(pretty_midi.ControlChange(91, 100, 0.0))
    path = tmp_path / "ring.wav"
    renderer.render_wav(midi, path)
    _, samples = read_wav(path)
    end = int(1.1 * RATE)
    after = np.abs(samples[end:]).max(axis=1)
    assert after[: RATE // 10].max() > 100  # still ringing just after the note ends
    loudest = np.abs(samples).max()
    assert after[-2048:].max() < loudest * 10 ** (-50 / 20)  # and quiet by the end of the file
    assert len(samples) / RATE <= 1.1 + MAX_TAIL_SECONDS + 0.05


def _blocks(seconds: float = 3.0, size: int = 44100) -> list[np.ndarray]:
    t = np.arange(int(seconds * RATE)) / RATE
    tone = (8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
    stereo = np.stack([tone, tone], axis=1)
    return [stereo[i:i + size] for i in range(0, len(stereo), size)]


def test_encode_mp3_stream_encodes_blocks_as_they_come(tmp_path: Path) -> None:
    from pydub import AudioSegment

    encode_mp3_stream(iter(_blocks()), tmp_path / "piece.mp3", sample_rate=RATE)
    audio = AudioSegment.from_file(tmp_path / "piece.mp3", format="mp3")
    assert audio.channels == 2 and audio.duration_seconds == pytest.approx(3.0, abs=0.06)
    assert [p.name for p in tmp_path.iterdir()] == ["piece.mp3"]


def test_encode_mp3_stream_failure_and_timeout_leave_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydub import AudioSegment

    failing = fake_converter(tmp_path / "bin", 'echo "codec exploded" >&2; exit 1')
    monkeypatch.setattr(AudioSegment, "converter", str(failing))
    with pytest.raises(RenderError, match="MP3 encoding failed: codec exploded"):
        encode_mp3_stream(iter(_blocks()), tmp_path / "piece.mp3", sample_rate=RATE)
    # An ffmpeg that never reads: the writer would wait on a full pipe, the watchdog ends it.
    stuck = fake_converter(tmp_path / "bin2", "exec sleep 30")
    monkeypatch.setattr(AudioSegment, "converter", str(stuck))
    with pytest.raises(RenderError, match=r"MP3 encoding timed out after 0\.5 s"):
        encode_mp3_stream(iter(_blocks(size=RATE * 3)), tmp_path / "piece.mp3", sample_rate=RATE, timeout=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "bin2"]


def test_a_check_that_raises_stops_the_rendering_and_the_next_render_is_whole(renderer: Renderer) -> None:
    class Stop(Exception):
        pass

    whole = renderer.render(tiny_midi())
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Stop

    with pytest.raises(Stop):
        renderer.render(tiny_midi(), check=check)
    assert calls == 3  # it stopped at the third block, not at the end
    again = renderer.render(tiny_midi(), check=lambda: None)
    assert again.shape == whole.shape
    assert np.abs(again.astype(np.int32) - whole).max() <= 0.02 * np.abs(whole).max()
