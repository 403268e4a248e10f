"""A piece as players see it: its voices, each a track with a name and an instrument, and the file
that carries them (tempo, time signature, key signature, a room to play in).

    arrangement = arrange(piece.notes, style="string-quartet", key=(2, "minor"))
    arrangement.to_midi().write("piece.mid")

The voices come from `ml.generation.voices.assign_voices` (no voice crosses another; every note in
one voice). Each style has its own instruments (a chorale is sung, a quartet is played by two
violins, a viola and a cello); a request may give one instrument for every voice, or one per voice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pretty_midi

from ml.data.notes import NoteSequence
from ml.generation.voices import VOICE_NAMES, VOICE_RANGES, assign_voices, voice_names

# General MIDI programs (0-based) per voice, from the top voice down.
STYLE_PROGRAMS: dict[str, tuple[int, ...]] = {
    "chorale": (52, 52, 52, 52),  # choir aahs: soprano, alto, tenor, bass
    "string-quartet": (40, 40, 41, 42),  # violin I, violin II, viola, cello
    "renaissance": (74, 74, 74, 74),  # a recorder consort
    "fiddle": (110,),  # fiddle
    "folk": (73,),  # flute
}
ACCOMPANIMENT_NAME = "Accompaniment"
# How much of each track goes to the SoundFont's reverb and chorus (MIDI controllers 91 and 93, 0..127):
# a church for the choir, a hall for the strings and winds.
REVERB_SEND = {"chorale": 90, "string-quartet": 70, "renaissance": 75}
CHORUS_SEND = {"chorale": 25, "string-quartet": 15}
DEFAULT_REVERB_SEND = 60
PAN_WIDTH = 40  # the voices spread over this many pan steps either side of the middle, top voice left
REVERB, CHORUS, PAN = 91, 93, 10
_GM_NAMES = {re.sub(r"[^a-z0-9]", "", pretty_midi.program_to_instrument_name(p).lower()): p for p in range(128)}


class InstrumentError(ValueError):
    """An instrument list that cannot be read; the message says which entry and why."""


def parse_instruments(text: str) -> tuple[int, ...]:
    """General MIDI programs from "Violin, Violin, Viola, Cello" or "40 40 41 42" (names or numbers
    0-127, separated by commas or spaces between numbers), in the order given."""
    entries = [entry.strip() for entry in re.split(r",|;", text) if entry.strip()]
    if len(entries) == 1 and re.fullmatch(r"\d+(\s+\d+)+", entries[0]):
        entries = entries[0].split()
    if not entries:
        raise InstrumentError("Name at least one instrument.")
    programs = []
    for entry in entries:
        if entry.isdigit():
            if not 0 <= int(entry) <= 127:
                raise InstrumentError(f"Instrument {entry} is not a General MIDI program between 0 and 127.")
            programs.append(int(entry))
            continue
        program = _GM_NAMES.get(re.sub(r"[^a-z0-9]", "", entry.lower()))
        if program is None:
            raise InstrumentError(f"{entry!r} is not a General MIDI instrument name (such as Violin, Cello, "
                                  "Flute, Choir Aahs, Church Organ, Acoustic Grand Piano) or number.")
        programs.append(program)
    return tuple(programs)


def style_voices(style: str) -> int | None:
    """How many voices a piece of `style` has, or None for a style this code does not know."""
    names = VOICE_NAMES.get(style)
    return len(names) if names is not None else None


@dataclass(frozen=True)
class Part:
    name: str
    program: int
    notes: NoteSequence


@dataclass(frozen=True)
class Arrangement:
    """The tracks of a piece, from the top voice down (an accompaniment last), and its key."""

    parts: tuple[Part, ...]
    key: tuple[int, str] | None = None  # tonic pitch class and mode, for the key signature
    style: str = ""
    # The voice of each note of the notes it was made from (0: the top voice), for the piano roll.
    voice_of: tuple[int, ...] = ()

    @property
    def voice_names(self) -> list[str]:
        """The voices' names, from the top down (no accompaniment)."""
        return [part.name for part in self.parts if part.name != ACCOMPANIMENT_NAME]

    @property
    def notes(self) -> NoteSequence:
        """The first part's notes carry the piece's tempo and metre."""
        return self.parts[0].notes

    def to_midi(self) -> pretty_midi.PrettyMIDI:
        """Type-1 MIDI: a named track per part with its program, pan, reverb and chorus, the tempo,
        the time signature(s) and the key signature."""
        head = self.notes
        pm = pretty_midi.PrettyMIDI(initial_tempo=float(head.tempo_bpm))
        signatures = head.time_signatures or [(0.0, *head.time_signature)]
        for time, numerator, denominator in signatures:
            pm.time_signature_changes.append(pretty_midi.TimeSignature(int(numerator), int(denominator), float(time)))
        if self.key is not None:
            pm.key_signature_changes.append(pretty_midi.KeySignature(key_signature_number(*self.key), 0.0))
        voices = [p for p in self.parts if p.name != ACCOMPANIMENT_NAME]
        for part in self.parts:
            inst = pretty_midi.Instrument(program=int(part.program), name=part.name)
            if len(voices) > 1 and part in voices:
                pan = 64 - PAN_WIDTH + round(2 * PAN_WIDTH * voices.index(part) / (len(voices) - 1))
            else:
                pan = 64 + (PAN_WIDTH // 2 if part.name == ACCOMPANIMENT_NAME else 0)
            inst.control_changes += [
                pretty_midi.ControlChange(PAN, int(pan), 0.0),
                pretty_midi.ControlChange(REVERB, REVERB_SEND.get(self.style, DEFAULT_REVERB_SEND), 0.0),
                pretty_midi.ControlChange(CHORUS, CHORUS_SEND.get(self.style, 0), 0.0),
            ]
            notes = part.notes
            for onset, pitch, duration, velocity in zip(notes.start, notes.pitch, notes.duration, notes.velocity):
                inst.notes.append(pretty_midi.Note(velocity=int(np.clip(velocity, 1, 127)), pitch=int(pitch),
                                                   start=float(onset), end=float(onset + duration)))
            pm.instruments.append(inst)
        return pm


def key_signature_number(tonic: int, mode: str) -> int:
    """pretty_midi's key number (0-11 major, 12-23 minor); a church mode gets the signature of its
    notes (D dorian has C major's, G mixolydian C major's)."""
    if mode == "minor":
        return 12 + tonic % 12
    shift = {"dorian": -2, "mixolydian": 5}.get(mode, 0)
    return (tonic + shift) % 12


def programs_for(style: str, voices: int, *, instrument: int | None = None,
                 instruments: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The program of each voice, from the top down: the list asked for (one entry serves every voice),
    else one instrument for all, else the style's own (a piano for a style without instruments)."""
    if instruments:
        if len(instruments) == 1:
            return instruments * voices
        # A list of another length (a style this code does not know): the last entry plays the rest.
        return tuple((list(instruments) + [instruments[-1]] * voices)[:voices])
    if instrument is not None:
        return (int(instrument),) * voices
    own = STYLE_PROGRAMS.get(style)
    if own is not None and len(own) == voices:
        return own
    return (own[0] if own else 0,) * voices


def _part(notes: NoteSequence, keep: np.ndarray, name: str, program: int) -> Part:
    chosen = np.flatnonzero(keep)
    return Part(name=name, program=program, notes=NoteSequence.from_notes(
        start=notes.start[chosen], pitch=notes.pitch[chosen], duration=notes.duration[chosen],
        velocity=notes.velocity[chosen], tempo_bpm=notes.tempo_bpm, time_signature=notes.time_signature,
        program=program))


def arrange(notes: NoteSequence, *, style: str, key: tuple[int, str] | None = None,
            accompaniment: NoteSequence | None = None, instrument: int | None = None,
            instruments: tuple[int, ...] | None = None) -> Arrangement:
    """Split `notes` into the style's voices, each on its instrument (`programs_for`), with an
    accompaniment on a track of its own. A style this code does not know gets as many voices as
    notes sound at once (at most four)."""
    voices = style_voices(style) or _polyphony(notes)
    if not len(notes):
        voices = 1
    ranges = VOICE_RANGES.get(style)
    which = assign_voices(notes, voices, ranges if ranges and len(ranges) == voices else None) \
        if voices > 1 else np.zeros(len(notes), dtype=np.int64)
    names = voice_names(style, voices) if voices > 1 else (VOICE_NAMES.get(style, ("Melody",))[0],)
    programs = programs_for(style, voices, instrument=instrument, instruments=instruments)
    parts = []
    for rank in range(voices):  # from the top voice down; assign_voices counts from the lowest
        voice = voices - 1 - rank
        parts.append(_part(notes, which == voice, names[voice], programs[rank]))
    head = parts[0].notes
    parts[0] = Part(parts[0].name, parts[0].program, _with_meta(head, notes))
    if accompaniment is not None and len(accompaniment):
        parts.append(Part(ACCOMPANIMENT_NAME, int(accompaniment.program), accompaniment))
    return Arrangement(parts=tuple(parts), key=key, style=style,
                       voice_of=tuple(int(voices - 1 - v) for v in which))


def _with_meta(part: NoteSequence, piece: NoteSequence) -> NoteSequence:
    """`part` carrying the piece's tempo map and time signatures."""
    return NoteSequence(pitch=part.pitch, step=part.step, duration=part.duration, velocity=part.velocity,
                        tempo_bpm=piece.tempo_bpm, time_signature=piece.time_signature, program=part.program,
                        tempo_changes=list(piece.tempo_changes), time_signatures=list(piece.time_signatures),
                        bar_phase=piece.bar_phase, phrase_ends=list(piece.phrase_ends))


def _polyphony(notes: NoteSequence) -> int:
    """The most notes that start together, at most four."""
    if not len(notes):
        return 1
    _, counts = np.unique(np.round(notes.start, 4), return_counts=True)
    return int(min(4, counts.max()))


def arrangement_to_dict(arrangement: Arrangement) -> dict[str, Any]:
    """The arrangement as JSON values (to hand to another process)."""
    def notes(seq: NoteSequence) -> dict[str, Any]:
        return {"start": seq.start.tolist(), "pitch": seq.pitch.tolist(), "duration": seq.duration.tolist(),
                "velocity": seq.velocity.tolist(), "tempo_bpm": float(seq.tempo_bpm),
                "time_signature": list(seq.time_signature), "bar_phase": float(seq.bar_phase)}

    return {"style": arrangement.style, "key": list(arrangement.key) if arrangement.key else None,
            "parts": [{"name": p.name, "program": int(p.program), "notes": notes(p.notes)} for p in arrangement.parts]}


def arrangement_from_dict(data: dict[str, Any]) -> Arrangement:
    def notes(d: dict[str, Any]) -> NoteSequence:
        seq = NoteSequence.from_notes(start=np.asarray(d["start"], dtype=np.float64), pitch=np.asarray(d["pitch"]),
                                      duration=np.asarray(d["duration"]), velocity=np.asarray(d["velocity"]),
                                      tempo_bpm=d["tempo_bpm"], time_signature=tuple(d["time_signature"]))
        seq.bar_phase = float(d.get("bar_phase", 0.0))
        return seq

    key = data.get("key")
    return Arrangement(parts=tuple(Part(p["name"], int(p["program"]), notes(p["notes"])) for p in data["parts"]),
                       key=(int(key[0]), str(key[1])) if key else None, style=str(data.get("style", "")))
