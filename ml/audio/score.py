"""The piece as sheet music: MusicXML written by music21 from the arrangement's voices, engraved as
SVG by Verovio.

    score = engrave(arrangement)          # raises ScoreError with a reason a user can read
    Path("piece.musicxml").write_text(score.musicxml)
    Path("piece.svg").write_text(score.svg)

    score = engrave_apart(arrangement, timeout=60)  # the same in a child process, under a time limit

A worker engraves apart: music21 and Verovio then cannot hold it past its time limit or take its
memory, and what they raise ends as "no score for this piece" with the reason.

Each voice is a staff with the clef its range asks for (a tenor on the octave treble clef, a viola
on the alto clef, a cello or bass on the bass clef), the key and time signature, and note values
read from a grid of sixteenths and triplet eighths. `bar_times` gives where each bar starts in
seconds, so that a page can light up the bar being played.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.data.notes import spell_pitch_class, tonic_name

if TYPE_CHECKING:
    from ml.audio.arrangement import Arrangement, Part

FILES = ("score.musicxml", "score.svg", "score.json")

# A score of more notes than this is not engraved (a 10-minute quartet has about 6,000): its page
# would take longer to draw than a listener waits, and longer to read than to hear.
MOST_NOTES = 12000
# Onsets and lengths are read on this grid of quarter notes: sixteenths and triplet eighths.
GRID_DIVISORS = (4, 3)
PAGE_WIDTH = 2100  # Verovio's units (tenths of a millimetre at scale 100)
SCALE = 40
# Verovio writes one page at most this tall; a longer score goes on several, stacked in one SVG.
PAGE_HEIGHT = 60000


class ScoreError(ValueError):
    """No score for this piece; the message says why, for the user."""


@dataclass(frozen=True)
class Score:
    musicxml: str
    svg: str
    bars: int
    staves: int
    bar_times: list[float]  # seconds where each bar starts


def engrave(arrangement: Arrangement, *, title: str = "") -> Score:
    """MusicXML and an SVG of the whole piece (see the module's docstring); ScoreError says why not."""
    notes = sum(len(part.notes) for part in arrangement.parts)
    if notes == 0:
        raise ScoreError("The piece has no notes to write down.")
    if notes > MOST_NOTES:
        raise ScoreError(f"The piece has {notes} notes; scores are written for pieces of up to {MOST_NOTES}.")
    try:
        score, bars, bar_times = _music21_score(arrangement, title)
        musicxml = _musicxml(score)
    except ScoreError:
        raise
    except Exception as exc:  # music21 raises many kinds on odd rhythms; the piece plays all the same
        raise ScoreError(f"The notes could not be written as a score ({type(exc).__name__}: {exc}).") from exc
    svg = render_svg(musicxml, title=title)
    return Score(musicxml=musicxml, svg=svg, bars=bars, staves=len(score.parts), bar_times=bar_times)


# The clef each named voice is written in; another voice gets treble or bass by its range.
VOICE_CLEFS = {"Soprano": "treble", "Alto": "treble", "Tenor": "treble8vb", "Bass": "bass",
               "Violin I": "treble", "Violin II": "treble", "Viola": "alto", "Cello": "bass",
               "Cantus": "treble", "Altus": "treble", "Bassus": "bass"}


ABBREVIATIONS = {"Soprano": "S.", "Alto": "A.", "Tenor": "T.", "Bass": "B.", "Violin I": "Vln. I",
                 "Violin II": "Vln. II", "Viola": "Vla.", "Cello": "Vc.", "Cantus": "C.", "Altus": "A.",
                 "Bassus": "B.", "Melody": "", "Accompaniment": "Acc."}


def _clef_for(name: str, pitches: np.ndarray) -> Any:
    from music21 import clef

    kind = VOICE_CLEFS.get(name)
    if kind is None:
        kind = "bass" if len(pitches) and float(np.median(pitches)) < 57 else "treble"
    return {"treble": clef.TrebleClef, "treble8vb": clef.Treble8vbClef, "alto": clef.AltoClef,
            "bass": clef.BassClef}[kind]()


def _instrument_for(part: Part) -> Any:
    from music21 import instrument

    try:
        chosen = instrument.instrumentFromMidiProgram(int(part.program))
    except Exception:  # a program music21 has no class for
        chosen = instrument.Instrument()
        chosen.midiProgram = int(part.program)
    chosen.partName = part.name
    chosen.partAbbreviation = ABBREVIATIONS.get(part.name, part.name[:3] + ".")
    return chosen


def _quantise(values: np.ndarray) -> list[Fraction]:
    """Quarter lengths moved to the nearest point of the grid (sixteenths or triplet eighths)."""
    out = []
    for value in values:
        best = min((Fraction(round(float(value) * d), d) for d in GRID_DIVISORS),
                   key=lambda f: abs(float(f) - float(value)))
        out.append(best)
    return out


def _music21_score(arrangement: Arrangement, title: str) -> tuple[Any, int, list[float]]:
    from music21 import chord, key, metadata, meter, note, stream, tempo

    head = arrangement.notes
    bpm = float(head.tempo_bpm)
    numerator, denominator = head.time_signature
    bar_ql = Fraction(numerator * 4, denominator)
    phase = Fraction(round(float(head.bar_phase) * 12), 12) % bar_ql
    spell = arrangement.key
    score = stream.Score()
    # music21 calls an untitled score "Music21 Fragment": the title is the piece's, or none.
    score.metadata = metadata.Metadata(title=title, movementName=title)
    end = Fraction(0)
    parts = []
    for index, part in enumerate(arrangement.parts):
        seq = part.notes
        onsets = _quantise(np.asarray(seq.start, dtype=np.float64) * bpm / 60.0)
        lengths = _quantise(np.asarray(seq.duration, dtype=np.float64) * bpm / 60.0)
        voice = stream.Part()
        voice.insert(0, _instrument_for(part))
        voice.insert(0, _clef_for(part.name, np.asarray(seq.pitch)))
        if spell is not None:
            voice.insert(0, key.Key(tonic_name(*spell).replace("b", "-"), "minor" if spell[1] == "minor" else "major"))
        voice.insert(0, meter.TimeSignature(f"{numerator}/{denominator}"))
        if index == 0:
            voice.insert(0, tempo.MetronomeMark(number=round(bpm)))
        # One line per staff: notes that start together are a chord; a note lasts until the next onset
        # of its voice at most (a held note under a moving one is written as tied notes of the voice).
        by_onset: dict[Fraction, list[int]] = {}
        for i, onset in enumerate(onsets):
            by_onset.setdefault(onset, []).append(i)
        starts = sorted(by_onset)
        for k, onset in enumerate(starts):
            members = by_onset[onset]
            length = max(lengths[i] for i in members)
            if k + 1 < len(starts):
                length = min(length, starts[k + 1] - onset)
            length = max(length, Fraction(1, 12))
            pitches = sorted({int(seq.pitch[i]) for i in members})
            names = [_pitch_name(p, spell) for p in pitches]
            element = note.Note(names[0]) if len(names) == 1 else chord.Chord(names)
            element.quarterLength = length
            element.volume.velocity = int(max(seq.velocity[i] for i in members))
            voice.insert(onset + phase, element)
            end = max(end, onset + phase + length)
        parts.append(voice)
    bars = max(1, -(-end // bar_ql))
    for voice in parts:
        voice.makeRests(fillGaps=True, inPlace=True, refStreamOrTimeRange=[0, bars * bar_ql],
                        timeRangeFromBarDuration=False)
        made = voice.makeMeasures()
        made.makeTies(inPlace=True)
        if phase:
            first = made.getElementsByClass(stream.Measure).first()
            if first is not None:
                first.number = 0  # a pickup bar is bar 0
        score.insert(0, made)
    seconds_per_ql = 60.0 / bpm
    bar_times = [float((b * bar_ql - phase) * Fraction(seconds_per_ql)) for b in range(int(bars))]
    return score, int(bars), [max(0.0, round(t, 3)) for t in bar_times]


def _pitch_name(pitch: int, spell: tuple[int, str] | None) -> str:
    """music21's name of a MIDI pitch, spelled in the key where there is one ("A#4" in B minor)."""
    if spell is None:
        from music21 import pitch as m21pitch

        return str(m21pitch.Pitch(midi=pitch).nameWithOctave)
    name = spell_pitch_class(pitch % 12, *spell)
    natural = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}[name[0]]
    alter = name.count("#") - name.count("b")
    octave = (pitch - natural - alter) // 12 - 1
    return name.replace("b", "-") + str(octave)


def _musicxml(score: Any) -> str:
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    data = GeneralObjectExporter(score).parse()
    return data.decode("utf-8") if isinstance(data, bytes) else str(data)


def render_svg(musicxml: str, *, title: str = "") -> str:
    """Verovio's engraving of `musicxml`: every page, one above the other, in one SVG document (a
    title above the first where one is given)."""
    import verovio

    toolkit = verovio.toolkit()
    toolkit.setOptions({
        "pageWidth": PAGE_WIDTH, "pageHeight": PAGE_HEIGHT, "adjustPageHeight": True, "scale": SCALE,
        "breaks": "auto", "footer": "none", "header": "auto" if title else "none", "svgViewBox": True,
        "svgHtml5": True,
        "mnumInterval": 1,
    })
    if not toolkit.loadData(musicxml):
        raise ScoreError("The score could not be engraved.")
    pages = [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]
    if len(pages) == 1:
        return pages[0]
    return _stack(pages)


def _stack(pages: list[str]) -> str:
    """Several SVG pages as one document, each below the one before."""
    y, inner, width = 0.0, [], 0.0
    for page in pages:
        box = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', page)
        w, h = (float(box.group(1)), float(box.group(2))) if box else (PAGE_WIDTH * 10.0, PAGE_HEIGHT * 10.0)
        body = re.sub(r"^<\?xml[^>]*>\s*", "", page)
        body = re.sub(r"<svg ", f'<svg y="{y}" ', body, count=1)
        inner.append(body)
        y += h
        width = max(width, w)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {y}" '
            f'width="100%">{"".join(inner)}</svg>')


def engrave_apart(arrangement: Arrangement, *, title: str = "", timeout: float = 60.0) -> Score:
    """`engrave` in a child process (`python -m ml.audio.score`), killed after `timeout` seconds."""
    from ml.audio.arrangement import arrangement_to_dict

    with tempfile.TemporaryDirectory(prefix="musicgen-score-") as tmp:
        folder = Path(tmp)
        (folder / "arrangement.json").write_text(json.dumps(arrangement_to_dict(arrangement)))
        command = [sys.executable, "-m", "ml.audio.score", str(folder), "--title", title]
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ScoreError(f"Engraving the score took longer than {timeout:g} s.") from exc
        except OSError as exc:
            raise ScoreError(f"The engraver could not be started ({exc}).") from exc
        reason = folder / "error.txt"
        if reason.is_file():
            raise ScoreError(reason.read_text())
        if result.returncode != 0 or not all((folder / name).is_file() for name in FILES):
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise ScoreError(f"The engraver failed{': ' + tail[0] if tail else ''}.")
        meta = json.loads((folder / "score.json").read_text())
        return Score(musicxml=(folder / "score.musicxml").read_text(), svg=(folder / "score.svg").read_text(),
                     **meta)


def main(argv: list[str] | None = None) -> int:
    """Engrave `FOLDER/arrangement.json` into score.musicxml, score.svg and score.json there (or
    error.txt with the reason there is no score)."""
    from ml.audio.arrangement import arrangement_from_dict

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    arrangement = arrangement_from_dict(json.loads((args.folder / "arrangement.json").read_text()))
    try:
        score = engrave(arrangement, title=args.title)
    except ScoreError as exc:
        (args.folder / "error.txt").write_text(str(exc))
        return 0
    (args.folder / "score.musicxml").write_text(score.musicxml)
    (args.folder / "score.svg").write_text(score.svg)
    meta = {k: v for k, v in asdict(score).items() if k not in ("musicxml", "svg")}
    (args.folder / "score.json").write_text(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
