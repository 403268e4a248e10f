"""Datasets: the music21 corpus grouped into styles, a MAESTRO download, or any folder of MIDI files.

Every source becomes a `NoteDataset`: the notes of all pieces concatenated into flat numpy
arrays, with per-piece metadata and a deterministic train/validation/test split by piece.
Datasets are cached as `.npz` files (no pickles) keyed by the source and the extractor version.
"""

from __future__ import annotations

import csv
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.dynamics import Markings, accent_of, beat_length, metric_accent, part_markings, velocities
from ml.data.notes import MidiError, NoteSequence, chord_labels, notes_from_midi, piece_key

# Bump when feature extraction changes, so stale caches are not reused.
# 8: a piece's key confirmed by its close (`piece_key`); 7: repeats written out; 6: velocities from written
# dynamics, hairpins, accents and the bar.
EXTRACTOR_VERSION = 8
SPLITS = ("train", "validation", "test")
MAX_PIECE_NOTES = 20000
MAX_PIECE_SECONDS = 3600.0

# Style -> (corpus folders, file suffixes, typical tempo in BPM). Scores without a metronome mark
# get the style's tempo, so that their seconds sound like the music.
CORPUS_STYLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], float]] = {
    "chorale": (("bach",), (".mxl", ".xml", ".krn"), 72.0),
    "renaissance": (("palestrina", "josquin", "monteverdi", "lusitano", "ciconia", "luca"),
                    (".krn", ".abc", ".mxl", ".xml"), 80.0),
    "string-quartet": (("haydn", "mozart/k80", "mozart/k155", "mozart/k156", "mozart/k458",
                        "beethoven/opus18no1", "beethoven/opus18no3.mxl", "beethoven/opus18no4.mxl",
                        "beethoven/opus18no5.mxl", "beethoven/opus59no1", "beethoven/opus59no2",
                        "beethoven/opus59no3", "beethoven/opus74.mxl", "beethoven/opus132.mxl"),
                       (".mxl", ".krn", ".xml"), 112.0),
    "fiddle": (("oneills1850", "ryansMammoth", "nottingham-dataset"), (".abc",), 112.0),
    "folk": (("essenFolksong",), (".abc",), 96.0),
}


@dataclass
class ImportReport:
    """What an import kept and what it skipped, with the reason for each skip."""

    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, name)

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.imported} pieces imported, none skipped."
        parts = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return f"{self.imported} pieces imported, {sum(self.skipped.values())} skipped: {parts}."

    def to_dict(self) -> dict[str, object]:
        return {"imported": self.imported, "skipped": dict(self.skipped), "examples": self.examples}


@dataclass
class NoteDataset:
    """Flat note arrays for many pieces, plus per-piece metadata."""

    styles: list[str]
    pitch: np.ndarray
    step: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray
    step_beats: np.ndarray
    duration_beats: np.ndarray
    offsets: np.ndarray  # int64 [pieces + 1]
    piece_style: np.ndarray
    piece_split: np.ndarray  # index into SPLITS
    piece_name: np.ndarray
    piece_tempo: np.ndarray
    piece_key: np.ndarray  # tonic pitch class, 0..11
    piece_mode: np.ndarray  # 0 major, 1 minor
    piece_time_signature: np.ndarray  # [pieces, 2], the primary one
    tempo_offsets: np.ndarray  # int64 [pieces + 1] into tempo_changes
    tempo_changes: np.ndarray  # float64 [changes, 2]: (seconds, BPM)
    signature_offsets: np.ndarray  # int64 [pieces + 1] into time_signatures
    time_signatures: np.ndarray  # float64 [changes, 3]: (seconds, numerator, denominator)
    piece_bar_phase: np.ndarray  # float32 [pieces]: where time 0 falls in its bar, in beats
    phrase_offsets: np.ndarray  # int64 [pieces + 1] into phrase_ends
    phrase_ends: np.ndarray  # float64 [ends]: onsets (seconds) of phrase-closing notes (fermatas)
    chord_vocab: np.ndarray  # str [labels]
    note_chord: np.ndarray  # int16 [notes]: index into chord_vocab of the chord at the note's onset, -1 none

    @property
    def pieces(self) -> int:
        return len(self.piece_name)

    def indices(self, split: str | None = None, style: str | None = None) -> np.ndarray:
        mask = np.ones(self.pieces, dtype=bool)
        if split is not None:
            mask &= self.piece_split == SPLITS.index(split)
        if style is not None:
            mask &= self.piece_style == self.styles.index(style)
        return np.flatnonzero(mask)

    def piece(self, i: int) -> NoteSequence:
        a, b = self.offsets[i], self.offsets[i + 1]
        num, den = (int(x) for x in self.piece_time_signature[i])
        tempos = self.tempo_changes[self.tempo_offsets[i]:self.tempo_offsets[i + 1]]
        signatures = self.time_signatures[self.signature_offsets[i]:self.signature_offsets[i + 1]]
        ends = self.phrase_ends[self.phrase_offsets[i]:self.phrase_offsets[i + 1]]
        return NoteSequence(pitch=self.pitch[a:b], step=self.step[a:b], duration=self.duration[a:b],
                            velocity=self.velocity[a:b], tempo_bpm=float(self.piece_tempo[i]),
                            time_signature=(num, den),
                            tempo_changes=[(float(t), float(bpm)) for t, bpm in tempos],
                            time_signatures=[(float(t), int(n), int(d)) for t, n, d in signatures],
                            bar_phase=float(self.piece_bar_phase[i]), phrase_ends=[float(t) for t in ends])

    def chords(self, i: int) -> list[str | None]:
        """The chord label at each note's onset in piece `i`."""
        return [str(self.chord_vocab[c]) if c >= 0 else None for c in self.note_chord[self.piece_slice(i)]]

    def piece_slice(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "styles"}
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, styles=np.array(self.styles), **arrays)
        tmp.replace(path)  # atomic: a crash mid-write never leaves a half cache behind

    @classmethod
    def load(cls, path: Path) -> NoteDataset:
        with np.load(path, allow_pickle=False) as data:
            fields = {name: data[name] for name in cls.__dataclass_fields__ if name != "styles"}
            return cls(styles=[str(s) for s in data["styles"]], **fields)

    @classmethod
    def from_pieces(cls, styles: list[str], pieces: Iterable[tuple[str, str, NoteSequence, int]]
                    ) -> NoteDataset:
        """Build from (name, style, notes, split index) tuples."""
        cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                             ("pitch", "step", "duration", "velocity", "step_beats",
                                              "duration_beats", "chord")}
        meta: dict[str, list[object]] = {k: [] for k in ("style", "split", "name", "tempo", "key", "mode", "ts",
                                                          "phase")}
        offsets, tempo_offsets, signature_offsets, phrase_offsets = [0], [0], [0], [0]
        phrase_ends: list[float] = []
        tempo_changes: list[tuple[float, float]] = []
        signatures: list[tuple[float, int, int]] = []
        vocab: dict[str, int] = {}
        for name, style, seq, split in pieces:
            step_beats, duration_beats = seq.to_beats()
            chords = np.array([-1 if c is None else vocab.setdefault(c, len(vocab)) for c in chord_labels(seq)],
                              dtype=np.int16)
            for key, values in (("pitch", seq.pitch), ("step", seq.step), ("duration", seq.duration),
                                ("velocity", seq.velocity), ("step_beats", step_beats),
                                ("duration_beats", duration_beats), ("chord", chords)):
                cols[key].append(values)
            tonic, mode = piece_key(seq)
            offsets.append(offsets[-1] + len(seq))
            tempo_changes += seq.tempo_changes
            tempo_offsets.append(len(tempo_changes))
            signatures += seq.time_signatures
            signature_offsets.append(len(signatures))
            phrase_ends += seq.phrase_ends
            phrase_offsets.append(len(phrase_ends))
            meta["phase"].append(seq.bar_phase)
            meta["style"].append(styles.index(style))
            meta["split"].append(split)
            meta["name"].append(name)
            meta["tempo"].append(seq.tempo_bpm)
            meta["key"].append(tonic)
            meta["mode"].append(0 if mode == "major" else 1)
            meta["ts"].append(seq.time_signature)

        def cat(key: str, dtype: type) -> np.ndarray:
            return np.concatenate(cols[key]).astype(dtype) if cols[key] else np.zeros(0, dtype)

        return cls(
            styles=list(styles), pitch=cat("pitch", np.int16), step=cat("step", np.float32),
            duration=cat("duration", np.float32), velocity=cat("velocity", np.int16),
            step_beats=cat("step_beats", np.float32), duration_beats=cat("duration_beats", np.float32),
            offsets=np.array(offsets, dtype=np.int64), piece_style=np.array(meta["style"], dtype=np.int16),
            piece_split=np.array(meta["split"], dtype=np.int8), piece_name=np.array(meta["name"], dtype=str),
            piece_tempo=np.array(meta["tempo"], dtype=np.float32), piece_key=np.array(meta["key"], dtype=np.int8),
            piece_mode=np.array(meta["mode"], dtype=np.int8),
            piece_time_signature=np.array(meta["ts"], dtype=np.int16).reshape(-1, 2),
            tempo_offsets=np.array(tempo_offsets, dtype=np.int64),
            tempo_changes=np.array(tempo_changes, dtype=np.float64).reshape(-1, 2),
            signature_offsets=np.array(signature_offsets, dtype=np.int64),
            time_signatures=np.array(signatures, dtype=np.float64).reshape(-1, 3),
            piece_bar_phase=np.array(meta["phase"], dtype=np.float32),
            phrase_offsets=np.array(phrase_offsets, dtype=np.int64),
            phrase_ends=np.array(phrase_ends, dtype=np.float64),
            chord_vocab=np.array(list(vocab) or [""], dtype=str), note_chord=cat("chord", np.int16),
        )

    @classmethod
    def merge(cls, datasets: list[NoteDataset]) -> NoteDataset:
        styles = sorted({s for d in datasets for s in d.styles})
        pieces = ((str(d.piece_name[i]), d.styles[d.piece_style[i]], d.piece(i), int(d.piece_split[i]))
                  for d in datasets for i in range(d.pieces))
        return cls.from_pieces(styles, pieces)


def split_of(name: str, fractions: tuple[float, float] = (0.8, 0.1)) -> int:
    """Deterministic split by piece name: the same piece always lands in the same split."""
    u = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return 0 if u < fractions[0] else (1 if u < fractions[0] + fractions[1] else 2)


def check_piece(seq: NoteSequence) -> str | None:
    """Why a piece cannot be used, or None."""
    if len(seq) == 0:
        return "empty"
    if len(seq) > MAX_PIECE_NOTES or seq.end_time > MAX_PIECE_SECONDS:
        return "too long"
    if len(seq) < 8:
        return "too short"
    return None


# -- MIDI folders and MAESTRO -------------------------------------------------------------------

def _load_midi_job(path: str) -> tuple[str, NoteSequence | None, str | None]:
    try:
        seq = notes_from_midi(path)
    except MidiError as exc:
        message = str(exc)
        reason = ("drums only" if "drums" in message else "empty" if "no notes" in message
                  else "not MIDI" if "not a MIDI" in message else "too long" if "larger" in message
                  else "corrupt")
        return path, None, reason
    return path, seq, check_piece(seq)


def _collect(jobs: list[tuple[str, str, int]], styles: list[str], workers: int,
             progress: Callable[[int, int], None] | None) -> tuple[NoteDataset, ImportReport]:
    """Load (path, style, split) MIDI jobs in parallel."""
    report = ImportReport()
    kept: list[tuple[str, str, NoteSequence, int]] = []
    by_path = {path: (style, split) for path, style, split in jobs}
    for done, (path, seq, reason) in enumerate(_parallel_map(_load_midi_job, list(by_path), workers), 1):
        if progress:
            progress(done, len(jobs))
        if reason or seq is None:
            report.skip(reason or "corrupt", path)
            continue
        style, split = by_path[path]
        kept.append((path, style, seq, split))
        report.imported += 1
    kept.sort(key=lambda piece: piece[0])
    return NoteDataset.from_pieces(styles, kept), report


def import_midi_folder(folder: Path, style: str, *, workers: int = 2,
                       progress: Callable[[int, int], None] | None = None) -> tuple[NoteDataset, ImportReport]:
    """Every file under `folder`, one style, split deterministically by relative path.

    Files whose suffix is not .mid/.midi are counted as "not MIDI".
    """
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    jobs, report_extra = [], ImportReport()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() not in (".mid", ".midi"):
            report_extra.skip("not MIDI", str(path))
            continue
        jobs.append((str(path), style, split_of(str(path.relative_to(folder)))))
    dataset, report = _collect(jobs, [style], workers, progress)
    report.skipped.update(report_extra.skipped)
    for reason, name in report_extra.examples.items():
        report.examples.setdefault(reason, name)
    return dataset, report


def import_maestro(root: Path, *, workers: int = 2, limit: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[NoteDataset, ImportReport]:
    """A MAESTRO download: `maestro-v*.csv` with `split` and `midi_filename` columns, style "piano".

    MAESTRO's own train/validation/test split is kept.
    """
    csvs = sorted(root.glob("maestro-v*.csv"))
    if not csvs:
        raise ValueError(f"No maestro-v*.csv in {root}: is this a MAESTRO download?")
    with csvs[-1].open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"split", "midi_filename"} <= set(rows[0]):
        raise ValueError(f"{csvs[-1].name} has no split and midi_filename columns.")
    jobs, missing = [], ImportReport()
    for row in rows[:limit]:
        split = row["split"].strip().lower()
        if split not in SPLITS:
            missing.skip("unknown split", row["midi_filename"])
            continue
        path = root / row["midi_filename"]
        if not path.is_file():
            missing.skip("missing file", row["midi_filename"])
            continue
        jobs.append((str(path), "piano", SPLITS.index(split)))
    dataset, report = _collect(jobs, ["piano"], workers, progress)
    report.skipped.update(missing.skipped)
    return dataset, report


# -- the music21 corpus -------------------------------------------------------------------------

def corpus_root() -> Path:
    from music21 import corpus  # heavy import, only where the corpus is read

    return Path(corpus.__file__).parent


def corpus_jobs(styles: Iterable[str] | None = None, max_pieces_per_style: int | None = None
                ) -> list[tuple[str, int | None, str]]:
    """(path, tune number or None, style) for every corpus piece of the given styles.

    ABC files hold many tunes; each tune is its own piece. With a cap, pieces are chosen by a
    hash of their name, so the choice is deterministic and spread across collections.
    """
    root = corpus_root()
    jobs: list[tuple[str, int | None, str]] = []
    for style in styles or CORPUS_STYLES:
        if style not in CORPUS_STYLES:
            raise ValueError(f"Unknown corpus style {style!r}: choose from {', '.join(CORPUS_STYLES)}.")
        folders, suffixes, _ = CORPUS_STYLES[style]
        found: list[tuple[str, int | None, str]] = []
        for folder in folders:
            base = root / folder
            paths = [base] if base.is_file() else sorted(base.rglob("*"))
            for path in paths:
                if path.suffix not in suffixes or (style == "chorale" and not _is_bach_chorale(path)):
                    continue
                if path.suffix == ".abc":
                    numbers = re.findall(r"^X:\s*(\d+)", path.read_text(errors="replace"), re.M)
                    found += [(str(path), int(n), style) for n in dict.fromkeys(numbers)]
                else:
                    found.append((str(path), None, style))
        if max_pieces_per_style and len(found) > max_pieces_per_style:
            found.sort(key=lambda job: hashlib.sha1(f"{job[0]}#{job[1]}".encode()).hexdigest())
            found = sorted(found[:max_pieces_per_style])
        jobs += found
    return jobs


# Works in the bach folder that are not four-part chorales: the Art of Fugue, the C major prelude
# of the Well-Tempered Clavier.
_NOT_CHORALES = ("bwv1080", "bwv846")


def _is_bach_chorale(path: Path) -> bool:
    return (path.name.startswith("bwv") and not any(path.name.startswith(w) for w in _NOT_CHORALES)
            and path.suffix != ".rntxt")


def _load_corpus_job(job: tuple[str, int | None, str]) -> tuple[str, NoteSequence | None, str | None]:
    path, number, style = job
    name = f"{Path(path).relative_to(corpus_root())}" + (f"#{number}" if number is not None else "")
    try:
        seq = score_to_notes(path, number, CORPUS_STYLES[style][2])
    except Exception as exc:  # music21's parsers raise anything; one bad score must not stop an import
        return name, None, f"corrupt ({type(exc).__name__})"
    return name, seq, check_piece(seq)


def score_to_notes(path: str, number: int | None, default_tempo: float) -> NoteSequence:
    """Parse a score with music21 and flatten every part into one note sequence."""
    return notes_from_score(parse_score(path, number), default_tempo)


def parse_score(path: str, number: int | None) -> Any:
    """A score file parsed with music21 (tune `number` of an ABC file; an opus's first score)."""
    from music21 import converter

    score = converter.parse(path, number=number) if number is not None else converter.parse(path)
    if hasattr(score, "scores") and not hasattr(score, "parts"):  # an Opus
        score = score.scores[0]
    return score


def notes_from_score(score: Any, default_tempo: float) -> NoteSequence:
    """A parsed score's parts flattened into one note sequence, its repeats written out."""
    from music21 import tempo

    score = expand_repeats(score)
    parts = list(getattr(score, "parts", [])) or [score]
    first = parts[0].flatten()
    marks = [(float(m.offset), float(m.getQuarterBPM())) for m in first.getElementsByClass(tempo.MetronomeMark)
             if m.getQuarterBPM()]
    if not marks or marks[0][0] > 0:
        marks.insert(0, (0.0, default_tempo))
    signatures = [(float(ts.offset), ts.numerator, ts.denominator)
                  for ts in first.getElementsByClass("TimeSignature")] or [(0.0, 4, 4)]
    # ABC pickups come out as a short first signature (1/16, 1/8): the piece's metre is the most
    # common one.
    primary = Counter((n, d) for _, n, d in signatures).most_common(1)[0][0]
    if len(signatures) > 1 and signatures[0][1] == 1:
        signatures = [(0.0, *primary)] + signatures[1:]
    bar_phase = _pickup_phase(parts[0], signatures[0][1] * 4.0 / signatures[0][2])
    onsets: list[float] = []
    pitches: list[int] = []
    lengths: list[float] = []
    levels: list[float] = []  # the written dynamic level at each note, as a velocity
    fermatas: set[float] = set()
    markings = [part_markings(part) for part in parts]
    # A part with no markings of its own follows the score's first marked part (a quartet's
    # dynamics are sometimes written in one staff only).
    shared = next((m for m in markings if m), Markings())
    for part, own in zip(parts, markings):
        dyn = own or shared
        part_start = len(onsets)
        # Tied notes are merged by hand: music21's stripTies is quadratic and takes minutes on a
        # long quartet movement.
        open_ties: dict[int, int] = {}
        for element in part.flatten().notes:
            length = float(element.quarterLength)
            if length <= 0:  # grace notes have no length of their own
                continue
            if any(type(e).__name__ == "Fermata" for e in element.expressions):
                fermatas.add(round(float(element.offset), 4))
            for note in getattr(element, "notes", None) or [element]:
                midi = int(note.pitch.midi)
                tie = note.tie.type if note.tie is not None else None
                if tie in ("stop", "continue") and midi in open_ties:
                    lengths[open_ties[midi]] += length
                    if tie == "stop":
                        del open_ties[midi]
                    continue
                onsets.append(float(element.offset))
                pitches.append(midi)
                lengths.append(length)
                levels.append(float(dyn.sudden.get(round(float(element.offset), 4), 0) + accent_of(element)))
                if tie == "start":
                    open_ties[midi] = len(lengths) - 1
        written = dyn.level_at(np.array(onsets[part_start:], dtype=np.float64))
        levels[part_start:] = list(np.array(levels[part_start:]) + written)
    if not onsets:
        empty = np.zeros(0)
        return NoteSequence(pitch=empty, step=empty, duration=empty, velocity=empty)
    onsets_q, lengths_q = np.array(onsets), np.array(lengths)
    mark_q = np.array([q for q, _ in marks])
    bpm = np.array([b for _, b in marks])
    # Seconds at each mark, then linear within a tempo segment.
    mark_s = np.concatenate([[0.0], np.cumsum(np.diff(mark_q) * 60.0 / bpm[:-1])])

    def to_seconds(q: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(mark_q, q, side="right") - 1, 0, len(mark_q) - 1)
        return mark_s[i] + (q - mark_q[i]) * 60.0 / bpm[i]

    start_s = to_seconds(onsets_q)
    seq = NoteSequence.from_notes(
        start=start_s, pitch=np.array(pitches), duration=to_seconds(onsets_q + lengths_q) - start_s,
        velocity=np.clip(np.round(levels), 1, 127), tempo_bpm=marks[0][1],
        tempo_changes=[(float(s), float(b)) for s, b in zip(mark_s, bpm)],
        time_signature=primary,
        time_signatures=[(float(to_seconds(np.array([q]))[0]), n, d) for q, n, d in signatures],
        bar_phase=bar_phase, phrase_ends=[float(t) for t in to_seconds(np.array(sorted(fermatas)))],
    )
    # The pulse of the bar on top of the written level.
    in_bar, _, _ = seq.bar_positions()
    seq.velocity = velocities(seq.velocity, metric_accent(in_bar, beat_length(primary))).astype(np.int16)
    # Remove exact duplicates (unisons between voices sound as one note on a piano).
    keep = np.ones(len(seq), dtype=bool)
    keep[1:] = ~((seq.step[1:] == 0) & (np.diff(seq.pitch) == 0))
    if not keep.all():
        seq = NoteSequence.from_notes(seq.start[keep], seq.pitch[keep], seq.duration[keep],
                                      seq.velocity[keep], **seq.meta())
    return seq


def expand_repeats(score: Any) -> Any:
    """The score as it is played: repeat signs, first and second endings and da capo written out.

    A tune marked |: A :|: B :| is heard AABB; measuring its repetition (or learning from it) on the
    page's AB would miss half of what a listener hears. A score whose repeats music21 cannot follow
    (badly formed marks) is kept as written.
    """
    from music21 import bar, repeat

    marked = next(iter(score.recurse().getElementsByClass((bar.Repeat, repeat.RepeatExpression))), None)
    if marked is None:
        return score
    try:
        return score.expandRepeats()
    except Exception:  # music21's ExpanderException, or its own errors on odd marks
        return score


def _pickup_phase(part: object, bar_beats: float) -> float:
    """Beats of the bar before the score's first note: a pickup bar is shorter than the metre's bar."""
    measures = list(part.getElementsByClass("Measure"))  # type: ignore[attr-defined]
    if not measures or bar_beats <= 0:
        return 0.0
    first = measures[0]
    padding = float(getattr(first, "paddingLeft", 0.0) or 0.0)
    if padding > 0:
        return padding % bar_beats
    length = float(first.duration.quarterLength)
    if len(measures) > 1 and 0 < length < bar_beats - 1e-6:
        return bar_beats - length
    return 0.0


SHINGLE = 12  # consecutive intervals of a line that make one fingerprint
COMMON_SHINGLE = 50  # a fingerprint in more pieces than this (scales, repeated notes) says nothing
SAME_MELODY = 0.5  # share of the shorter line's fingerprints: the same tune (or a reharmonisation)
SAME_PIECE = 0.9  # and of both lines, top and bass, both ways: the same music stored twice
SAME_PASSAGE = 64  # fingerprints in common: a long passage shared (a movement stored in two editions)


def _line_fingerprints(seq: NoteSequence) -> tuple[set[int], set[int]]:
    """Hashes of every run of SHINGLE intervals in the top line and in the bass line.

    Intervals, not pitches: a transposed copy is the same music.
    """
    start = np.round(seq.start, 4)
    times, first = np.unique(start, return_index=True)
    bounds = list(first) + [len(seq)]
    top = np.array([seq.pitch[a:b].max() for a, b in zip(bounds, bounds[1:])], dtype=np.int64)
    bass = np.array([seq.pitch[a:b].min() for a, b in zip(bounds, bounds[1:])], dtype=np.int64)

    def shingles(line: np.ndarray) -> set[int]:
        steps = np.diff(line)
        return {hash(tuple(steps[i:i + SHINGLE])) for i in range(len(steps) - SHINGLE + 1)}

    return shingles(top), shingles(bass)


def content_groups(names: list[str], seqs: list[NoteSequence]) -> tuple[list[int], list[bool]]:
    """(group of each piece, whether it repeats an earlier piece), by musical content.

    Pieces whose top lines share at least SAME_MELODY of their fingerprints, or SAME_PASSAGE of them
    (a long passage), are one group (the same tune in two collections, a chorale melody harmonised
    twice, a movement in two editions), so a group is never split
    across train and test. A piece whose top and bass lines both match an earlier one's almost
    entirely (a .krn and an .mxl of one chorale) is a duplicate and is dropped.
    """
    prints = [_line_fingerprints(seq) for seq in seqs]
    index: dict[int, list[int]] = {}
    for i, (top, _) in enumerate(prints):
        for h in top:
            index.setdefault(h, []).append(i)
    parent = list(range(len(seqs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    duplicate = [False] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: names[i])
    for i in order:
        top, bass = prints[i]
        shared: Counter[int] = Counter()
        for h in top:
            holders = index[h]
            if len(holders) <= COMMON_SHINGLE:
                shared.update(j for j in holders if j != i)
        for j, count in shared.items():
            other_top, other_bass = prints[j]
            if count < SAME_MELODY * max(1, min(len(top), len(other_top))) and count < SAME_PASSAGE:
                continue
            parent[find(i)] = find(j)
            same_top = count >= SAME_PIECE * max(len(top), len(other_top))
            bass_shared = len(bass & other_bass)
            same_bass = bass_shared >= SAME_PIECE * max(1, len(bass), len(other_bass))
            if same_top and same_bass and names[j] < names[i] and not duplicate[j]:
                duplicate[i] = True
    return [find(i) for i in range(len(seqs))], duplicate


def load_corpus(*, styles: Iterable[str] | None = None, max_pieces_per_style: int | None = None,
                workers: int = 2, progress: Callable[[int, int], None] | None = None
                ) -> tuple[NoteDataset, ImportReport]:
    """Parse the music21 corpus into a dataset, in parallel."""
    jobs = corpus_jobs(styles, max_pieces_per_style)
    style_list = list(dict.fromkeys(style for _, _, style in jobs))
    report = ImportReport()
    kept: list[tuple[str, str, NoteSequence, int]] = []
    for done, (job, (name, seq, reason)) in enumerate(zip(jobs, _parallel_map(_load_corpus_job, jobs, workers)), 1):
        if progress:
            progress(done, len(jobs))
        if reason or seq is None:
            report.skip(reason or "corrupt", name)
            continue
        kept.append((name, job[2], seq, split_of(name)))
        report.imported += 1
    return NoteDataset.from_pieces(style_list, kept), report


def deduplicate(dataset: NoteDataset, report: ImportReport | None = None) -> NoteDataset:
    """Drop duplicated music and split by content group (see `content_groups`), per style."""
    names = [str(n) for n in dataset.piece_name]
    keep: list[tuple[str, str, NoteSequence, int]] = []
    for s, style in enumerate(dataset.styles):
        idx = [int(i) for i in np.flatnonzero(dataset.piece_style == s)]
        seqs = [dataset.piece(i) for i in idx]
        groups, duplicate = content_groups([names[i] for i in idx], seqs)
        first_name: dict[int, str] = {}
        for name, group in sorted(zip([names[i] for i in idx], groups)):
            first_name.setdefault(group, name)
        for i, seq, group, dup in zip(idx, seqs, groups, duplicate):
            if dup:
                if report is not None:
                    report.skip("duplicate", names[i])
                    report.imported -= 1
                continue
            keep.append((names[i], style, seq, split_of(first_name[group])))  # a group shares one split
    keep.sort(key=lambda piece: piece[0])
    return NoteDataset.from_pieces(list(dataset.styles), keep)


def corpus_cache_path(cache_dir: Path, style: str, max_pieces_per_style: int | None) -> Path:
    key = f"corpus|{style}|{max_pieces_per_style}|v{EXTRACTOR_VERSION}"
    return cache_dir / f"corpus-{style}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.npz"


def load_corpus_cached(cache_dir: Path, *, styles: Iterable[str] | None = None,
                       max_pieces_per_style: int | None = None, workers: int = 2,
                       progress: Callable[[str, int, int], None] | None = None
                       ) -> tuple[NoteDataset, dict[str, ImportReport | None]]:
    """The corpus, one cache file per style, so that adding a style never re-parses the others."""
    parts, reports = [], {}
    for style in styles or CORPUS_STYLES:
        path = corpus_cache_path(cache_dir, style, max_pieces_per_style)

        def build(style: str = style) -> tuple[NoteDataset, ImportReport]:
            report_progress = (lambda done, total: progress(style, done, total)) if progress else None
            return load_corpus(styles=[style], max_pieces_per_style=max_pieces_per_style, workers=workers,
                               progress=report_progress)

        dataset, reports[style] = cached(path, build)
        parts.append(deduplicate(dataset, reports[style]))
    return (parts[0] if len(parts) == 1 else NoteDataset.merge(parts)), reports


def corpus_dataset(cache_dir: Path, styles: list[str] | None, max_pieces_per_style: int | None,
                   workers: int = 2) -> NoteDataset:
    """The corpus dataset, parsed once with a progress bar per style and cached."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(style: str, done: int, total: int) -> None:
        if style not in bars:
            bars[style] = tqdm(desc=f"parsing {style}", total=total, unit="piece")
        bars[style].n = done
        bars[style].refresh()

    dataset, reports = load_corpus_cached(cache_dir, styles=styles, max_pieces_per_style=max_pieces_per_style,
                                          workers=workers, progress=progress)
    for bar in bars.values():
        bar.close()
    for style, report in reports.items():
        print(f"{style}: " + (report.summary() if report else "cached"))
    return dataset


def cached(path: Path, build: Callable[[], tuple[NoteDataset, ImportReport]]
           ) -> tuple[NoteDataset, ImportReport | None]:
    """Load a dataset cache, or build and save it. The report is None on a cache hit."""
    if path.exists():
        return NoteDataset.load(path), None
    dataset, report = build()
    dataset.save(path)
    return dataset, report


def _parallel_map(fn: Callable, items: list, workers: int) -> Iterator:
    if workers <= 1 or len(items) < 4:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items, chunksize=max(1, min(16, len(items) // (workers * 8))))


def main(argv: list[str] | None = None) -> int:
    """Import a source into one dataset file: `python -m ml.data.datasets corpus|maestro|folder ... --out F.npz`."""
    import argparse

    parser = argparse.ArgumentParser(description="Import music into a dataset (.npz) for training and evaluation.")
    sub = parser.add_subparsers(dest="source", required=True)
    corpus = sub.add_parser("corpus", help="the music21 corpus, grouped into styles")
    corpus.add_argument("--styles", nargs="*", choices=list(CORPUS_STYLES))
    corpus.add_argument("--max-pieces-per-style", type=int, default=1500)
    corpus.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    maestro = sub.add_parser("maestro", help="a MAESTRO download (maestro-v*.csv and its MIDI folders)")
    maestro.add_argument("root", type=Path)
    folder = sub.add_parser("folder", help="any folder of .mid/.midi files, as one style")
    folder.add_argument("path", type=Path)
    folder.add_argument("--style", required=True)
    for p in (corpus, maestro, folder):
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from tqdm import tqdm

    bar = tqdm(unit="file", disable=args.source == "corpus")  # the corpus shows a bar per style

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        if args.source == "corpus":
            dataset = corpus_dataset(args.cache_dir, args.styles, args.max_pieces_per_style, args.workers)
            report = None
        elif args.source == "maestro":
            dataset, report = import_maestro(args.root, workers=args.workers, progress=progress)
        else:
            dataset, report = import_midi_folder(args.path, args.style, workers=args.workers, progress=progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    if report is not None:
        print(report.summary())
    if not dataset.pieces:
        print("error: nothing to save: no usable piece was found.", file=sys.stderr)
        return 2
    dataset.save(args.out)
    counts = {split: len(dataset.indices(split)) for split in SPLITS}
    print(f"Saved {args.out}: {dataset.pieces} pieces ({counts}), {len(dataset.pitch)} notes, "
          f"styles {', '.join(dataset.styles)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
