"""Untrusted MIDI files: refuse what is hostile before any parser sees it, then parse in a sandbox.

A MIDI file is tiny and its header and events say how big the parsed result will be: a 45-byte
file can claim a delta time of years, a few megabytes can hold thousands of tracks, and
pretty_midi expands both into arrays and objects per tick or per track. `scan_midi` walks the
chunks and events in pure Python (linear in the file, no allocation per tick) and checks those
claims against `MidiLimits`. `parse_midi_isolated` then runs the real parser in a child process
with a CPU-time and address-space limit and a wall-clock timeout, so that a parser bug costs a
refused upload, not a web or worker process.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.data.notes import MidiError, NoteSequence

ROOT = Path(__file__).resolve().parents[2]  # the repository root, for `python -m ml.data.midi_check`


@dataclass(frozen=True)
class MidiLimits:
    """What an uploaded MIDI file may claim. Every limit is checked before the file is parsed."""

    max_bytes: int = 1024 * 1024
    max_tracks: int = 64
    max_seconds: float = 1200.0
    max_notes: int = 20_000
    max_sysex_bytes: int = 4096
    parse_seconds: float = 10.0  # the sandbox's CPU and wall-clock limit
    parse_memory_mb: int = 1024  # the sandbox's address space, on top of what Python needs

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_tracks", "max_seconds", "max_notes", "max_sysex_bytes", "parse_seconds",
                     "parse_memory_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MidiLimits.{name} must be positive")


@dataclass(frozen=True)
class MidiSummary:
    """What the scan found: enough to refuse a file, or to say what it holds."""

    format: int
    tracks: int
    ticks_per_beat: int
    notes: int
    seconds: float


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


class _Reader:
    """Bounds-checked reads over one chunk; running off its end means the file is truncated."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MidiError("The MIDI file is truncated (a track ends in the middle of an event).")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def skip(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise MidiError("The MIDI file is truncated (an event runs past the end of its track).")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def varlen(self) -> int:
        value = 0
        for _ in range(4):  # the standard caps variable-length quantities at four bytes
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise MidiError("The MIDI file is corrupt (a length or time field is too long).")


# Data bytes that follow each channel message's status byte (0x8n..0xEn).
_CHANNEL_DATA = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


def scan_midi(data: bytes, limits: MidiLimits = MidiLimits()) -> MidiSummary:
    """Check a MIDI file's structure and its claims against `limits`, without parsing it.

    Raises:
        MidiError: with a reason a person understands, for anything the site will not parse.
    """
    if len(data) > limits.max_bytes:
        raise MidiError(f"The MIDI file is larger than {_megabytes(limits.max_bytes)}.")
    if not data.startswith(b"MThd"):
        raise MidiError("This is not a MIDI file.")
    if len(data) < 14:
        raise MidiError("The MIDI file is truncated (its header is incomplete).")
    header_length = int.from_bytes(data[4:8], "big")
    if header_length < 6 or 8 + header_length > len(data):
        raise MidiError("The MIDI file is corrupt (its header has the wrong length).")
    fmt = int.from_bytes(data[8:10], "big")
    declared_tracks = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big", signed=True)
    if fmt not in (0, 1, 2):
        raise MidiError(f"The MIDI file has an unknown format ({fmt}).")
    if declared_tracks == 0:
        raise MidiError("The MIDI file has no tracks.")
    if declared_tracks > limits.max_tracks:
        raise MidiError(f"The MIDI file has {declared_tracks} tracks; at most {limits.max_tracks} are accepted.")
    if division <= 0:
        raise MidiError(
            "The MIDI file's timing is not in ticks per beat (SMPTE or zero): save it as a standard MIDI file."
        )

    pos = 8 + header_length
    tracks = notes = 0
    tempo_events: list[tuple[int, int]] = []  # (tick, microseconds per beat), from every track
    max_tick = 0
    while pos + 8 <= len(data) and tracks < declared_tracks:
        kind, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        body, pos = pos + 8, pos + 8 + length
        if pos > len(data):
            raise MidiError("The MIDI file is truncated (a track is shorter than it says).")
        if kind != b"MTrk":
            continue  # unknown chunks are allowed by the standard, and skipped
        tracks += 1
        track_notes, end_tick = _scan_track(_Reader(data, body, pos), limits, tempo_events)
        notes += track_notes
        max_tick = max(max_tick, end_tick)
        if notes > limits.max_notes:
            raise MidiError(f"The MIDI file has more than {limits.max_notes} notes.")
    if tracks < declared_tracks:
        raise MidiError(f"The MIDI file is truncated: it declares {declared_tracks} tracks but holds {tracks}.")
    seconds = _ticks_to_seconds(max_tick, division, tempo_events)
    if seconds > limits.max_seconds:
        raise MidiError(
            f"The MIDI file lasts {_duration_words(seconds)}; at most {limits.max_seconds / 60:g} minutes are accepted."
        )
    if notes == 0:
        raise MidiError("The MIDI file holds no notes.")
    return MidiSummary(format=fmt, tracks=tracks, ticks_per_beat=division, notes=notes, seconds=seconds)


def _scan_track(reader: _Reader, limits: MidiLimits, tempo_events: list[tuple[int, int]]) -> tuple[int, int]:
    """Walk one track's events; return (note-ons with a velocity, last tick)."""
    tick = notes = 0
    status = 0
    while reader.pos < reader.end:
        tick += reader.varlen()
        first = reader.byte()
        if first == 0xFF:  # meta event
            meta_type = reader.byte()
            payload = reader.skip(reader.varlen())
            if meta_type == 0x51:
                if len(payload) != 3:
                    raise MidiError("The MIDI file is corrupt (a tempo event has the wrong length).")
                tempo = int.from_bytes(payload, "big")
                if tempo == 0:
                    raise MidiError("The MIDI file sets a tempo of zero.")
                tempo_events.append((tick, tempo))
            elif meta_type == 0x59:
                if len(payload) != 2 or not (-7 <= int.from_bytes(payload[:1], "big", signed=True) <= 7) \
                        or payload[1] not in (0, 1):
                    raise MidiError("The MIDI file has an invalid key signature.")
            elif meta_type == 0x2F:
                break  # end of track
            status = 0  # running status does not survive meta or sysex events
        elif first in (0xF0, 0xF7):  # system exclusive
            length = reader.varlen()
            if length > limits.max_sysex_bytes:
                raise MidiError(f"The MIDI file has a system-exclusive message of {length} bytes; "
                                f"at most {limits.max_sysex_bytes} are accepted.")
            reader.skip(length)
            status = 0
        elif first >= 0xF0:
            raise MidiError(f"The MIDI file is corrupt (a system message 0x{first:02X} inside a track).")
        else:
            if first & 0x80:
                status, data_bytes = first, []
            elif status:
                data_bytes = [first]  # running status: the first data byte is already read
            else:
                raise MidiError("The MIDI file is corrupt (data without a status byte).")
            while len(data_bytes) < _CHANNEL_DATA[status >> 4]:
                data_bytes.append(reader.byte())
            if any(b & 0x80 for b in data_bytes):
                raise MidiError("The MIDI file is corrupt (a status byte where data was expected).")
            if status >> 4 == 0x9 and data_bytes[1] > 0:
                notes += 1
    return notes, tick


def _ticks_to_seconds(tick: int, division: int, tempo_events: list[tuple[int, int]]) -> float:
    """Seconds at `tick` under the tempo map (120 BPM until the first tempo event)."""
    seconds, last_tick, tempo = 0.0, 0, 500_000
    for at, new_tempo in sorted(tempo_events):
        if at >= tick:
            break
        seconds += (at - last_tick) * tempo / division / 1e6
        last_tick, tempo = at, new_tempo
    return seconds + (tick - last_tick) * tempo / division / 1e6


def _duration_words(seconds: float) -> str:
    if seconds >= 86400 * 365:
        return f"{seconds / (86400 * 365):,.0f} years"
    if seconds >= 86400:
        return f"{seconds / 86400:,.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} hours"
    return f"{seconds / 60:,.0f} minutes"


# -- the sandbox -----------------------------------------------------------------------------------


def _limit_self(cpu_seconds: float, memory_mb: int) -> None:  # pragma: no cover - runs in the child
    """Cap this process's CPU time, and its address space at what it has now plus `memory_mb`."""
    cpu = int(cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    memory = current + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def parse_midi_isolated(data: bytes, limits: MidiLimits = MidiLimits()) -> tuple[NoteSequence, MidiSummary]:
    """Scan, then parse `data` into notes in a child process with time and memory limits.

    Raises:
        MidiError: the file was refused by the scan, or the parser failed, ran out of time or memory.
    """
    summary = scan_midi(data, limits)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")}
    env["PYTHONPATH"] = str(ROOT)
    try:
        # The child limits itself once its imports are done (no preexec_fn: workers run threads).
        result = subprocess.run(
            [sys.executable, "-m", "ml.data.midi_check", str(limits.parse_seconds), str(limits.parse_memory_mb)],
            input=data, capture_output=True, timeout=limits.parse_seconds + 20, env=env, cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise MidiError("The MIDI file took too long to read.") from exc
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
        last = reason[-1] if reason else ""
        if last.startswith("MidiError: "):
            raise MidiError(last.removeprefix("MidiError: "))
        raise MidiError("The MIDI file could not be read (the reader ran out of time or memory).")
    return _decode(result.stdout), summary


def _encode(seq: NoteSequence) -> bytes:
    buffer = io.BytesIO()
    meta = json.dumps({
        "tempo_bpm": float(seq.tempo_bpm), "time_signature": [int(v) for v in seq.time_signature],
        "program": int(seq.program),
        "tempo_changes": [[float(t), float(b)] for t, b in seq.tempo_changes],
        "time_signatures": [[float(t), int(n), int(d)] for t, n, d in seq.time_signatures],
    })
    np.savez(buffer, pitch=seq.pitch, step=seq.step, duration=seq.duration, velocity=seq.velocity,
             meta=np.frombuffer(meta.encode(), dtype=np.uint8))
    return buffer.getvalue()


def _decode(payload: bytes) -> NoteSequence:
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        meta = json.loads(arrays["meta"].tobytes())
        return NoteSequence(
            pitch=arrays["pitch"], step=arrays["step"], duration=arrays["duration"], velocity=arrays["velocity"],
            tempo_bpm=float(meta["tempo_bpm"]), time_signature=tuple(meta["time_signature"]),
            program=int(meta["program"]),
            tempo_changes=[(float(t), float(b)) for t, b in meta["tempo_changes"]],
            time_signatures=[(float(t), int(n), int(d)) for t, n, d in meta["time_signatures"]],
        )


def _child(cpu_seconds: float, memory_mb: int) -> int:  # pragma: no cover - runs in the sandbox
    from ml.data.notes import notes_from_midi

    data = sys.stdin.buffer.read()
    _limit_self(cpu_seconds, memory_mb)
    try:
        seq = notes_from_midi(data)
    except MidiError as exc:
        print(f"MidiError: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(_encode(seq))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(float(sys.argv[1]), int(sys.argv[2])))
