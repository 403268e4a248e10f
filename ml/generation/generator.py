"""Generation: the model's compiled step in a loop, with every control a musician asks for.

Per note the engine makes two compiled calls and samples on the host in between:

1. `encode`: push the previous note into the window (a preallocated variable, updated in the
   graph), run the BiLSTM encoder, and return step logits. The host samples the step.
2. `decode`: given that step, return pitch, duration and velocity. The host samples them.

Sampling stays on the host because that is where the controls live (key mask, pitch range,
top-k/top-p, loop guard) and where a seeded numpy generator makes the output byte-identical
for the same seed. All variations of a request run as one batch.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence, estimate_key, parse_key, scale_pitch_classes
from ml.evaluation.mgeval import FIGURE_REPEATS, MAX_SAME_PITCH, find_degenerate_loop
from ml.generation.form import FormPlan, plan_form, style_form
from ml.generation.request import GenerationRequest
from ml.model.config import (
    CADENCE_CLASSES,
    METRES,
    MODE_NAMES,
    PAD_PITCH,
    ModelConfig,
    cadence_class,
    key_shift,
    metre_class,
    read_model_info,
)

_DYNAMIC_LEVELS = {"soft": (50, 50), "medium": (80, 80), "loud": (108, 108),
                   "crescendo": (40, 112), "diminuendo": (112, 40)}
MAX_NOTES_PER_VARIATION = 6000
MAX_CHORD_NOTES = 6  # more simultaneous onsets than this is a stuck timing head, not music
MAX_STEP_BEATS = 4.0
MAX_DURATION_BEATS = 8.0
# Chorale voices from the bass up (MIDI pitches), a little wider than Bach's own ranges.
VOICE_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "chorale": ((36, 64), (48, 69), (53, 76), (59, 81)),
}
# Figure length -> repeats in a row that count as a degenerate loop: the evaluation's thresholds.
LOOP_REPEATS = {1: MAX_SAME_PITCH, **FIGURE_REPEATS}
LOOP_WINDOW = max(length * repeats for length, repeats in LOOP_REPEATS.items())  # notes a loop can span


@dataclass
class GeneratedPiece:
    notes: NoteSequence
    primer_length: int  # index of the first generated note
    primer_end: float  # seconds where the continuation starts
    seed: int  # the seed that reproduces this piece (its variation's own stream)
    plan: FormPlan | None = None  # the form the continuation follows
    plan_start: float = 0.0  # seconds where the plan's first bar starts
    key: tuple[int, str] = (0, "major")  # the key it was written in (tonic pitch class, mode)

    def renotated(self, time_signature: tuple[int, int], factor: float) -> GeneratedPiece:
        """The same sounds notated with `factor` times longer beats (1/factor of the note values)."""
        notes = replace(self.notes, tempo_bpm=self.notes.tempo_bpm / factor, time_signature=time_signature,
                        tempo_changes=[], time_signatures=[], bar_phase=self.notes.bar_phase / factor)
        plan = self.plan
        if plan is not None:
            plan = replace(plan, bar_beats=plan.bar_beats / factor, phrases=tuple(
                replace(p, start=p.start / factor, end=p.end / factor, copy_until=p.copy_until / factor,
                        cadence_at=p.cadence_at / factor) for p in plan.phrases))
        return replace(self, notes=notes, plan=plan)

    def form(self) -> dict[str, Any] | None:
        """The plan with each phrase's start and end in seconds, as the site shows it."""
        if self.plan is None:
            return None
        spb = 60.0 / self.notes.tempo_bpm
        data = self.plan.to_dict()
        for phrase in data["phrases"]:
            phrase["start_s"] = round(self.plan_start + float(phrase["start"]) * spb, 3)
            phrase["end_s"] = round(self.plan_start + float(phrase["end"]) * spb, 3)
        return data


class Generator:
    """Loads a model lazily and generates pieces. One per worker process; thread-safe."""

    def __init__(self, model_path: Path, *, loop_guard: bool = True, cadence_guard: bool = True,
                 voice_guard: bool = True, metre_guard: bool = True, chains: dict[str, Any] | None = None) -> None:
        """The guards can be switched off so that the evaluation measures what the model does alone:
        `loop_guard` bans the note that would complete a degenerate loop, `cadence_guard` makes the
        last phrase close V-I on the tonic and the piece open on the tonic triad, `voice_guard`
        bans parallel fifths and octaves between the voices of consecutive chords and keeps
        chorale voices in their ranges, `metre_guard`
        lets no onset skip a downbeat (every bar starts with a note). With `chains`
        (style -> ml.evaluation.joint_markov.JointMarkov) the chain writes instead of the network, through
        the same sampler: the evaluation's fair baseline."""
        self.model_path = Path(model_path)
        self.loop_guard = loop_guard
        self.cadence_guard = cadence_guard
        self.voice_guard = voice_guard
        self.metre_guard = metre_guard
        self.chains = chains
        self._model: Any = None
        self._config: ModelConfig | None = None
        self._extra: dict[str, Any] = {}
        self._steps: dict[int, _CompiledSteps] = {}
        self._lock = threading.Lock()

    # -- metadata, cheap: read from the archive without TensorFlow --------------------------------
    def _info(self) -> None:
        if self._config is None:
            info = read_model_info(self.model_path)
            self._config, self._extra = info["config"], info["extra"]

    @property
    def config(self) -> ModelConfig:
        self._info()
        assert self._config is not None
        return self._config

    @property
    def styles(self) -> list[str]:
        return list(self.config.styles)

    @property
    def name(self) -> str:
        return self.model_path.stem

    def default_tempo(self, style: str) -> float:
        return self.config.default_tempo(style)

    def _stats(self, style: str) -> dict[str, Any]:
        self._info()
        stats: dict[str, Any] = self._extra.get("stats", {}).get(style, {})
        return stats

    def load(self) -> None:
        if self.chains is not None:
            return
        with self._lock:
            if self._model is None:
                from ml.model.network import load_model

                self._model = load_model(self.model_path)
                self._config, self._extra = self._model.config, self._model.extra

    def warm_up(self) -> None:
        """Load the weights and compile the one-variation step, so that the first request is fast."""
        self.load()
        if 1 not in self._steps:
            self.generate(GenerationRequest(style=self.styles[0], notes=8, seed=0))

    # -- requests ---------------------------------------------------------------------------------
    def validate(self, request: GenerationRequest) -> None:
        """Check what only the model knows: the style, and whether the length is reachable."""
        config = self.config
        config.style_index(request.style)
        tempo = self._tempo(request)
        if request.seconds is not None:
            per_beat = self._stats(request.style).get("notes_per_beat", 4.0)
            expected = request.seconds * tempo / 60.0 * per_beat
            if expected > MAX_NOTES_PER_VARIATION:
                raise ValueError(
                    f"{request.seconds:g} seconds of {request.style} at {tempo:g} BPM needs about "
                    f"{expected:.0f} notes, more than the {MAX_NOTES_PER_VARIATION} this model can write "
                    "in one piece: choose a shorter length or a slower tempo.")
        if request.primer is not None and len(request.primer) > 20000:
            raise ValueError("The MIDI file to continue has more than 20000 notes.")

    def _tempo(self, request: GenerationRequest) -> float:
        if request.tempo_bpm is not None:
            return float(request.tempo_bpm)
        if request.primer is not None:
            return float(np.clip(request.primer.tempo_bpm, 20, 300))
        return self.default_tempo(request.style)

    def plan(self, request: GenerationRequest) -> FormPlan:
        """The form of the piece: the request's (or the style's) phrases over whole bars."""
        numerator, denominator = request.time_signature
        bar_beats = numerator * 4.0 / denominator
        stats = self._stats(request.style)
        if request.seconds is not None:
            beats = request.seconds * self._tempo(request) / 60.0
        else:
            beats = float(request.notes or 8) / max(0.25, float(stats.get("notes_per_beat", 2.0)))
        form, phrase_bars = style_form(request.style)
        every = float(stats.get("phrase_marks", 0.0)) >= 0.5  # trained with marked phrase ends
        polyphonic = float(stats.get("notes_per_onset", 1.0)) >= 1.5
        return plan_form(request.form or form, phrase_bars=request.phrase_bars or phrase_bars,
                         total_bars=max(1, round(beats / bar_beats)), bar_beats=bar_beats,
                         cadences="every" if every else "sections", ending_bars=2 if polyphonic else 1)

    def learnt_metre(self, request: GenerationRequest) -> tuple[tuple[int, int], float]:
        """The time signature to write a request in, and how many of its beats make one requested beat.

        A style that never learnt the requested metre but learnt the same bar in other note values
        writes in that notation, at a tempo that keeps every note's length in seconds: renaissance
        music learnt 3/2 and no 3/4, so a 3/4 request is written as 3/2 at twice the quarter-note
        tempo, with halved note values in the result (as editions of such music transcribe it).
        A request with a MIDI file to continue keeps that file's notation.
        """
        asked = request.time_signature
        seen = self._stats(request.style).get("metres")
        if not seen or request.primer is not None or seen.get(METRES[metre_class(asked)], 0) > 0:
            return asked, 1.0
        numerator, denominator = asked
        options = [((numerator, denominator // 2), 2.0)] if denominator % 2 == 0 else []
        options.append(((numerator, denominator * 2), 0.5))
        tempo = self._tempo(request)
        for other, factor in options:
            name = f"{other[0]}/{other[1]}"
            # Only a metre the model knows by name, at a tempo a request may have.
            if name in METRES and seen.get(name, 0) > 0 and 20 <= tempo * factor <= 300:
                return other, factor
        return asked, 1.0

    def generate(self, request: GenerationRequest, progress: Callable[[float], None] | None = None
                 ) -> list[GeneratedPiece]:
        """Generate `request.variations` pieces in one batch."""
        self.validate(request)
        self.load()
        written, factor = self.learnt_metre(request)
        if factor != 1.0:
            inner = replace(request, time_signature=written, tempo_bpm=self._tempo(request) * factor)
            return [piece.renotated(request.time_signature, factor) for piece in self.generate(inner, progress)]
        config = self.config
        base_seed = request.seed if request.seed is not None else secrets.randbits(32)
        seeds = [(base_seed + v) % 2**32 for v in range(request.variations)]
        rngs = [np.random.default_rng(s) for s in seeds]
        tempo = self._tempo(request)
        plan = self.plan(request)
        lines = [self._line(request, rng, config, plan) for rng in rngs]
        stats = self._stats(request.style)
        batch = _Batch(request, config, tempo, plan, lines,
                       polyphonic=float(stats.get("notes_per_onset", 1.0)) >= 1.5,
                       voice_ranges=VOICE_RANGES.get(request.style) if self.voice_guard else None,
                       loop_guard=self.loop_guard, cadence_guard=self.cadence_guard,
                       voice_guard=self.voice_guard, metre_guard=self.metre_guard)
        with self._lock:  # one request at a time per process: the window variables are shared
            steps: Any = self._steps.get(len(seeds))
            if self.chains is not None:
                from ml.evaluation.joint_markov import ChainSteps

                steps = ChainSteps(self.chains[request.style], len(seeds))
            elif steps is None:
                steps = self._steps[len(seeds)] = _CompiledSteps(self._model, len(seeds))
            steps.reset(batch.window_arrays(), {
                "style": config.style_index(request.style), "metre": metre_class(request.time_signature),
                "mode": np.array([line.mode_index for line in lines], np.int32)})
            step_logits = steps.encode(None)
            reported = -1.0
            while not batch.done:
                step, position, cadence = batch.sample_steps(step_logits, rngs)
                pitch_logits, duration_logits, velocity = steps.decode(step, position, cadence)
                note = batch.sample_notes(step, pitch_logits, duration_logits, velocity, rngs)
                if progress is not None and batch.progress - reported >= 0.02:
                    reported = batch.progress
                    progress(min(reported, 1.0))
                if batch.done:
                    break
                step_logits = steps.encode(note)
        if progress is not None:
            progress(1.0)
        return [batch.piece(v, seeds[v]) for v in range(len(seeds))]

    def _line(self, request: GenerationRequest, rng: np.random.Generator, config: ModelConfig,
              plan: FormPlan) -> _Line:
        """One variation's key, and its primer moved into the key-relative space."""
        if request.key != "any":
            tonic, mode = parse_key(request.key), request.mode
        elif request.primer is not None:
            tonic, mode = estimate_key(request.primer)
        else:
            tonic, mode = self._style_key(request.style, rng)
        model_mode = "minor" if mode in ("minor", "dorian") else "major"
        shift = key_shift(tonic) if config.key_relative else 0
        primer = None
        if request.primer is not None:
            move = 0
            if request.key != "any":  # the primer is moved into the requested key, the nearer way
                move = key_shift((tonic - estimate_key(request.primer)[0]) % 12)
            primer = _Primer.from_notes(request.primer, config, plan, move=move, shift=shift)
        return _Line(tonic=tonic, mode=mode, shift=shift, mode_index=MODE_NAMES.index(model_mode), primer=primer)

    def _style_key(self, style: str, rng: np.random.Generator) -> tuple[int, str]:
        """A key drawn from the keys of the style's training pieces."""
        keys = self._stats(style).get("keys") or {"0:major": 1}
        names = list(keys)
        weights = np.array([float(keys[k]) for k in names])
        tonic, mode = names[int(rng.choice(len(names), p=weights / weights.sum()))].split(":")
        return int(tonic), mode


@dataclass
class _Primer:
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
    def from_notes(cls, seq: NoteSequence, config: ModelConfig, plan: FormPlan, *, move: int, shift: int) -> _Primer:
        step_beats, duration_beats = seq.to_beats()
        onset = np.round(np.cumsum(step_beats.astype(np.float64)) * 48) / 48
        bar = plan.bar_beats
        plan_start = (math.floor(onset[-1] / bar + 1e-9) + 1) * bar
        pitch = np.clip(seq.pitch.astype(np.int64) + move, 0, 127)
        cadence_at = plan.next_cadence(0.0)
        to_cadence = (cadence_at if cadence_at is not None else math.inf) + plan_start - onset
        return cls(pitch=np.clip(pitch - shift, 0, 127).astype(np.int32), step=config.quantize_beats(step_beats),
                   duration=config.quantize_beats(duration_beats), velocity=(seq.velocity / 127.0).astype(np.float32),
                   position=config.position_class(np.mod(onset - plan_start, bar)), cadence=cadence_class(to_cadence),
                   output=(onset, pitch, duration_beats.astype(np.float64), seq.velocity.copy()), plan_start=plan_start)


@dataclass
class _Line:
    """One variation: its key, and the notes written so far (onsets in beats from the plan's start)."""

    tonic: int
    mode: str
    shift: int  # semitones from the key-relative space to the piece's key
    mode_index: int
    primer: _Primer | None
    onsets: list[float] = field(default_factory=list)
    pitches: list[int] = field(default_factory=list)  # key-relative
    durations: list[float] = field(default_factory=list)
    velocities: list[float] = field(default_factory=list)
    queue: list[tuple[float, int, float, float]] = field(default_factory=list)  # notes of a repeat, to copy
    forced: tuple[float, int, float, float] | None = None  # the copied note this step writes
    chord: list[int] = field(default_factory=list)  # pitches at the current onset
    previous_sounding: list[int] = field(default_factory=list)  # pitches sounding at the previous onset
    position: float = -math.inf  # beats: onset of the last note
    not_before: float = -math.inf  # beats: no free onset before this (the end of a copied passage)
    boundary: int = 0  # index of the next hard boundary
    arrived: bool = False  # the final cadence has sounded: only its chord may follow
    finished: bool = False
    history: list[int] = field(default_factory=list)


class _Batch:
    """Sampling state of every variation: the plan, the notes so far, the masks, and when to stop.

    The plan's hard boundaries are where a repeat starts (the phrase's notes are copied from its
    model, and fed to the network so that its context follows) and the final cadence (the last
    phrase arrives on the downbeat of the last bar, on the tonic, and holds). In between, steps are
    sampled so that no onset overshoots the next boundary.
    """

    def __init__(self, request: GenerationRequest, config: ModelConfig, tempo: float, plan: FormPlan,
                 lines: list[_Line], *, polyphonic: bool, voice_ranges: tuple[tuple[int, int], ...] | None,
                 loop_guard: bool = True, cadence_guard: bool = True, voice_guard: bool = True,
                 metre_guard: bool = True) -> None:
        self.request, self.config, self.tempo, self.plan, self.lines = request, config, tempo, plan, lines
        self.metre_guard = metre_guard
        self.polyphonic, self.voice_ranges = polyphonic, voice_ranges
        self.loop_guard, self.cadence_guard, self.voice_guard = loop_guard, cadence_guard, voice_guard
        self.size = len(lines)
        self.grid = np.array(config.time_grid, dtype=np.float64)
        self.target_notes = request.notes if request.notes is not None else MAX_NOTES_PER_VARIATION
        last = plan.phrases[-1]
        self.boundaries: list[tuple[float, str, int]] = [
            (p.start, "copy", i) for i, p in enumerate(plan.phrases) if p.copy_of is not None]
        self.boundaries.append((last.cadence_at, "final", len(plan.phrases) - 1))
        self.max_step_class = int(np.searchsorted(self.grid, MAX_STEP_BEATS, side="right"))
        self.max_duration_class = int(np.searchsorted(self.grid, MAX_DURATION_BEATS, side="right"))
        self.next_onset = np.zeros(self.size)  # beats: where each variation's next note starts
        self.allowed: list[np.ndarray] = []
        for line in lines:
            allowed = np.zeros(128, dtype=bool)
            low, high = request.pitch_low - line.shift, request.pitch_high - line.shift
            allowed[max(0, low):max(0, min(127, high) + 1)] = True
            if request.key != "any":
                allowed &= np.isin(np.arange(128) % 12, list(scale_pitch_classes(0, line.mode)))
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
               "cadence": np.full((self.size, w), CADENCE_CLASSES, np.int32)}
        for v, line in enumerate(self.lines):
            p = line.primer
            n = min(w, len(p.pitch)) if p is not None else 0
            if n:
                for key in out:
                    out[key][v, w - n:] = getattr(p, key)[-n:]
        return out

    @property
    def done(self) -> bool:
        return all(line.finished for line in self.lines)

    @property
    def progress(self) -> float:
        return float(min(max(line.position, 0.0) for line in self.lines)) / max(self.plan.beats, 1e-9)

    def _features(self, onset: float) -> tuple[int, int]:
        """Bar-position class and beats-to-cadence class of an onset (beats from the plan's start)."""
        cadence_at = self.plan.next_cadence(onset)
        position = int(self.config.position_class(onset % self.plan.bar_beats))
        return position, int(cadence_class(cadence_at - onset if cadence_at is not None else math.inf))

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
            positions[v], cadences[v] = self._features(onset)
        return chosen, positions, cadences

    def _next_onset(self, v: int, line: _Line, logits: np.ndarray, rng: np.random.Generator) -> float:
        """Where variation v's next note starts; sets `forced` for a copied note, `finished` at the end."""
        line.forced = None
        if line.finished:
            return line.position
        if line.queue:
            line.forced = line.queue.pop(0)
            return line.forced[0]
        if not line.onsets:  # the first note opens the plan's first bar
            return self._arrive(line, 0.0) if self.boundaries[line.boundary][0] <= 0 else 0.0
        chord_full = len(line.chord) >= MAX_CHORD_NOTES or bool(
            line.chord and max(line.chord) + line.shift >= self.request.pitch_high)
        mask = np.ones(len(self.grid), dtype=bool)
        mask[self.max_step_class:] = False
        if line.arrived:  # after the final chord's first note only its other notes may come
            if chord_full:
                line.finished = True
                return line.position
            c = _sample(logits, mask, self.request.timing_temperature, 0, 1.0, rng)
            if c != 0:
                line.finished = True
            return line.position
        boundary = self.boundaries[line.boundary][0]
        copying_left_off = line.not_before > line.position + 1e-9
        if chord_full or copying_left_off:  # no note joins a full chord, or a copied one
            mask[0] = False
        # The model's step is sampled as it is; a step past the next boundary lands on it (a phrase
        # that is about to repeat, or the final cadence), one that falls short of where a copied
        # passage left off is moved there.
        c = _sample(logits, mask, self.request.timing_temperature, 0, 1.0, rng)
        onset = line.position + self.grid[c]
        if c != 0 and copying_left_off and onset < line.not_before:
            onset = line.not_before
        if self.metre_guard and c != 0:  # no onset skips a downbeat: the next bar starts with a note
            downbeat = (math.floor(line.position / self.plan.bar_beats + 1e-9) + 1) * self.plan.bar_beats
            onset = min(onset, downbeat)
        if onset >= boundary - 1e-6:
            return self._arrive(line, boundary)
        return onset

    def _arrive(self, line: _Line, beat: float) -> float:
        """Reach a hard boundary: start copying a repeat, or sound the final cadence."""
        _, kind, index = self.boundaries[line.boundary]
        line.boundary += 1
        if kind == "final":
            line.arrived = True
            if self.cadence_guard and not self.polyphonic and line.pitches:
                # The note before the final tonic is a tone of the dominant chord: move it to the
                # nearest one the key and range allow (a changed approach note, as a cadence has).
                allowed = self.allowed[self.lines.index(line)] & np.isin(np.arange(128) % 12, [2, 7, 11])
                last = line.pitches[-1]
                if allowed.any() and not allowed[last]:
                    options = np.flatnonzero(allowed)
                    line.pitches[-1] = int(options[np.abs(options - last).argmin()])
            return beat
        phrase = self.plan.phrases[index]
        offset = phrase.start - (phrase.start if phrase.copy_of is None else self.plan.phrases[phrase.copy_of].start)
        line.queue = [(onset + offset, pitch, min(duration, phrase.start + phrase.copy_until - onset - offset)
                       if phrase.final else duration, velocity)
                      for onset, pitch, duration, velocity in self._copied_notes(line, index)]
        line.not_before = phrase.start + phrase.copy_until
        if not line.queue:  # the model phrase holds no onsets (a long tie): write this one anew
            return beat
        line.forced = line.queue.pop(0)
        return line.forced[0]

    def sample_notes(self, step: np.ndarray, pitch_logits: np.ndarray, duration_logits: np.ndarray,
                     velocity: np.ndarray, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        r = self.request
        note = {"pitch": np.zeros(self.size, np.int32), "step": step.astype(np.int32),
                "duration": np.zeros(self.size, np.int32), "velocity": np.zeros(self.size, np.float32),
                "position": np.zeros(self.size, np.int32), "cadence": np.zeros(self.size, np.int32)}
        for v, line in enumerate(self.lines):
            if line.finished:
                continue
            onset = float(self.next_onset[v])
            if line.forced is not None:
                onset, pitch, duration_beats, vel = line.forced
                duration = int(self.config.quantize_beats(np.array([duration_beats]))[0])
            else:
                in_chord = bool(line.chord) and abs(onset - line.position) < 1e-9 and bool(line.onsets)
                allowed = self._pitch_mask(line, onset, in_chord)
                pitch = _sample(pitch_logits[v], allowed, r.temperature, r.top_k, r.top_p, rngs[v])
                dmask = np.ones(len(self.grid), dtype=bool)
                dmask[0] = False
                dmask[self.max_duration_class:] = False
                duration = _sample(duration_logits[v], dmask, r.timing_temperature, 0, 1.0, rngs[v])
                duration_beats = float(self.grid[duration])
                vel = float(np.clip(velocity[v].reshape(-1)[0], 0.0, 1.0))
            note["pitch"][v], note["duration"][v], note["velocity"][v] = pitch, duration, vel
            note["position"][v], note["cadence"][v] = self._features(onset)
            self._append(line, onset, int(pitch), duration_beats, vel)
        return note

    def _pitch_mask(self, line: _Line, onset: float, in_chord: bool) -> np.ndarray:
        """Which key-relative pitches the next note may have."""
        allowed = self.allowed[self.lines.index(line)].copy()
        if in_chord:
            allowed[:max(line.chord) + 1] = False  # chord notes are stored low to high
        voice = len(line.chord) if in_chord else 0
        pitch_class = np.arange(128) % 12
        if self.cadence_guard:
            final_at = self.plan.phrases[-1].cadence_at
            third = 3 if line.mode in ("minor", "dorian") else 4
            opening = line.primer is None and (not line.onsets or (in_chord and line.onsets[0] == onset))
            if line.arrived or opening:
                # The final chord, and the first: the tonic in the bass, then the tonic triad (a
                # piece opens in its key, as it closes; a continuation's opening is its primer's).
                allowed &= np.isin(pitch_class, [0] if voice == 0 and (self.polyphonic or line.arrived)
                                   else [0, third, 7])
            elif final_at - min(self.plan.bar_beats, 2.0 if self.polyphonic else 1.0) <= onset < final_at:
                # Just before it, the dominant: V in the bass (in a single line, a tone of V), the
                # dominant seventh chord above it. A line's last note before that is set by `_arrive`.
                held = _sounding(line, onset)
                lowest = np.arange(128) < (min(held) if held else 128)
                if voice > 0:
                    lowest[:] = False
                bass_pcs = [7] if self.polyphonic else [2, 7, 11]
                allowed &= np.where(lowest, np.isin(pitch_class, bass_pcs), np.isin(pitch_class, [2, 5, 7, 11]))
        if self.voice_guard and in_chord and self.polyphonic:
            allowed &= _no_parallels(line.previous_sounding, line.chord)
            held = _sounding(line, onset)
            if len(line.previous_sounding) == 4 and len(held) + len(line.chord) == 3:
                # This note completes a four-part chord: no two voices of it may move in parallels
                # from the last one (voices counted from the bass, as the evaluation counts them).
                allowed &= _completes_without_parallels(line.previous_sounding, held + line.chord,
                                                        np.flatnonzero(allowed))
        if self.voice_guard and self.polyphonic and self.voice_ranges is not None and voice < len(self.voice_ranges):
            low, high = self.voice_ranges[voice]  # each voice in its range; a new onset's first note is the bass
            band = np.zeros(128, dtype=bool)
            band[max(0, low - line.shift):max(0, high - line.shift + 1)] = True
            allowed &= band
        if self.loop_guard and not line.arrived:
            for p in loop_completions(line.history):
                allowed[p] = False
            upcoming = self._copy_ahead(line, onset)
            if upcoming:  # the last bar before a repeat: no loop across into the copied notes
                allowed[_loops_across(line.history, np.flatnonzero(allowed), upcoming)] = False
        if not allowed.any():  # the constraints leave nothing: fall back to the key and range alone
            allowed = self.allowed[self.lines.index(line)].copy()
            if in_chord and allowed[max(line.chord) + 1:].any():
                allowed[:max(line.chord) + 1] = False
        return allowed

    def _copied_notes(self, line: _Line, index: int) -> list[tuple[float, int, float, float]]:
        """(onset, pitch, duration, velocity) of the written notes that phrase `index` repeats."""
        phrase = self.plan.phrases[index]
        source = self.plan.phrases[phrase.copy_of] if phrase.copy_of is not None else phrase
        return [note for note in zip(line.onsets, line.pitches, line.durations, line.velocities)
                if source.start - 1e-9 <= note[0] < source.start + phrase.copy_until - 1e-9]

    def _copy_ahead(self, line: _Line, onset: float) -> list[int]:
        """The first pitches of the repeat that starts within a bar of `onset`, or [] if none does."""
        if line.boundary >= len(self.boundaries):
            return []
        beat, kind, index = self.boundaries[line.boundary]
        if kind != "copy" or beat - onset > self.plan.bar_beats + 1e-9:
            return []
        return [pitch for _, pitch, _, _ in self._copied_notes(line, index)[:LOOP_WINDOW]]

    def _append(self, line: _Line, onset: float, pitch: int, duration: float, velocity: float) -> None:
        new_onset = not line.onsets or onset > line.position + 1e-9
        if new_onset:
            line.previous_sounding = sorted(_sounding(line, line.position, at_or_before=True)) if line.onsets else []
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
        velocity = apply_dynamics(np.array(line.velocities) * 127.0, relative, r.dynamics)
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
            time_signature=r.time_signature, program=r.instrument)
        return GeneratedPiece(notes=seq, primer_length=primer_length, primer_end=primer_end, seed=seed,
                              plan=self.plan, plan_start=offset * spb, key=(line.tonic, line.mode))


def _sounding(line: _Line, at: float, *, at_or_before: bool = False) -> list[int]:
    """Pitches of earlier notes still sounding at beat `at` (with `at_or_before`, those starting there too)."""
    found = []
    for onset, pitch, duration in zip(line.onsets[-48:], line.pitches[-48:], line.durations[-48:]):
        started = onset <= at + 1e-9 if at_or_before else onset < at - 1e-9
        if started and onset + duration > at + 1e-9:
            found.append(pitch)
    return found


def _no_parallels(before: list[int], chord: list[int]) -> np.ndarray:
    """Pitches for the next note of `chord` that make no parallel fifth or octave with a note below it.

    `before` is what sounded at the previous onset. Each voice is taken to come from the nearest
    pitch that sounded before (voices move by small steps); a pair moves in parallels when both
    voices move the same way and keep a perfect fifth or octave (or a compound of one).
    """
    allowed = np.ones(128, dtype=bool)
    if not before or not chord:
        return allowed
    previous = np.array(before)
    candidates = np.arange(128)
    came_from = previous[np.abs(previous[None, :] - candidates[:, None]).argmin(axis=1)]
    for low in chord:
        low_from = int(previous[np.abs(previous - low).argmin()])
        if low_from == low:
            continue  # a voice that does not move makes no parallels
        interval = came_from - low_from
        same_way = np.sign(candidates - came_from) == np.sign(low - low_from)
        parallel = ((interval > 0) & np.isin(interval % 12, (0, 7)) & ((candidates - low) % 12 == interval % 12)
                    & (candidates > low) & (candidates != came_from) & same_way)
        allowed &= ~parallel
    return allowed


def _completes_without_parallels(before: list[int], present: list[int], candidates: np.ndarray) -> np.ndarray:
    """Which of `candidates` complete `present` (three notes) to a four-note chord moving from
    `before` (four notes) with no parallel fifth or octave between any two voices."""
    allowed = np.ones(128, dtype=bool)
    old = sorted(before)
    for candidate in candidates.tolist():
        new = sorted([*present, candidate])
        if new == old:
            continue
        for low in range(4):
            for high in range(low + 1, 4):
                first, second = old[high] - old[low], new[high] - new[low]
                moved = new[low] != old[low] and new[high] != old[high]
                same_way = (new[low] - old[low]) * (new[high] - old[high]) > 0
                if moved and same_way and first > 0 and first % 12 in (0, 7) and second % 12 == first % 12:
                    allowed[candidate] = False
    return allowed


def apply_dynamics(velocity: np.ndarray, onset_beats: np.ndarray, dynamics: str) -> np.ndarray:
    """Shape model velocities (0..127) to a dynamic level or a crescendo/diminuendo line.

    The model's own note-to-note accents are kept as deviations from its mean; the level comes
    from the user's choice.
    """
    if not len(velocity):
        return velocity
    begin, end = _DYNAMIC_LEVELS[dynamics]
    span = float(onset_beats.max()) or 1.0
    curve = begin + (end - begin) * (onset_beats / span)
    accents = np.clip(velocity - velocity.mean(), -20, 20)
    return np.clip(curve + accents, 1, 127)


def _loops_across(history: list[int], candidates: np.ndarray, upcoming: list[int]) -> np.ndarray:
    """The candidate pitches that, as the last note before a copied passage, make a degenerate
    loop with it (one that the passage alone, or the notes before it alone, do not make)."""
    def looped(middle: int) -> bool:
        seq = np.array(history[-LOOP_WINDOW:] + [middle] + upcoming[:LOOP_WINDOW])
        return find_degenerate_loop(seq, np.full(len(seq), 0.5)) is not None

    if looped(-1):  # a loop that no note here can break (nor make): nothing to ban
        return candidates[:0]
    return np.array([p for p in candidates if looped(int(p))], dtype=np.int64)


def loop_completions(history: list[int]) -> set[int]:
    """Pitches that, played next, would complete a degenerate loop (see LOOP_REPEATS)."""
    banned = set()
    for length, repeats in LOOP_REPEATS.items():
        needed = length * repeats - 1
        if len(history) < needed:
            continue
        tail = history[-needed:]
        if all(tail[i] == tail[i + length] for i in range(needed - length)):
            banned.add(int(tail[-length]))
    return banned


def _sample(logits: np.ndarray, allowed: np.ndarray, temperature: float, top_k: int, top_p: float,
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


class _CompiledSteps:
    """The model's two per-note calls, compiled once per batch size, with the window in variables.

    Under TensorFlow both calls are `tf.function`s compiled with XLA; the window lives in
    preallocated variables that the graph shifts in place. Other backends fall back to eager
    calls on numpy arrays (correct, slower), so the engine also runs where TF is absent.
    """

    def __init__(self, model: Any, batch: int) -> None:
        import keras

        from ml.model.config import WINDOW_INPUTS

        self.model = model
        self.config: ModelConfig = model.config
        self.batch = batch
        self.window_inputs = WINDOW_INPUTS
        self.tf = keras.backend.backend() == "tensorflow"
        w = self.config.window
        if self.tf:
            import tensorflow as tf

            self.vars = {key: tf.Variable(tf.zeros((batch, w), tf.float32 if key == "velocity" else tf.int32))
                         for key in WINDOW_INPUTS}
            for key in ("style", "metre", "mode"):
                self.vars[key] = tf.Variable(tf.zeros((batch,), tf.int32))
            c = self.config
            context_size = 2 * c.lstm_units + c.style_embedding + c.metre_embedding + c.mode_embedding
            self.context = tf.Variable(tf.zeros((batch, context_size), tf.float32))
            # Concrete functions of fixed signatures: a call skips tf.function's per-call lookup of
            # which trace fits its arguments, and the note travels as two tensors rather than six.
            self.int_inputs = tuple(key for key in WINDOW_INPUTS if key != "velocity")
            self._encode = tf.function(self._encode_graph, jit_compile=True).get_concrete_function()
            self._encode_push = tf.function(self._encode_push_graph, jit_compile=True).get_concrete_function(
                tf.TensorSpec((batch, len(self.int_inputs)), tf.int32), tf.TensorSpec((batch,), tf.float32))
            self._decode = tf.function(self._decode_graph, jit_compile=True).get_concrete_function(
                tf.TensorSpec((batch, 3), tf.int32))
        else:
            self.arrays: dict[str, np.ndarray] = {}
            self.context_np: Any = None

    def reset(self, window: dict[str, np.ndarray], piece: dict[str, Any]) -> None:
        per_piece = {key: np.broadcast_to(np.asarray(value, np.int32), (self.batch,)).copy()
                     for key, value in piece.items()}
        if self.tf:
            for key, value in {**window, **per_piece}.items():
                self.vars[key].assign(value)
        else:
            self.arrays = {**{k: v.copy() for k, v in window.items()}, **per_piece}

    # graph bodies
    def _encode_graph(self) -> Any:
        context, step_logits = self.model.encode({k: v for k, v in self.vars.items()})
        self.context.assign(context)
        return step_logits

    def _encode_push_graph(self, ints: Any, velocity: Any) -> Any:
        import tensorflow as tf

        columns = {key: ints[:, i] for i, key in enumerate(self.int_inputs)}
        columns["velocity"] = velocity
        for key in self.window_inputs:
            var = self.vars[key]
            var.assign(tf.concat([var[:, 1:], tf.expand_dims(columns[key], 1)], axis=1))
        return self._encode_graph()

    def _decode_graph(self, chosen: Any) -> Any:
        return self.model.decode(self.context, chosen[:, 0], chosen[:, 1], chosen[:, 2])

    # host API
    def encode(self, note: dict[str, np.ndarray] | None) -> np.ndarray:
        if self.tf:
            if note is None:
                return self._encode().numpy()
            ints = np.stack([note[key] for key in self.int_inputs], axis=1).astype(np.int32)
            return self._encode_push(ints, note["velocity"].astype(np.float32)).numpy()
        if note is not None:
            for key in self.window_inputs:
                self.arrays[key] = np.concatenate([self.arrays[key][:, 1:], note[key][:, None]], axis=1)
        context, step_logits = self.model.encode(self.arrays)
        self.context_np = context
        return np.asarray(step_logits)

    def decode(self, step: np.ndarray, position: np.ndarray, cadence: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        args = (step.astype(np.int32), position.astype(np.int32), cadence.astype(np.int32))
        if self.tf:
            pitch, duration, velocity = self._decode(np.stack(args, axis=1))
        else:
            pitch, duration, velocity = self.model.decode(self.context_np, *args)
        return np.asarray(pitch), np.asarray(duration), np.asarray(velocity)
