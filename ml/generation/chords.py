"""Chord progressions a musician types: chord names (`C Am F G7`) or Roman numerals in the key (`I vi IV V7`).

Written one chord per bar (`C Am F G7`), or in bars with two chords each split evenly (`| C G | Am F |`),
and either for the whole piece (repeated bar by bar) or per phrase letter of the form
(`A: C Am F G7; B: F G C C`). music21 reads the symbols; this module turns them into pitch-class
sets on the plan's bars and says, per bad symbol, what is wrong with it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ml.data.notes import PITCH_CLASS_NAMES, estimate_key_from_histogram, major_or_minor

MAX_CHORD_BARS = 64
_ROMAN = re.compile(r"^[b#♭♯]?(?:[iI][vV]|[vV][iI]{0,3}|[iI]{1,3})")
_NAME = re.compile(r"^([A-Ga-g])([#b♯♭]?)(.*?)(?:/([A-Ga-g])([#b♯♭]?))?$")


class ChordError(ValueError):
    """A progression that cannot be read; the message names each bad symbol."""


@dataclass(frozen=True)
class Chord:
    symbol: str  # as the user wrote it
    root: int  # pitch class
    bass: int  # pitch class of the written bass (the root unless a slash chord or an inversion)
    tones: frozenset[int]  # pitch classes

    def to_dict(self) -> dict[str, object]:
        return {"symbol": self.symbol, "root": PITCH_CLASS_NAMES[self.root], "bass": PITCH_CLASS_NAMES[self.bass],
                "tones": sorted(self.tones)}

    @property
    def triad(self) -> frozenset[int]:
        """The root, third and fifth: the tones a listener names the chord by (a seventh or a ninth
        adds colour; a suspended chord's second or fourth stands for its third)."""
        above = {(pc - self.root) % 12 for pc in self.tones}
        thirds = above & {3, 4} or above & {2, 5}
        return frozenset((self.root + i) % 12 for i in {0} | thirds | (above & {6, 7, 8}))


@dataclass(frozen=True)
class Progression:
    """Bars of chords, for the whole piece (`by_letter` empty) or per phrase letter."""

    bars: tuple[tuple[Chord, ...], ...]
    by_letter: dict[str, tuple[tuple[Chord, ...], ...]]
    text: str

    def bar_chords(self, letter: str | None, bar_in_phrase: int, bar: int) -> tuple[Chord, ...]:
        """The chords of a bar: the letter's own progression by the bar's place in its phrase, or
        the piece's progression by the bar's number (both repeated when they run out)."""
        own = self.by_letter.get(letter or "")
        if own:
            return own[bar_in_phrase % len(own)]
        if self.bars:
            return self.bars[bar % len(self.bars)]
        return ()

    @property
    def all_chords(self) -> list[Chord]:
        bars = list(self.bars) + [b for bars in self.by_letter.values() for b in bars]
        return [chord for bar in bars for chord in bar]

    @property
    def uses_numerals(self) -> bool:
        return any(_ROMAN.match(chord.symbol) and not _NAME.match(chord.symbol) for chord in self.all_chords)


def _music21_name(token: str) -> str:
    """A chord name as music21 spells it: flats as '-' (Bb -> B-), sharps as '#'."""
    match = _NAME.match(token)
    if match is None:
        raise ValueError("does not start with a note name A to G")
    root, accidental, kind, bass, bass_accidental = match.groups()

    def note(letter: str, sign: str) -> str:
        return letter.upper() + {"b": "-", "♭": "-", "#": "#", "♯": "#", "": ""}[sign]

    kind = kind.replace("min", "m").replace("Δ", "maj7").replace("°", "dim").replace("ø", "m7b5")
    return note(root, accidental) + kind + (f"/{note(bass, bass_accidental or '')}" if bass else "")


@lru_cache(maxsize=512)
def parse_chord(token: str, tonic: int | None, mode: str = "major") -> Chord:
    """One chord symbol or Roman numeral; ValueError says why not. Numerals need `tonic`."""
    from music21 import harmony, key, roman

    text = token.strip()
    if not text:
        raise ValueError("is empty")
    if _ROMAN.match(text) and not _NAME.match(text):
        if tonic is None:
            raise ValueError("is a Roman numeral, which needs a key: choose a key, or write chord names "
                             "such as C Am F G7")
        figure = text.replace("♭", "b").replace("♯", "#").replace("°", "o").replace("ø", "/o")
        try:
            numeral = roman.RomanNumeral(figure, key.Key(PITCH_CLASS_NAMES[tonic].replace("b", "-"),
                                                         major_or_minor(mode)))
        except Exception:  # music21 raises several private exception types for bad figures
            raise ValueError("is not a Roman numeral music21 can read (such as I, vi, IV, V7, ii6, V/V)") from None
        pitches = numeral.pitches
        if not pitches:
            raise ValueError("is not a Roman numeral music21 can read")
        root, bass = numeral.root().pitchClass, numeral.bass().pitchClass
    else:
        try:
            symbol = harmony.ChordSymbol(_music21_name(text))
            pitches = symbol.pitches
            root, bass = symbol.root().pitchClass, symbol.bass().pitchClass
        except Exception as exc:  # music21's own errors name the bad part of the symbol
            reason = str(exc) if isinstance(exc, ValueError) and "begin" not in str(exc) else ""
            raise ValueError("is not a chord name such as C, Am, F#m7b5, Bb7 or C/E"
                             + (f" ({reason})" if reason and len(reason) < 120 else "")) from None
        if not pitches:
            raise ValueError("is not a chord name such as C, Am, F#m7b5, Bb7 or C/E")
    return Chord(symbol=text, root=int(root), bass=int(bass), tones=frozenset(int(p.pitchClass) for p in pitches))


def parse_progression(text: str, *, tonic: int | None, mode: str = "major") -> Progression:
    """Read a progression; ChordError names every bad symbol with its bar."""
    errors: list[str] = []
    sections = [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]
    if not sections:
        raise ChordError("Write at least one chord, such as C Am F G7.")
    whole: tuple[tuple[Chord, ...], ...] = ()
    by_letter: dict[str, tuple[tuple[Chord, ...], ...]] = {}
    for section in sections:
        letter_match = re.match(r"^([A-Ha-h])\s*:\s*(.*)$", section)
        body = letter_match.group(2) if letter_match else section
        if "|" in body:
            bar_texts = [bar.split() for bar in body.split("|") if bar.strip()]
        else:
            bar_texts = [[token] for token in body.split()]
        if not bar_texts:
            errors.append(f"Phrase {letter_match.group(1).upper()} has no chords." if letter_match
                          else "Write at least one chord, such as C Am F G7.")
            continue
        if len(bar_texts) > MAX_CHORD_BARS:
            errors.append(f"At most {MAX_CHORD_BARS} bars of chords; this has {len(bar_texts)}.")
            continue
        bars = []
        for number, tokens in enumerate(bar_texts, start=1):
            if len(tokens) > 2:
                errors.append(f"Bar {number} has {len(tokens)} chords: at most two per bar (a chord per half bar).")
                continue
            chords = []
            for token in tokens:
                try:
                    chords.append(parse_chord(token, tonic, mode))
                except ValueError as exc:
                    where = f"phrase {letter_match.group(1).upper()}, " if letter_match else ""
                    errors.append(f"{token!r} ({where}bar {number}) {exc}.")
            bars.append(tuple(chords))
        if letter_match:
            by_letter[letter_match.group(1).upper()] = tuple(bars)
        elif whole:
            errors.append("Give the chords for the whole piece once, or per phrase as 'A: C F G C; B: ...'.")
        else:
            whole = tuple(bars)
    if errors:
        raise ChordError(" ".join(errors))
    return Progression(bars=whole, by_letter=by_letter, text=text.strip())


def progression_key(progression: Progression) -> tuple[int, str]:
    """The key a progression suggests: Krumhansl-Schmuckler over its chord tones, the first and last
    chords (where a progression states and confirms its tonic) counting double."""
    chords = progression.all_chords
    histogram = np.zeros(12)
    for i, chord in enumerate(chords):
        weight = 2.0 if i in (0, len(chords) - 1) else 1.0
        for pc in chord.tones:
            histogram[pc] += weight
        histogram[chord.root] += weight
    return estimate_key_from_histogram(histogram)


@dataclass(frozen=True)
class ChordSpan:
    start: float  # beats from the plan's start
    end: float
    chord: Chord


def chord_spans(progression: Progression, *, phrase_letters: list[tuple[str, float, float]], bar_beats: float,
                total_beats: float) -> list[ChordSpan]:
    """The chord of every stretch of the piece: a bar's one chord, or its two halves'.

    `phrase_letters` holds (letter, start beat, end beat) per phrase of the form plan.
    """
    spans: list[ChordSpan] = []
    bars = max(1, math.ceil(total_beats / bar_beats - 1e-9))
    for bar in range(bars):
        start = bar * bar_beats
        letter, first = next(((letter, s) for letter, s, e in phrase_letters if s - 1e-9 <= start < e - 1e-9),
                             (None, 0.0))
        chords = progression.bar_chords(letter, int(round((start - first) / bar_beats)), bar)
        if not chords:
            continue
        part = bar_beats / len(chords)
        for k, chord in enumerate(chords):
            spans.append(ChordSpan(start=start + k * part, end=start + (k + 1) * part, chord=chord))
    return spans


def span_at(spans: list[ChordSpan], beat: float) -> ChordSpan | None:
    for span in spans:
        if span.start - 1e-9 <= beat < span.end - 1e-9:
            return span
    return spans[-1] if spans and beat >= spans[-1].end - 1e-9 else None
