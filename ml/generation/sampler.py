"""The sampler: every variation's notes so far, its masks and boundaries, and one draw per head."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ml.data.notes import NoteSequence
from ml.generation.accompaniment import accompaniment
from ml.generation.chords import ChordSpan
from ml.generation.constraints import LOOP_SPAN, At, Cadence, ChordTargets, Constraint, GivenMelody, Loops, Repeats
from ml.generation.form import FormPlan
from ml.generation.piece import STYLE_DYNAMICS, GeneratedPiece, apply_dynamics, phrase_dynamics
from ml.generation.request import GenerationRequest
from ml.model.config import PAD_PITCH, UNTIL_CLASSES, ModelConfig, until_class

MAX_NOTES_PER_VARIATION = 6000
MAX_CHORD_NOTES = 6  # more simultaneous onsets than this is a stuck timing head, not music
MAX_STEP_BEATS = 4.0
MAX_DURATION_BEATS = 8.0

@dataclass
class Primer:
    """An uploaded piece to continue: its notes as window inputs, and as notes to keep in the output."""

    pitch: np.ndarray  # key-relative
    step: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray  # 0..1
    position: np.ndarray
    cadence: np.ndarray
    output: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # onset beats, pitch, duration beats, velocity
    plan_start: float  # beats: the bar line after its last onset, where the plan starts

    @classmethod
    def from_notes(cls, seq: NoteSequence, config: ModelConfig, plan: FormPlan, *, move: int, shift: int) -> Primer:
        step_beats, duration_beats = seq.to_beats()
        onset = np.round(np.cumsum(step_beats.astype(np.float64)) * 48) / 48
        bar = plan.bar_beats
        plan_start = (math.floor(onset[-1] / bar + 1e-9) + 1) * bar
        pitch = np.clip(seq.pitch.astype(np.int64) + move, 0, 127)
        cadence_at = plan.next_signal(0.0)
        to_cadence = (cadence_at if cadence_at is not None else math.inf) + plan_start - onset
        return cls(pitch=np.clip(pitch - shift, 0, 127).astype(np.int32), step=config.quantize_beats(step_beats),
                   duration=config.quantize_beats(duration_beats), velocity=(seq.velocity / 127.0).astype(np.float32),
                   position=config.position_class(np.mod(onset - plan_start, bar)),
                   cadence=config.cadence_input(to_cadence, final=plan.is_final(cadence_at)),
                   output=(onset, pitch, duration_beats.astype(np.float64), seq.velocity.copy()), plan_start=plan_start)


@dataclass(eq=False)  # lines are told apart by identity (two may hold equal notes)
class Line:
    """One variation: its key, and the notes written so far (onsets in beats from the plan's start)."""

    tonic: int
    mode: str
    shift: int  # semitones from the key-relative space to the piece's key
    mode_index: int
    primer: Primer | None
    # How it closes: "perfect", "tonic" or "open", drawn from its style's closes (None: the style's rule).
    close: str | None = None
    density: int = 0  # how busy the piece is, for a model that reads it (`ModelConfig.density`)
    onsets: list[float] = field(default_factory=list)
    pitches: list[int] = field(default_factory=list)  # key-relative
    durations: list[float] = field(default_factory=list)
    velocities: list[float] = field(default_factory=list)
    queue: list[tuple[float, int, float, float]] = field(default_factory=list)  # notes of a repeat, to copy
    # The queue holds an ornamented return's strong-beat notes: the network writes between them.
    ornament: bool = False
    between: list[int] = field(default_factory=list)  # per kept note, how many notes may come before it
    forced: tuple[float, int, float, float] | None = None  # the copied note this step writes
    chord: list[int] = field(default_factory=list)  # pitches at the current onset
    previous_sounding: list[int] = field(default_factory=list)  # pitches sounding at the previous onset
    position: float = -math.inf  # beats: onset of the last note
    not_before: float = -math.inf  # beats: no free onset before this (the end of a copied passage)
    # Where a repeat's new ending starts, and the pitches its model had there: the first new note
    # differs from them, so that a varied return is heard as varied.
    vary: tuple[float, frozenset[int]] | None = None
    boundary: int = 0  # index of the next hard boundary
    arrived: bool = False  # the final cadence has sounded: only its chord may follow
    finished: bool = False
    history: list[int] = field(default_factory=list)
    after: list[tuple[float, int, float, float]] = field(default_factory=list)  # notes after a gap, to score
    scoring: bool = False  # feeding the notes after the gap
    join: float = 0.0  # log-likelihood of the notes after the gap, given what was written
    step_score: float = 0.0
    melody_next: int = 0  # index of the next note of a given melody to write


class Batch:
    """Sampling state of every variation: the plan, the notes so far, the constraints, and when to stop.

    The plan's hard boundaries are where a repeat starts (with `Repeats` on, the phrase's notes
    are copied from its model and fed to the network, so that its context follows) and the final
    cadence (the last phrase arrives on the downbeat of the last bar and holds). In between, steps
    are sampled so that no onset overshoots the next boundary. Every rule on pitches and onsets is
    a constraint (ml.generation.constraints), applied in `_pitch_mask` and `_next_onset`.
    """

    def __init__(self, request: GenerationRequest, config: ModelConfig, tempo: float, plan: FormPlan,
                 lines: list[Line], *, polyphonic: bool, constraints: list[Constraint],
                 spans: list[ChordSpan] | None = None, gap: tuple[float, float] | None = None,
                 after: list[list[tuple[float, int, float, float]]] | None = None, start: float = 0.0) -> None:
        """With `gap` (start, end beats) the lines write only that stretch: they open at its start,
        after the notes of their primer, and stop at its end, where `after` (per line, the notes
        that follow the gap, key-relative) is fed through the network and scored: `line.join`
        adds up their log-likelihood, how well what was written leads into what follows."""
        self.request, self.config, self.tempo, self.plan, self.lines = request, config, tempo, plan, lines
        self.polyphonic = polyphonic
        self.spans = spans or []  # the requested chords, whether or not their constraint is on
        self.constraints = constraints
        self.repeats = next((c for c in constraints if isinstance(c, Repeats)), None)
        self.cadence = next((c for c in constraints if isinstance(c, Cadence)), None)
        self.chords = next((c for c in constraints if isinstance(c, ChordTargets)), None)
        self.melody = next((c for c in constraints if isinstance(c, GivenMelody)), None)
        self.loops = next((c for c in constraints if isinstance(c, Loops)), None)
        numerator, denominator = request.metre
        # The beat a listener counts: the quarter in x/4, the half in x/2, the dotted quarter in 6/8.
        compound = denominator == 8 and numerator % 3 == 0 and numerator > 3
        self.beat = 1.5 if compound else 4.0 / denominator
        self.size = len(lines)
        self.grid = np.array(config.time_grid, dtype=np.float64)
        self.target_notes = request.notes if request.notes is not None else MAX_NOTES_PER_VARIATION
        last = plan.phrases[-1]
        self.gap = gap
        self.start = start  # beats: the first onset (after a melody's pickup rest)
        self.boundaries: list[tuple[float, str, int]] = self.repeats.boundaries(self) if self.repeats else []
        if gap is not None and gap[1] < last.cadence_at + 1e-9:  # a passage that ends before the close
            self.boundaries = [b for b in self.boundaries if gap[0] - 1e-9 <= b[0] < gap[1] - 1e-9]
            self.boundaries.append((gap[1], "join", -1))
            for line, notes in zip(lines, after or [[] for _ in lines]):
                line.after = list(notes)
        else:
            if gap is not None:
                self.boundaries = [b for b in self.boundaries if b[0] >= gap[0] - 1e-9]
            self.boundaries.append((last.cadence_at, "final", len(plan.phrases) - 1))
        self.max_step_class = int(np.searchsorted(self.grid, MAX_STEP_BEATS, side="right"))
        self.max_duration_class = int(np.searchsorted(self.grid, MAX_DURATION_BEATS, side="right"))
        self.next_onset = np.zeros(self.size)  # beats: where each variation's next note starts
        # What a model with chord inputs or future notes is told about the note it predicts.
        self.next_until = np.full(self.size, UNTIL_CLASSES - 1, np.int32)
        self.next_chord = np.zeros((self.size, 12), np.float32)
        self._future_seen: list[tuple[int, int, bool]] = []
        self._first_ahead: dict[tuple[Line, int, int], float | None] = {}
        # Per line, the pitches it may ever use (the range): also what is left when the other
        # constraints together allow nothing.
        self.allowed: list[np.ndarray] = []
        for line in lines:
            allowed = np.ones(128, dtype=bool)
            for constraint in constraints:
                mask = constraint.mask(self, line)
                if mask is not None:
                    allowed &= mask
            self.allowed.append(allowed)
            line.history = list(line.primer.pitch[-16:]) if line.primer is not None else []

    def window_arrays(self) -> dict[str, np.ndarray]:
        w = self.config.window
        c = self.config
        out = {"pitch": np.full((self.size, w), PAD_PITCH, np.int32),
               "step": np.full((self.size, w), c.pad_time, np.int32),
               "duration": np.full((self.size, w), c.pad_time, np.int32),
               "velocity": np.zeros((self.size, w), np.float32),
               "position": np.full((self.size, w), c.pad_position, np.int32),
               "cadence": np.full((self.size, w), c.pad_cadence, np.int32)}
        for v, line in enumerate(self.lines):
            p = line.primer
            n = min(w, len(p.pitch)) if p is not None else 0
            if n:
                for key in out:
                    out[key][v, w - n:] = getattr(p, key)[-n:]
        if c.chords:  # the primer's notes under the requested chords, where they fall in the plan
            out["chord"] = np.zeros((self.size, w, 12), np.float32)
            for v, line in enumerate(self.lines):
                p = line.primer
                if p is None:
                    continue
                n = min(w, len(p.pitch))
                for k, onset in enumerate(p.output[0][len(p.pitch) - n:]):
                    out["chord"][v, w - n + k] = self.chord_vector(line, float(onset) - p.plan_start)
        return out

    # -- what a model with chord inputs and future notes reads -------------------------------------
    def chord_vector(self, line: Line, onset: float) -> np.ndarray:
        """The requested chord at an onset, as key-relative pitch classes (zero where none is asked)."""
        vector = np.zeros(12, np.float32)
        for span in self.spans:
            if span.start - 1e-9 <= onset < span.end - 1e-9:
                vector[[(tone - line.tonic) % 12 for tone in span.chord.tones]] = 1.0
                break
        return vector

    def _ahead_known(self, line: Line) -> bool:
        """Whether the notes the line's next stretch leads into are known now (cheap: no notes read)."""
        if line.queue and line.ornament and not line.scoring:
            return True  # the next kept note of an ornamented return
        if line.boundary >= len(self.boundaries) or line.scoring or line.queue:
            return False
        _, kind, index = self.boundaries[line.boundary]
        if kind == "join":
            return bool(line.after)
        if kind != "copy" or self.repeats is None or not line.onsets:
            return False
        phrase = self.plan.phrases[index]
        source = self.plan.phrases[phrase.copy_of] if phrase.copy_of is not None else phrase
        return source.start + phrase.copy_until <= line.position + 1e-9  # its model phrase is written

    def ahead(self, line: Line) -> list[tuple[float, int, float, float]]:
        """The notes that the line's next stretch leads into, where they are known: the kept notes
        after a gap, or a repeat's notes once its model phrase is written."""
        if not self._ahead_known(line):
            return []
        if line.queue:  # an ornamented return: its kept notes
            return list(line.queue)
        _, kind, index = self.boundaries[line.boundary]
        if kind == "join":
            return list(line.after)
        assert self.repeats is not None  # only Repeats makes copy boundaries
        phrase = self.plan.phrases[index]
        source = self.plan.phrases[phrase.copy_of] if phrase.copy_of is not None else phrase
        offset = phrase.start - source.start
        return [(onset + offset, pitch, duration, velocity)
                for onset, pitch, duration, velocity in self.repeats.copied_notes(self, line, index)]

    def _future_state(self) -> list[tuple[int, int, bool]]:
        # An ornamented return's next kept note changes as its queue is read: the count is the state.
        return [(line.boundary, len(line.queue) if line.ornament else int(bool(line.queue) or line.scoring),
                 self._ahead_known(line)) for line in self.lines]

    def future_changed(self) -> bool:
        """Whether any line's notes ahead changed since the last `future_arrays` (a boundary passed,
        a copy began, a repeat's model phrase was finished)."""
        return self._future_state() != self._future_seen

    def future_arrays(self) -> dict[str, np.ndarray]:
        """Per line, the first notes it leads into (see `ahead`) as the model reads them, and the
        beats from its last onset to the first of them."""
        c = self.config
        f = max(c.future, 1)
        out = {"future_pitch": np.full((self.size, f), PAD_PITCH, np.int32),
               "future_step": np.full((self.size, f), c.pad_time, np.int32),
               "future_duration": np.full((self.size, f), c.pad_time, np.int32),
               "future_position": np.full((self.size, f), c.pad_position, np.int32),
               "until": np.full(self.size, UNTIL_CLASSES - 1, np.int32)}
        for v, line in enumerate(self.lines):
            notes = self.ahead(line)[:f]
            if not notes:
                continue
            onsets = np.array([n[0] for n in notes])
            steps = self.config.quantize_beats(np.diff(onsets, prepend=onsets[0]))
            steps[0] = c.pad_time  # the note before the first is in the gap
            k = len(notes)
            out["future_pitch"][v, :k] = [min(max(int(n[1]), 0), 127) for n in notes]
            out["future_step"][v, :k] = steps
            out["future_duration"][v, :k] = self.config.quantize_beats(np.array([n[2] for n in notes]))
            out["future_position"][v, :k] = self.config.position_class(np.mod(onsets, self.plan.bar_beats))
            last = line.position if line.onsets else (
                line.primer.output[0][-1] - line.primer.plan_start if line.primer is not None else onsets[0])
            out["until"][v] = int(until_class(onsets[0] - last))
        self._future_seen = self._future_state()
        return out

    def _until(self, line: Line, onset: float) -> int:
        """The beats-to-what-follows class of an onset; the first note ahead is read once per boundary
        (a repeat's notes are found among every note written, too slow to do at every step)."""
        if not self._ahead_known(line):
            return UNTIL_CLASSES - 1
        key = (line, line.boundary, len(line.queue) if line.ornament else -1)
        if key not in self._first_ahead:
            notes = self.ahead(line)
            self._first_ahead[key] = notes[0][0] if notes else None
        first = self._first_ahead[key]
        return int(until_class(first - onset)) if first is not None else UNTIL_CLASSES - 1

    @property
    def done(self) -> bool:
        return all(line.finished for line in self.lines)

    @property
    def progress(self) -> float:
        return float(min(max(line.position, 0.0) for line in self.lines)) / max(self.plan.beats, 1e-9)

    def _features(self, onset: float) -> tuple[int, int]:
        """Bar-position class and beats-to-cadence class of an onset (beats from the plan's start)."""
        cadence_at = self.plan.next_signal(onset)
        position = int(self.config.position_class(onset % self.plan.bar_beats))
        to_cadence = cadence_at - onset if cadence_at is not None else math.inf
        return position, int(self.config.cadence_input(to_cadence, final=self.plan.is_final(cadence_at)))

    def sample_steps(self, logits: np.ndarray, rngs: list[np.random.Generator]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen = np.zeros(self.size, dtype=np.int32)
        positions = np.zeros(self.size, dtype=np.int32)
        cadences = np.zeros(self.size, dtype=np.int32)
        for v, line in enumerate(self.lines):
            onset = self._next_onset(v, line, logits[v], rngs[v])
            if line.finished:
                continue
            previous = line.position if line.onsets else (
                line.primer.output[0][-1] - line.primer.plan_start if line.primer is not None else onset)
            self.next_onset[v] = onset
            chosen[v] = int(self.config.quantize_beats(np.array([onset - previous]))[0])
            if line.scoring:
                line.step_score = float(_log_softmax(logits[v])[chosen[v]])
            positions[v], cadences[v] = self._features(onset)
            if self.config.future:
                self.next_until[v] = self._until(line, onset)
            if self.config.chords:
                self.next_chord[v] = self.chord_vector(line, onset)
        return chosen, positions, cadences

    def _next_onset(self, v: int, line: Line, logits: np.ndarray, rng: np.random.Generator) -> float:
        """Where variation v's next note starts; sets `forced` for a copied note, `finished` at the end."""
        line.forced = None
        if line.finished:
            return line.position
        if line.queue:
            if line.ornament and not line.scoring and line.onsets:
                free = self._between(line, logits, rng)
                if free is not None:
                    return free
            return self._take_queued(line)
        if line.scoring:  # every note after the gap has been scored
            line.finished = True
            return line.position
        for constraint in self.constraints:
            line.forced = constraint.forced(self, line)
            if line.forced is not None:
                return line.forced[0]
        if not line.onsets:  # the first note opens the plan's first bar (or the gap)
            first = self.gap[0] if self.gap is not None else self.start
            return self._arrive(line, first) if self.boundaries[line.boundary][0] <= first else first
        chord_full = self._chord_full(line)
        mask = self._step_mask(line)
        if line.arrived:  # after the final chord's first note only its other notes may come
            if chord_full:
                line.finished = True
                return line.position
            c = sample(logits, mask, self.request.timing_temperature, 0, 1.0, rng)
            if c != 0:
                line.finished = True
            return line.position
        boundary = self.boundaries[line.boundary][0]
        # An ornamented return's network goes on writing between its last kept note and its end.
        copying_left_off = line.not_before > line.position + 1e-9 and not line.ornament
        if chord_full or copying_left_off:  # no note joins a full chord, or a copied one
            mask[0] = False
        # The model's step is sampled as it is; a step past the next boundary lands on it (a phrase
        # that is about to repeat, or the final cadence), one that falls short of where a copied
        # passage left off is moved there.
        c = sample(logits + self._step_bias(line), mask, self.request.timing_temperature, 0, 1.0, rng)
        onset = line.position + self.grid[c]
        if c != 0 and copying_left_off and onset < line.not_before:
            onset = line.not_before
        if c != 0:
            for constraint in self.constraints:
                onset = constraint.limit_onset(self, line, onset)
        if onset >= boundary - 1e-6:
            return self._arrive(line, boundary)
        return onset

    def _chord_full(self, line: Line) -> bool:
        """Whether no note may join the chord at the line's last onset (it has its most notes, or
        reaches the top of the range)."""
        return len(line.chord) >= MAX_CHORD_NOTES or bool(
            line.chord and max(line.chord) + line.shift >= self.request.pitch_high)

    def _step_mask(self, line: Line) -> np.ndarray:
        """The step classes every constraint allows the line's next note (up to the longest step)."""
        mask = np.ones(len(self.grid), dtype=bool)
        mask[self.max_step_class:] = False
        for constraint in self.constraints:
            mask = constraint.steps(self, line, mask)
        return mask

    def _between(self, line: Line, logits: np.ndarray, rng: np.random.Generator) -> float | None:
        """In an ornamented return, the onset of a note the network writes before the next kept
        (strong-beat) note, or None where its step reaches that note: the kept note comes next."""
        kept = line.queue[0][0]
        if kept <= line.position + 1e-9 or (line.between and line.between[0] <= 0):
            return None
        mask = self._step_mask(line)
        if self._chord_full(line):
            mask[0] = False
        c = sample(logits + self._step_bias(line), mask, self.request.timing_temperature, 0, 1.0, rng)
        onset = line.position + self.grid[c]
        if onset >= kept - 1e-6:
            return None
        if c != 0 and not self.polyphonic and line.durations:
            # A single line: the kept note before it gives way to the new one.
            line.durations[-1] = min(line.durations[-1], onset - line.position)
        if line.between:
            line.between[0] -= 1
        return onset

    def _arrive(self, line: Line, beat: float) -> float:
        """Reach a hard boundary: start copying a repeat, or sound the final cadence."""
        _, kind, index = self.boundaries[line.boundary]
        line.boundary += 1
        if kind == "join":  # the end of a gap: what follows it is fed through and scored
            line.scoring, line.ornament = True, False
            line.queue = list(line.after)
            if not line.queue:
                line.finished = True
                return beat
            return self._take_queued(line)
        if kind == "final":
            line.arrived = True
            if self.cadence is not None:
                self.cadence.arrive(self, line)
            return beat
        assert self.repeats is not None  # only Repeats makes copy boundaries
        self.repeats.queue(self, line, index)
        if self.loops is not None and self.loops.joins_a_loop(line, [pitch for _, pitch, _, _ in line.queue]):
            # Two copied phrases meet in a loop that neither holds alone: this one is written anew.
            line.queue, line.not_before, line.between = [], beat, []
        if not line.queue:  # the model phrase holds no onsets (a long tie): write this one anew
            return beat
        return self._take_queued(line)  # nothing comes before the first kept note

    @staticmethod
    def _take_queued(line: Line) -> float:
        """Write the line's next queued note (copied, kept or after the gap) and return its onset; an
        ornamented return's budget of notes before it goes with it (`between` runs beside `queue`)."""
        line.forced = line.queue.pop(0)
        if line.between:
            line.between.pop(0)
        return line.forced[0]

    def sample_notes(self, step: np.ndarray, pitch_logits: np.ndarray, duration_logits: np.ndarray,
                     velocity: np.ndarray, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        r = self.request
        note = {"pitch": np.zeros(self.size, np.int32), "step": step.astype(np.int32),
                "duration": np.zeros(self.size, np.int32), "velocity": np.zeros(self.size, np.float32),
                "position": np.zeros(self.size, np.int32), "cadence": np.zeros(self.size, np.int32),
                "chord": self.next_chord.copy(), "until": np.full(self.size, UNTIL_CLASSES - 1, np.int32)}
        for v, line in enumerate(self.lines):
            if line.finished:
                continue
            onset = float(self.next_onset[v])
            if line.forced is not None:
                onset, pitch, duration_beats, vel = line.forced
                duration = int(self.config.quantize_beats(np.array([duration_beats]))[0])
                if line.scoring:
                    line.join += _log_softmax(pitch_logits[v])[int(pitch)] + line.step_score
            else:
                in_chord = bool(line.chord) and abs(onset - line.position) < 1e-9 and bool(line.onsets)
                at = At(onset=onset, in_chord=in_chord, voice=len(line.chord) if in_chord else 0)
                allowed = self._pitch_mask(line, at)
                logits = pitch_logits[v].reshape(-1) + self._pitch_bias(line, at)
                pitch = sample(logits, allowed, r.temperature, r.top_k, r.top_p, rngs[v])
                dmask = np.ones(len(self.grid), dtype=bool)
                dmask[0] = False
                dmask[self.max_duration_class:] = False
                longest = min(c.longest(self, line, onset, int(pitch)) for c in self.constraints) \
                    if self.constraints else math.inf
                if longest < math.inf:  # a constraint ends the note sooner (at a change of chord)
                    short = dmask & (self.grid <= longest + 1e-9)
                    dmask = short if short.any() else dmask & (np.arange(len(self.grid)) == 1)
                duration = sample(duration_logits[v] + self._duration_bias(line, onset), dmask, r.timing_temperature,
                                  0, 1.0, rngs[v])
                duration_beats = float(self.grid[duration])
                vel = float(np.clip(velocity[v].reshape(-1)[0], 0.0, 1.0))
            note["pitch"][v], note["duration"][v], note["velocity"][v] = pitch, duration, vel
            note["position"][v], note["cadence"][v] = self._features(onset)
            self._append(line, onset, int(pitch), duration_beats, vel)
            if self.config.future:
                note["until"][v] = self._until(line, onset)
        return note

    def _pitch_mask(self, line: Line, at: At) -> np.ndarray:
        """Which key-relative pitches the next note may have: what every constraint allows."""
        in_chord = at.in_chord
        allowed = self.allowed[self.lines.index(line)].copy()
        if in_chord:
            allowed[:max(line.chord) + 1] = False  # chord notes are stored low to high
        for constraint in self.constraints:
            allowed = constraint.pitches(self, line, at, allowed)
        if not allowed.any():  # the constraints leave nothing: fall back to the range and the hard rules
            allowed = self.allowed[self.lines.index(line)].copy()
            if in_chord and allowed[max(line.chord) + 1:].any():
                allowed[:max(line.chord) + 1] = False
            for constraint in self.constraints:
                narrowed = constraint.essential(self, line, at, allowed)
                allowed = narrowed if narrowed.any() else allowed
        return allowed

    def _pitch_bias(self, line: Line, at: At) -> np.ndarray | float:
        """What the constraints that prefer rather than forbid add to the network's pitch logits."""
        return _summed(constraint.bias(self, line, at) for constraint in self.constraints)

    def _step_bias(self, line: Line) -> np.ndarray | float:
        """What they add to the network's logits for the step to the line's next note."""
        return _summed(constraint.step_bias(self, line) for constraint in self.constraints)

    def _duration_bias(self, line: Line, onset: float) -> np.ndarray | float:
        """What they add to the network's logits for the length of a note starting at `onset`."""
        return _summed(constraint.duration_bias(self, line, onset) for constraint in self.constraints)

    def copy_ahead(self, line: Line, onset: float) -> list[int]:
        """The first pitches of the repeat that starts within a bar of `onset`, or [] if none does."""
        if self.repeats is None or line.boundary >= len(self.boundaries):
            return []
        beat, kind, index = self.boundaries[line.boundary]
        if kind != "copy" or beat - onset > self.plan.bar_beats + 1e-9:
            return []
        return [pitch for _, pitch, _, _ in self.repeats.copied_notes(self, line, index)[:LOOP_SPAN]]

    def on_beat(self, onset: float) -> bool:
        """Whether an onset (beats from the plan's start, which is a bar line) falls on a counted beat."""
        return abs(onset / self.beat - round(onset / self.beat)) < 1e-6

    def sounding(self, line: Line, at: float, *, at_or_before: bool = False) -> list[int]:
        """Pitches of earlier notes still sounding at beat `at` (with `at_or_before`, those starting there too)."""
        found = []
        for onset, pitch, duration in zip(line.onsets[-48:], line.pitches[-48:], line.durations[-48:]):
            started = onset <= at + 1e-9 if at_or_before else onset < at - 1e-9
            if started and onset + duration > at + 1e-9:
                found.append(pitch)
        return found

    def _append(self, line: Line, onset: float, pitch: int, duration: float, velocity: float) -> None:
        new_onset = not line.onsets or onset > line.position + 1e-9
        if new_onset:
            line.previous_sounding = (sorted(self.sounding(line, line.position, at_or_before=True))
                                      if line.onsets else [])
            line.chord = [pitch]
        else:
            line.chord = line.chord + [pitch]
        line.position = onset
        line.onsets.append(onset)
        line.pitches.append(pitch)
        line.durations.append(duration)
        line.velocities.append(velocity)
        line.history = (line.history + [pitch])[-16:]
        if len(line.pitches) >= MAX_NOTES_PER_VARIATION:
            line.finished = True

    def piece(self, v: int, seed: int) -> GeneratedPiece:
        r = self.request
        line = self.lines[v]
        spb = 60.0 / self.tempo
        primer = line.primer
        offset = primer.plan_start if primer is not None else 0.0
        onsets = np.array(line.onsets) + offset
        durations = np.array(line.durations)
        end = offset + self.plan.beats
        if len(onsets):
            # Every note is released by the final chord, which is held to the end of the last bar.
            last = onsets.max()
            durations = np.where(onsets < last - 1e-9, np.minimum(durations, last - onsets), end - last)
        relative = onsets - onsets.min() if len(onsets) else onsets
        marked = phrase_dynamics(self.plan, np.array(line.onsets), STYLE_DYNAMICS.get(r.style, 0.0),
                                 np.random.default_rng([seed, 5]))
        velocity = apply_dynamics(np.array(line.velocities) * 127.0 + marked, relative, r.dynamics)
        pitches = np.clip(np.array(line.pitches, dtype=np.int64) + line.shift, 0, 127)
        primer_length, primer_end = 0, 0.0
        if primer is not None:
            p_onset, p_pitch, p_duration, p_velocity = primer.output
            primer_length = len(p_pitch)
            primer_end = float(offset * spb)
            onsets = np.concatenate([p_onset, onsets])
            durations = np.concatenate([np.minimum(p_duration, offset - p_onset + 4.0), durations])
            velocity = np.concatenate([p_velocity.astype(np.float64), velocity])
            pitches = np.concatenate([p_pitch.astype(np.int64), pitches])
        start = onsets * spb
        order = np.lexsort((pitches, start))
        seq = NoteSequence(
            pitch=pitches[order], step=np.diff(start[order], prepend=0.0), duration=durations[order] * spb,
            velocity=np.clip(np.round(velocity[order]), 1, 127), tempo_bpm=self.tempo,
            time_signature=r.metre, program=r.instrument or 0)
        return GeneratedPiece(notes=seq, primer_length=primer_length, primer_end=primer_end, seed=seed,
                              plan=self.plan, plan_start=offset * spb, key=(line.tonic, line.mode),
                              accompaniment=self.backing(seq, offset * spb))

    def backing(self, melody: NoteSequence, start_seconds: float) -> NoteSequence | None:
        """The accompaniment of a melody style under requested chords (when it is asked for)."""
        r = self.request
        if not (r.accompany and not self.polyphonic and self.spans and len(melody)):
            return None
        return accompaniment(self.spans, time_signature=r.metre, tempo_bpm=self.tempo,
                             melody_low=int(melody.pitch.min()), start_seconds=start_seconds)


def _summed(biases: Iterable[np.ndarray | None]) -> np.ndarray | float:
    """The sum of the logits some constraints add (0 where none does)."""
    total: np.ndarray | float = 0.0
    for bias in biases:
        if bias is not None:
            total = total + bias
    return total


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def sample(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_k: int, top_p: float,
            rng: np.random.Generator) -> int:
    """Sample one class from masked, temperature-scaled logits with optional top-k/top-p."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1) / temperature
    if not allowed.any():
        allowed = np.ones_like(allowed)
    z = np.where(allowed, z, -np.inf)
    z -= z.max()
    p = np.exp(z)
    if top_k and top_k < allowed.sum():
        kth = np.partition(p, -top_k)[-top_k]
        p = np.where(p >= kth, p, 0.0)
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = order[:int(np.searchsorted(cumulative, top_p)) + 1]
        trimmed = np.zeros_like(p)
        trimmed[keep] = p[keep]
        p = trimmed / trimmed.sum()
    return int(rng.choice(len(p), p=p))
