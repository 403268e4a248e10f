"""Render MIDI to audio: FluidSynth for WAV, ffmpeg (found through pydub) for MP3.

The expensive part of rendering is loading the SoundFont (FluidR3_GM is about
140 MB), so a :class:`Renderer` owns one FluidSynth synthesizer, creates it on
the first render and reuses it for every later one. Make one Renderer per
worker process, after the fork.

Typical use::

    renderer = Renderer(find_soundfont(settings_value_or_none))
    seconds = renderer.render_wav(midi, Path("piece.wav"))
    encode_mp3(Path("piece.wav"), Path("piece.mp3"))
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
import wave
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import pretty_midi

DEBIAN_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
# pretty_midi ships a small (6 MB) General MIDI SoundFont: worse sound, but always there.
BUNDLED_SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"

# After the last note the sound rings on (release, reverb) until it has decayed 60 dB below the
# piece's loudest moment, or for this long, whichever comes first.
MAX_TAIL_SECONDS = 3.0
TAIL_DECAY_DB = 60.0
TAIL_BLOCK = 2048            # frames; the tail is checked a block at a time (a multiple of FLUID_BLOCK)
# The room: FluidSynth's reverb as a hall (room size and damping 0..1, width 0..100, level 0..1).
# How much of each instrument reaches it is the track's own (MIDI controller 91; see
# ml.audio.arrangement); chorus likewise (controller 93).
REVERB_ROOM = {"synth.reverb.room-size": 0.65, "synth.reverb.damp": 0.35, "synth.reverb.width": 0.9,
               "synth.reverb.level": 0.7}
SYNTH_GAIN = 0.5             # peaks near -14 dBFS for a piano melody; a dense fff
                             # 32-voice piano cluster still stays below clipping
DRUM_CHANNEL = 9             # General MIDI percussion channel (channel 10 counted from 1)
DRUM_BANK = 128              # SoundFont bank that holds the drum kits
MIDI_CHANNELS = 64           # one channel per instrument for all but very large files
# LAME's quality switch (0 best .. 9 fastest). At 192 kb/s there are bits to
# spare, and 7 encodes a minute of audio in about half the time of the default 3.
LAME_QUALITY = 7
BLOCK_FRAMES = 8192          # largest chunk synthesized in one call between events
FLUID_BLOCK = 64             # FluidSynth synthesizes (and applies events) in 64-frame blocks

# At equal times, release notes before starting new ones (a repeated key must
# sound again), and set controllers and bends before the notes they affect.
_NOTE_OFF, _CONTROL, _PITCH_BEND, _NOTE_ON = range(4)


class RenderError(RuntimeError):
    """Rendering or encoding failed; the message is meant for the user."""


def find_soundfont(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Pick the SoundFont to render with.

    Args:
        explicit: a path chosen by the user (the site passes its
            ``SOUNDFONT_PATH`` setting). When given it must exist: a
            configured but missing file is an error, not a silent fallback.

    Returns:
        ``explicit`` if given, else Debian's FluidR3_GM, else the TimGM6mb
        SoundFont bundled with pretty_midi.

    Raises:
        RenderError: the explicit file is missing, or no SoundFont is found.
    """
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise RenderError(f"The SoundFont file is missing: {path}")
        return path
    for candidate in (DEBIAN_SOUNDFONT, BUNDLED_SOUNDFONT):
        if candidate.is_file():
            return candidate
    raise RenderError(
        f"No SoundFont found: install fluid-soundfont-gm ({DEBIAN_SOUNDFONT}) "
        "or set SOUNDFONT_PATH to a .sf2 file"
    )


def _import_fluidsynth() -> ModuleType:
    """Import pyfluidsynth, which fails at import time when libfluidsynth is absent."""
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise RenderError(
            "The FluidSynth library is not installed (apt-get install libfluidsynth3)"
        ) from exc
    return fluidsynth


def ffmpeg_path() -> str:
    """The ffmpeg binary pydub is configured to use, resolved on PATH now."""
    with warnings.catch_warnings():
        # pydub warns at import when ffmpeg is missing; we report that ourselves.
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment
    converter = str(AudioSegment.converter)
    resolved = shutil.which(converter)
    if resolved is None:
        raise RenderError(f"ffmpeg is not installed (looked for {converter!r} on PATH)")
    return resolved


def check_tools(soundfont: str | os.PathLike[str] | None = None) -> list[str]:
    """List what is missing for rendering, one human-readable line per problem.

    Args:
        soundfont: the configured SoundFont path, or None for the defaults.

    Returns:
        An empty list when FluidSynth, ffmpeg and a readable SoundFont are there.
    """
    problems: list[str] = []
    for check in (_import_fluidsynth, ffmpeg_path):
        try:
            check()
        except RenderError as exc:
            problems.append(str(exc))
    try:
        path = find_soundfont(soundfont)
        with path.open("rb") as handle:
            header = handle.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
            problems.append(f"The SoundFont file is not a .sf2 SoundFont: {path}")
    except RenderError as exc:
        problems.append(str(exc))
    except OSError as exc:
        problems.append(f"The SoundFont file cannot be read: {exc.filename} ({exc.strerror})")
    return problems


@dataclass(frozen=True, order=True)
class _Event:
    frame: int          # position in samples at the output rate
    kind: int           # _NOTE_OFF .. _NOTE_ON, the tie-break at equal frames
    channel: int
    data1: int          # key, program, controller number or pitch-bend value
    data2: int = 0      # velocity or controller value


def _channel_plan(instruments: list[pretty_midi.Instrument]) -> list[int]:
    """Give every instrument its own channel; drums share the percussion channel."""
    melodic = [c for c in range(MIDI_CHANNELS) if c != DRUM_CHANNEL]
    plan: list[int] = []
    next_melodic = 0
    for instrument in instruments:
        if instrument.is_drum:
            plan.append(DRUM_CHANNEL)
        else:
            # Past 63 melodic parts, channels are shared; programs may then clash.
            plan.append(melodic[next_melodic % len(melodic)])
            next_melodic += 1
    return plan


def _events(midi: pretty_midi.PrettyMIDI, channels: list[int], rate: int) -> list[_Event]:
    """Flatten all instruments into one time-ordered list of synth events."""

    def frame(seconds: float) -> int:
        return max(0, round(seconds * rate))

    events: list[_Event] = []
    for instrument, channel in zip(midi.instruments, channels):
        for note in instrument.notes:
            if not 0 <= note.pitch <= 127 or note.end <= note.start:
                continue
            velocity = min(max(int(note.velocity), 1), 127)
            events.append(_Event(frame(note.start), _NOTE_ON, channel, note.pitch, velocity))
            events.append(_Event(frame(note.end), _NOTE_OFF, channel, note.pitch))
        for change in instrument.control_changes:
            events.append(_Event(frame(change.time), _CONTROL, channel, change.number, change.value))
        for bend in instrument.pitch_bends:
            events.append(_Event(frame(bend.time), _PITCH_BEND, channel, bend.pitch))
    events.sort()
    return events


class Renderer:
    """One FluidSynth synthesizer that renders PrettyMIDI objects to WAV files.

    The synthesizer and SoundFont are loaded lazily on the first render and
    reused; every render starts from a full reset, so the output depends only
    on the MIDI given. Safe to share between threads (renders are serialized).
    """

    def __init__(
        self,
        soundfont: str | os.PathLike[str],
        sample_rate: int = 44100,
        *,
        max_seconds: float = 3600.0,
    ) -> None:
        """Remember the settings; nothing is loaded until the first render.

        Args:
            soundfont: path of the .sf2 file (see :func:`find_soundfont`).
            sample_rate: output rate in Hz.
            max_seconds: longest audio a render may produce; guards against
                uploaded MIDI files whose last event lies hours away.
        """
        self.soundfont = Path(soundfont)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self._fluidsynth: ModuleType | None = None
        self._synth: Any = None
        self._sfid = -1
        self._write_float: Any = None
        self._set_rate: Any = None
        self._partial = 0  # frames written into FluidSynth's current 64-frame block
        self._lock = threading.Lock()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_synth(self) -> Any:
        if self._synth is not None:
            return self._synth
        fluidsynth = _import_fluidsynth()
        if not self.soundfont.is_file():
            raise RenderError(f"The SoundFont file is missing: {self.soundfont}")
        synth = fluidsynth.Synth(
            gain=SYNTH_GAIN,
            samplerate=self.sample_rate,
            channels=MIDI_CHANNELS,
            # A second core mixes voices in parallel: about 25% faster on 2 cores.
            **{"synth.cpu-cores": min(2, os.cpu_count() or 1), "synth.reverb.active": 1,
               "synth.chorus.active": 1, **REVERB_ROOM},
        )
        sfid = synth.sfload(str(self.soundfont))
        if sfid < 0:
            synth.delete()
            raise RenderError(f"The SoundFont file could not be loaded: {self.soundfont}")
        library = ctypes.CDLL(fluidsynth.lib)
        # pyfluidsynth only wraps the 16-bit writer, which dithers with a
        # position that carries over between renders; float output plus our own
        # conversion keeps renders reproducible.
        write_float = library.fluid_synth_write_float
        write_float.restype = ctypes.c_int
        write_float.argtypes = [
            ctypes.c_void_p, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        ]
        # system_reset clears the reverb buffers but not its modulated delay
        # lines; setting the sample rate rebuilds the effects from scratch.
        # Deprecated since FluidSynth 2.1 and may be absent: then renders differ
        # by a faint reverb shimmer, nothing audible.
        set_rate = getattr(library, "fluid_synth_set_sample_rate", None)
        if set_rate is not None:
            set_rate.restype = None
            set_rate.argtypes = [ctypes.c_void_p, ctypes.c_float]
        self._set_rate = set_rate
        self._fluidsynth, self._synth, self._sfid = fluidsynth, synth, sfid
        self._write_float = write_float
        return synth

    def _reset(self, synth: Any) -> None:
        """Silence everything and restore defaults so renders are independent."""
        for channel in range(MIDI_CHANNELS):
            synth.all_sounds_off(channel)
        # A render stopped part way (its caller's check raised) ends inside one of FluidSynth's
        # blocks, whose rest it would hand to the next render, shifting it: that rest is thrown away.
        if self._partial:
            scratch = np.zeros(2 * FLUID_BLOCK, dtype=np.float32)
            pointer = scratch.ctypes.data
            self._write_float(synth.synth, FLUID_BLOCK - self._partial, pointer, 0, 2, pointer, 1, 2)
            self._partial = 0
        # Also resets every controller and program.
        synth.system_reset()
        if self._set_rate is not None:
            self._set_rate(synth.synth, float(self.sample_rate))

    def _select_program(self, synth: Any, channel: int, program: int, is_drum: bool) -> None:
        bank = DRUM_BANK if is_drum else 0
        program = min(max(int(program), 0), 127)
        if synth.program_select(channel, self._sfid, bank, program) != 0:
            # Small SoundFonts lack some presets: fall back to piano / the standard kit.
            synth.program_select(channel, self._sfid, bank, 0)

    def render_wav(self, midi: pretty_midi.PrettyMIDI, wav_path: Path) -> float:
        """Render ``midi`` to a 16-bit stereo WAV file.

        Args:
            midi: the piece; every instrument plays on its own channel with its
                program, control changes and pitch bends; drums use channel 10.
            wav_path: where to write. Written to a sibling temporary file and
                renamed, so a failed render leaves nothing behind.

        Returns:
            Seconds of audio written: the piece and its tail (the sound ringing on until it has
            decayed TAIL_DECAY_DB below the loudest moment, at most MAX_TAIL_SECONDS).

        Raises:
            RenderError: FluidSynth or the SoundFont is unavailable, the piece is
                too long, or the file cannot be written.
        """
        wav_path = Path(wav_path)
        partial = wav_path.with_name(f".{wav_path.name}.{os.getpid()}.part")
        try:
            with wave.open(str(partial), "wb") as out:
                out.setnchannels(2)
                out.setsampwidth(2)
                out.setframerate(self.sample_rate)
                total_frames = self._render(midi, lambda block: out.writeframesraw(block.tobytes()))
            os.replace(partial, wav_path)
        except OSError as exc:
            raise RenderError(f"Could not write the audio file {wav_path}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return total_frames / self.sample_rate

    def render(self, midi: pretty_midi.PrettyMIDI, check: Callable[[], None] | None = None) -> np.ndarray:
        """Render ``midi`` to 16-bit stereo samples in memory (frames x 2), as `render_wav` writes them;
        `check` is called after each block (what it raises stops the rendering)."""
        blocks: list[np.ndarray] = []

        def sink(block: np.ndarray) -> None:
            blocks.append(block)
            if check is not None:
                check()

        self._render(midi, sink)
        return np.concatenate(blocks).reshape(-1, 2) if blocks else np.zeros((0, 2), dtype="<i2")

    def _render(self, midi: pretty_midi.PrettyMIDI, sink: Callable[[np.ndarray], object]) -> int:
        """Play ``midi`` through the synthesizer, handing each block of interleaved 16-bit samples to
        ``sink``; returns the frames written."""
        with self._lock:
            synth = self._ensure_synth()
            self._reset(synth)
            try:
                channels = _channel_plan(midi.instruments)
                for instrument, channel in zip(midi.instruments, channels):
                    self._select_program(synth, channel, instrument.program, instrument.is_drum)
                events = _events(midi, channels, self.sample_rate)
                last_frame = events[-1].frame if events else 0
                # Stop on a block boundary: FluidSynth keeps the rest of a partly
                # read block, which would shift every later render by a few frames.
                last_frame = -(-last_frame // FLUID_BLOCK) * FLUID_BLOCK
                tail = -(-round(MAX_TAIL_SECONDS * self.sample_rate) // FLUID_BLOCK) * FLUID_BLOCK
                most_frames = last_frame + tail
                if most_frames > self.max_seconds * self.sample_rate:
                    raise RenderError(
                        f"The piece is too long to render: {most_frames / self.sample_rate:.0f} s "
                        f"(the limit is {self.max_seconds:.0f} s)"
                    )
                return self._play(synth, events, last_frame, most_frames, sink)
            finally:
                self._reset(synth)

    def _play(self, synth: Any, events: list[_Event], last_frame: int, most_frames: int,
              sink: Callable[[np.ndarray], object]) -> int:
        """Send events in order, synthesizing audio for the gaps between them, then the tail until it
        has decayed (or `most_frames`); returns the frames written."""
        buffer = np.zeros(2 * BLOCK_FRAMES, dtype=np.float32)
        pointer = buffer.ctypes.data
        handle = synth.synth
        written = 0
        loudest = 0.0

        def advance_to(frame: int) -> float:
            """Synthesize up to `frame`; the largest magnitude of what was written."""
            nonlocal written
            peak = 0.0
            while written < frame:
                count = min(frame - written, BLOCK_FRAMES)
                # Interleaved stereo: left at even, right at odd indices.
                self._write_float(handle, count, pointer, 0, 2, pointer, 1, 2)
                block = buffer[: 2 * count] * 32767.0
                np.clip(block, -32768.0, 32767.0, out=block)
                peak = max(peak, float(np.abs(block).max()))
                written += count
                self._partial = (self._partial + count) % FLUID_BLOCK
                sink(block.astype("<i2"))
            return peak

        for event in events:
            loudest = max(loudest, advance_to(event.frame))
            if event.kind == _NOTE_ON:
                synth.noteon(event.channel, event.data1, event.data2)
            elif event.kind == _NOTE_OFF:
                synth.noteoff(event.channel, event.data1)
            elif event.kind == _CONTROL:
                synth.cc(event.channel, event.data1, event.data2)
            elif event.kind == _PITCH_BEND:
                synth.pitch_bend(event.channel, event.data1)
        loudest = max(loudest, advance_to(last_frame))
        quiet = max(loudest, 1.0) * 10 ** (-TAIL_DECAY_DB / 20)
        while written < most_frames:
            if advance_to(min(most_frames, written + TAIL_BLOCK)) < quiet:
                break
        return written

    def close(self) -> None:
        """Free the synthesizer and SoundFont; a later render loads them again."""
        with self._lock:
            if self._synth is not None:
                self._synth.delete()
                self._synth = None
                self._sfid = -1
                self._write_float = None
                self._set_rate = None
                self._partial = 0


def encode_mp3(
    wav_path: Path, mp3_path: Path, *, bitrate: str = "192k", timeout: float = 60.0
) -> None:
    """Encode a 16-bit WAV file to MP3 with ffmpeg: its frames go through `encode_mp3_stream`.

    pydub's ``AudioSegment.export`` would decode the WAV into memory, copy it to
    a temporary file and wait on ffmpeg with no timeout. We only take pydub's
    choice of converter (``AudioSegment.converter``, so configuring pydub still
    works) and run ffmpeg ourselves, under a timeout that kills it.

    Args:
        wav_path: the input WAV.
        mp3_path: where to write; written to a temporary file in the same
            folder and renamed, so failures leave nothing behind.
        bitrate: constant bitrate in ffmpeg syntax.
        timeout: seconds before ffmpeg is killed.

    Raises:
        RenderError: the WAV is missing or not 16-bit, or ffmpeg is missing, fails or times out.
    """
    wav_path = Path(wav_path)
    if not wav_path.is_file():
        raise RenderError(f"The audio file to encode is missing: {wav_path}")
    with wave.open(str(wav_path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise RenderError(f"The audio file to encode is not 16-bit PCM: {wav_path}")
        channels, rate = wav.getnchannels(), wav.getframerate()

        def blocks() -> Iterator[np.ndarray]:
            while frames := wav.readframes(BLOCK_FRAMES * 8):
                yield np.frombuffer(frames, dtype="<i2").reshape(-1, channels)

        encode_mp3_stream(blocks(), mp3_path, sample_rate=rate, channels=channels, bitrate=bitrate,
                          timeout=timeout)


def encode_mp3_stream(
    blocks: Iterable[np.ndarray], mp3_path: Path, *, sample_rate: int, channels: int = 2,
    bitrate: str = "192k", timeout: float = 60.0,
) -> None:
    """Encode 16-bit blocks (frames x channels) to MP3 as they come: ffmpeg encodes one block on
    the other core while the caller makes the next, so the MP3 is done soon after the last block.

    Written to a temporary file beside `mp3_path` and renamed, so failures leave nothing behind;
    RenderError when ffmpeg is missing, fails or takes longer than `timeout` seconds.
    """
    mp3_path = Path(mp3_path)
    ffmpeg = ffmpeg_path()
    fd, partial_name = tempfile.mkstemp(prefix=f".{mp3_path.name}.", suffix=".part", dir=mp3_path.parent)
    os.close(fd)
    partial = Path(partial_name)
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "s16le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0",
        "-codec:a", "libmp3lame", "-b:a", bitrate, "-compression_level", str(LAME_QUALITY),
        "-f", "mp3", str(partial),
    ]
    try:
        with tempfile.TemporaryFile() as errors:
            try:
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
            except OSError as exc:
                raise RenderError(f"ffmpeg could not be started: {exc}") from exc
            assert process.stdin is not None
            expired = threading.Event()

            def stop() -> None:  # a write into a stuck ffmpeg would wait for ever: the watchdog ends it
                expired.set()
                process.kill()

            watchdog = threading.Timer(timeout, stop)
            watchdog.start()
            try:
                for block in blocks:
                    process.stdin.write(np.ascontiguousarray(block, dtype="<i2").tobytes())
                process.stdin.close()
                process.wait()
            except BrokenPipeError:  # ffmpeg stopped reading: its exit status (or the watchdog) says why
                process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            finally:
                watchdog.cancel()
            if expired.is_set():
                raise RenderError(f"MP3 encoding timed out after {timeout:g} s")
            if process.returncode != 0:
                errors.seek(0)
                detail = errors.read().decode(errors="replace").strip().splitlines()
                reason = detail[-1] if detail else f"exit status {process.returncode}"
                raise RenderError(f"MP3 encoding failed: {reason}")
        os.replace(partial, mp3_path)
    finally:
        partial.unlink(missing_ok=True)
