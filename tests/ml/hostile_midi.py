"""MIDI files, hostile and ordinary, built byte by byte so that each says exactly what it claims."""

from __future__ import annotations

import io
import struct

import mido


def header(fmt: int = 1, tracks: int = 1, division: int = 480) -> bytes:
    return b"MThd" + struct.pack(">IHHh", 6, fmt, tracks, division)


def track(body: bytes) -> bytes:
    return b"MTrk" + struct.pack(">I", len(body)) + body


def varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


END = b"\x00\xff\x2f\x00"
NOTES = b"".join(b"\x00\x90" + bytes([60 + i, 80]) + b"\x83\x60\x80" + bytes([60 + i, 0]) for i in range(4))


def ordinary(**kwargs: int) -> bytes:
    return header(**kwargs) + track(NOTES + END)


def long_but_allowed() -> bytes:
    """Within every cap (about 9 minutes), but pretty_midi keeps an array entry per tick: 8 MB."""
    return header(division=960) + track(b"\x00\x90\x3c\x40" + varlen(1_000_000) + b"\x80\x3c\x00" + END)


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """name -> (file, words the refusal must contain)."""
    sysex = b"\x00\xf0" + varlen(200_000) + b"\x01" * 200_000 + b"\xf7"
    return {
        "tempo 0": (header() + track(b"\x00\xff\x51\x03\x00\x00\x00" + NOTES + END), "tempo of zero"),
        "ticks per beat 0": (header(division=0) + track(NOTES + END), "ticks per beat"),
        "ticks per beat negative (SMPTE)": (header(division=-7720) + track(NOTES + END), "ticks per beat"),
        "zero tracks": (header(tracks=0), "no tracks"),
        "an empty track": (header() + track(b""), "no notes"),
        "truncated": (ordinary()[:-9], "truncated"),
        "invalid key signature": (header() + track(b"\x00\xff\x59\x02\x0c\x05" + NOTES + END), "key signature"),
        "HTML renamed .mid": (b"<!doctype html><html><body>hello</body></html>", "not a MIDI file"),
        "PNG renamed .mid": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a MIDI file"),
        "a tick near 1e7": (header(division=96) + track(b"\x00\x90\x3c\x40" + varlen(10_000_000)
                                                        + b"\x80\x3c\x00" + END), "lasts"),
        # The slowest tempo there is, and the longest delta time: 44 bytes that last 17 years.
        "45 bytes that claim years": (header(division=1) + track(b"\x00\xff\x51\x03\xff\xff\xff\x00\x90\x3c\x40"
                                                                 b"\x8f\xff\xff\x7f\x80\x3c\x00" + END), "years"),
        "thousands of tracks": (header(tracks=5000) + track(NOTES + END) * 5000, "tracks"),
        "a huge SysEx": (header() + track(sysex + NOTES + END), "system-exclusive"),
        "no notes": (header() + track(b"\x00\xff\x51\x03\x07\xa1\x20" + END), "no notes"),
        "data without status": (header() + track(b"\x00\x3c\x40" + END), "corrupt"),
        "five-byte length": (header() + track(b"\x81\x81\x81\x81\x01\x90\x3c\x40" + END), "corrupt"),
    }


def real_files() -> dict[str, bytes]:
    """Files that are fine: type 0 and 1, running status, several tempos, drums alongside."""
    files: dict[str, bytes] = {}
    for fmt in (0, 1):
        mid = mido.MidiFile(type=fmt, ticks_per_beat=480)
        conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000),
                                    mido.MetaMessage("time_signature", numerator=3, denominator=4),
                                    mido.MetaMessage("key_signature", key="Bb"),
                                    mido.MetaMessage("set_tempo", tempo=400_000, time=960)])
        tune = mido.MidiTrack([mido.Message("program_change", program=40)])
        drums = mido.MidiTrack()
        for i in range(8):
            tune += [mido.Message("note_on", note=62 + i, velocity=80), mido.Message("note_on", note=62 + i,
                                                                                     velocity=0, time=240)]
            drums += [mido.Message("note_on", channel=9, note=42, velocity=70),
                      mido.Message("note_off", channel=9, note=42, time=240)]
        tracks = [conductor, tune, drums]
        if fmt == 0:
            mid.tracks.append(mido.merge_tracks(tracks))
        else:
            mid.tracks.extend(tracks)
        buffer = io.BytesIO()
        mid.save(file=buffer)  # note_on with velocity 0 in a row: running status
        files[f"type {fmt}, two tempos, drums, running status"] = buffer.getvalue()
    files["hand-written running status"] = header(fmt=0) + track(
        b"\x00\x90\x3c\x40" + b"\x83\x60\x3c\x00" + b"\x00\x3e\x40" + b"\x83\x60\x3e\x00" + END
    )
    return files
