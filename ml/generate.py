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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.config import PAD_PITCH, ModelConfig, read_model_info
from ml.mgeval import FIGURE_REPEATS, MAX_SAME_PITCH
from ml.notes import NoteSequence, parse_key, scale_pitch_classes
from ml.request import GenerationRequest

_DYNAMIC_LEVELS = {"soft": (50, 50), "medium": (80, 80), "loud": (108, 108),
                   "crescendo": (40, 112), "diminuendo": (112, 40)}
MAX_NOTES_PER_VARIATION = 6000
MAX_CHORD_NOTES = 6  # more simultaneous onsets than this is a stuck timing head, not music
MAX_STEP_BEATS = 4.0
MAX_DURATION_BEATS = 8.0
# Figure length -> repeats in a row that count as a degenerate loop: the evaluation's thresholds.
LOOP_REPEATS = {1: MAX_SAME_PITCH, **FIGURE_REPEATS}


@dataclass
class GeneratedPiece:
    notes: NoteSequence
    primer_length: int  # index of the first generated note
    primer_end: float  # seconds where the continuation starts
    seed: int  # the seed that reproduces this piece (its variation's own stream)


class Generator:
    """Loads a model lazily and generates pieces. One per worker process; thread-safe."""

    def __init__(self, model_path: Path, *, loop_guard: bool = True) -> None:
        """`loop_guard=False` lets the model loop: the evaluation measures how often it would."""
        self.model_path = Path(model_path)
        self.loop_guard = loop_guard
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

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                from ml.model import load_model

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
            per_beat = self._extra.get("stats", {}).get(request.style, {}).get("notes_per_beat", 4.0)
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

    def generate(self, request: GenerationRequest, progress: Callable[[float], None] | None = None
                 ) -> list[GeneratedPiece]:
        """Generate `request.variations` pieces in one batch."""
        self.validate(request)
        self.load()
        config = self.config
        base_seed = request.seed if request.seed is not None else secrets.randbits(32)
        seeds = [(base_seed + v) % 2**32 for v in range(request.variations)]
        rngs = [np.random.default_rng(s) for s in seeds]
        tempo = self._tempo(request)
        primers = [self._primer(request, rng, config) for rng in rngs]
        batch = _Batch(request, config, tempo, primers, loop_guard=self.loop_guard)
        with self._lock:  # one request at a time per process: the window variables are shared
            steps = self._steps.get(len(seeds))
            if steps is None:
                steps = self._steps[len(seeds)] = _CompiledSteps(self._model, len(seeds))
            steps.reset(batch.window_arrays(), config.style_index(request.style))
            step_logits = steps.encode(None)
            reported = -1.0
            while not batch.done:
                step = batch.sample_steps(step_logits, rngs)
                pitch_logits, duration_logits, velocity = steps.decode(step)
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

    def _primer(self, request: GenerationRequest, rng: np.random.Generator, config: ModelConfig) -> _Primer:
        if request.primer is not None:
            return _Primer.from_notes(request.primer, config)
        options = self._extra.get("primers", {}).get(request.style) or []
        if not options:  # a model without stored openings starts from an empty window
            return _Primer(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32),
                           np.zeros(0, np.float32), output=None)
        chosen = options[int(rng.integers(len(options)))]
        pitch = np.array(chosen["pitch"], dtype=np.int32)
        if request.key != "any":
            # Move the opening into the requested key, by the smallest shift, so the model's
            # context already agrees with the scale mask.
            shift = (parse_key(request.key) - int(chosen["key"])) % 12
            shift = shift - 12 if shift > 6 else shift
            pitch = np.clip(pitch + shift, 0, 127)
        return _Primer(pitch, np.array(chosen["step"], np.int32), np.array(chosen["duration"], np.int32),
                       np.array(chosen["velocity"], np.float32) / 127.0, output=None)


@dataclass
class _Primer:
    """A window's worth of context, and (for an uploaded primer) the notes to keep in the output."""

    pitch: np.ndarray
    step: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray  # 0..1
    output: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None  # beats-based notes to keep

    @classmethod
    def from_notes(cls, seq: NoteSequence, config: ModelConfig) -> _Primer:
        step_beats, duration_beats = seq.to_beats()
        onset_beats = np.cumsum(step_beats.astype(np.float64))
        return cls(pitch=seq.pitch.astype(np.int32), step=config.quantize_beats(step_beats),
                   duration=config.quantize_beats(duration_beats),
                   velocity=(seq.velocity / 127.0).astype(np.float32),
                   output=(onset_beats, seq.pitch.copy(), duration_beats.astype(np.float64), seq.velocity.copy()))


class _Batch:
    """Sampling state of every variation: the notes so far, the masks, and when to stop."""

    def __init__(self, request: GenerationRequest, config: ModelConfig, tempo: float, primers: list[_Primer],
                 *, loop_guard: bool = True) -> None:
        self.request, self.config, self.tempo, self.primers = request, config, tempo, primers
        self.loop_guard = loop_guard
        self.size = len(primers)
        self.grid = np.array(config.time_grid, dtype=np.float64)
        beats_per_second = tempo / 60.0
        self.target_beats = request.seconds * beats_per_second if request.seconds is not None else math.inf
        self.target_notes = request.notes if request.notes is not None else MAX_NOTES_PER_VARIATION
        self.start_beats = np.array([p.output[0][-1] if p.output is not None else 0.0 for p in primers])
        self.onsets: list[list[float]] = [[] for _ in primers]
        self.pitches: list[list[int]] = [[] for _ in primers]
        self.durations: list[list[float]] = [[] for _ in primers]
        self.velocities: list[list[float]] = [[] for _ in primers]
        self.history: list[list[int]] = [list(p.pitch[-16:]) for p in primers]
        self.chord: list[list[int]] = [[] for _ in primers]  # pitches at the current onset
        self.position = np.zeros(self.size)  # beats since the continuation started
        self.finished = np.zeros(self.size, dtype=bool)
        self.first = True
        allowed = np.zeros(128, dtype=bool)
        allowed[request.pitch_low:request.pitch_high + 1] = True
        if request.key != "any":
            scale = scale_pitch_classes(parse_key(request.key), request.mode)
            allowed &= np.isin(np.arange(128) % 12, list(scale))
        self.allowed_pitch = allowed
        self.max_step_class = int(np.searchsorted(self.grid, MAX_STEP_BEATS, side="right"))
        self.max_duration_class = int(np.searchsorted(self.grid, MAX_DURATION_BEATS, side="right"))

    def window_arrays(self) -> dict[str, np.ndarray]:
        w = self.config.window
        out = {"pitch": np.full((self.size, w), PAD_PITCH, np.int32),
               "step": np.full((self.size, w), self.config.pad_time, np.int32),
               "duration": np.full((self.size, w), self.config.pad_time, np.int32),
               "velocity": np.zeros((self.size, w), np.float32)}
        for v, p in enumerate(self.primers):
            n = min(w, len(p.pitch))
            if n:
                for key in out:
                    out[key][v, w - n:] = getattr(p, key)[-n:]
        return out

    @property
    def done(self) -> bool:
        return bool(self.finished.all())

    @property
    def progress(self) -> float:
        if self.request.notes is not None:
            return float(min(len(p) for p in self.pitches)) / self.target_notes
        return float(np.min(np.minimum(self.position / self.target_beats, 1.0)))

    def sample_steps(self, logits: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
        chosen = np.zeros(self.size, dtype=np.int32)
        for v in range(self.size):
            mask = np.ones(len(self.grid), dtype=bool)
            mask[self.max_step_class:] = False
            chord = self.chord[v]
            if len(chord) >= MAX_CHORD_NOTES or (chord and max(chord) >= self.request.pitch_high):
                mask[0] = False
            if self.first:
                mask[0] = False  # the continuation starts on a new onset, never inside the primer's chord
            chosen[v] = _sample(logits[v], mask, self.request.timing_temperature, 0, 1.0, rngs[v])
        return chosen

    def sample_notes(self, step: np.ndarray, pitch_logits: np.ndarray, duration_logits: np.ndarray,
                     velocity: np.ndarray, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        r = self.request
        note = {"pitch": np.zeros(self.size, np.int32), "step": step.astype(np.int32),
                "duration": np.zeros(self.size, np.int32), "velocity": np.zeros(self.size, np.float32)}
        for v in range(self.size):
            in_chord = step[v] == 0 and bool(self.chord[v])
            allowed = self.allowed_pitch.copy()
            if in_chord:
                # Chord notes are stored low to high, so the next one lies above the last.
                allowed[:max(self.chord[v]) + 1] = False
            for p in loop_completions(self.history[v]) if self.loop_guard else ():
                allowed[p] = False
            if not allowed.any():  # nothing fits above the chord: fall back to the scale alone
                allowed = self.allowed_pitch.copy()
            pitch = _sample(pitch_logits[v], allowed, r.temperature, r.top_k, r.top_p, rngs[v])
            dmask = np.ones(len(self.grid), dtype=bool)
            dmask[0] = False
            dmask[self.max_duration_class:] = False
            duration = _sample(duration_logits[v], dmask, r.timing_temperature, 0, 1.0, rngs[v])
            note["pitch"][v], note["duration"][v] = pitch, duration
            note["velocity"][v] = float(np.clip(velocity[v].reshape(-1)[0], 0.0, 1.0))
            self._append(v, int(step[v]), pitch, int(duration), float(note["velocity"][v]))
        self.first = False
        return note

    def _append(self, v: int, step: int, pitch: int, duration: int, velocity: float) -> None:
        if self.finished[v]:
            return
        onset = self.position[v] + (self.grid[step] if self.pitches[v] or self.primers[v].output is not None else 0.0)
        if onset >= self.target_beats or len(self.pitches[v]) >= self.target_notes:
            self.finished[v] = True
            return
        self.position[v] = onset
        self.chord[v] = self.chord[v] + [pitch] if step == 0 and self.pitches[v] else [pitch]
        self.onsets[v].append(onset)
        self.pitches[v].append(pitch)
        self.durations[v].append(self.grid[duration])
        self.velocities[v].append(velocity)
        self.history[v] = (self.history[v] + [pitch])[-16:]
        if len(self.pitches[v]) >= self.target_notes:
            self.finished[v] = True

    def piece(self, v: int, seed: int) -> GeneratedPiece:
        r = self.request
        spb = 60.0 / self.tempo
        primer = self.primers[v]
        onsets = np.array(self.onsets[v]) + (self.start_beats[v] if primer.output is not None else 0.0)
        durations = np.array(self.durations[v])
        if r.seconds is not None and len(onsets):
            # End cleanly on the requested length: every note is released by then, and the last
            # chord is held to it, as a final chord is.
            end = self.start_beats[v] + self.target_beats
            durations = np.minimum(durations, end - onsets)
            durations[onsets == onsets.max()] = end - onsets.max()
        relative = onsets - onsets.min() if len(onsets) else onsets
        velocity = apply_dynamics(np.array(self.velocities[v]) * 127.0, relative, r.dynamics)
        primer_length, primer_end = 0, 0.0
        if primer.output is not None:
            p_onset, p_pitch, p_duration, p_velocity = primer.output
            primer_length = len(p_pitch)
            primer_end = float(onsets[0] * spb) if len(onsets) else float(p_onset[-1] * spb)
            onsets = np.concatenate([p_onset, onsets])
            durations = np.concatenate([p_duration, durations])
            velocity = np.concatenate([p_velocity.astype(np.float64), velocity])
            pitches = np.concatenate([p_pitch.astype(np.int64), np.array(self.pitches[v], dtype=np.int64)])
        else:
            pitches = np.array(self.pitches[v], dtype=np.int64)
        start = onsets * spb
        order = np.lexsort((pitches, start))
        seq = NoteSequence(
            pitch=pitches[order], step=np.diff(start[order], prepend=0.0), duration=durations[order] * spb,
            velocity=np.clip(np.round(velocity[order]), 1, 127), tempo_bpm=self.tempo,
            time_signature=r.time_signature, program=r.instrument)
        return GeneratedPiece(notes=seq, primer_length=primer_length, primer_end=primer_end, seed=seed)


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

        self.model = model
        self.config: ModelConfig = model.config
        self.batch = batch
        self.tf = keras.backend.backend() == "tensorflow"
        w = self.config.window
        if self.tf:
            import tensorflow as tf

            self.vars = {
                "pitch": tf.Variable(tf.zeros((batch, w), tf.int32)),
                "step": tf.Variable(tf.zeros((batch, w), tf.int32)),
                "duration": tf.Variable(tf.zeros((batch, w), tf.int32)),
                "velocity": tf.Variable(tf.zeros((batch, w), tf.float32)),
                "style": tf.Variable(tf.zeros((batch,), tf.int32)),
            }
            context_size = 2 * self.config.lstm_units + self.config.style_embedding
            self.context = tf.Variable(tf.zeros((batch, context_size), tf.float32))
            self._encode = tf.function(self._encode_graph, jit_compile=True)
            self._encode_push = tf.function(self._encode_push_graph, jit_compile=True)
            self._decode = tf.function(self._decode_graph, jit_compile=True)
        else:
            self.arrays: dict[str, np.ndarray] = {}
            self.context_np: Any = None

    def reset(self, window: dict[str, np.ndarray], style: int) -> None:
        styles = np.full((self.batch,), style, np.int32)
        if self.tf:
            for key, value in window.items():
                self.vars[key].assign(value)
            self.vars["style"].assign(styles)
        else:
            self.arrays = {**{k: v.copy() for k, v in window.items()}, "style": styles}

    # graph bodies
    def _encode_graph(self) -> Any:
        context, step_logits = self.model.encode({k: v for k, v in self.vars.items()})
        self.context.assign(context)
        return step_logits

    def _encode_push_graph(self, pitch: Any, step: Any, duration: Any, velocity: Any) -> Any:
        import tensorflow as tf

        for key, value in (("pitch", pitch), ("step", step), ("duration", duration), ("velocity", velocity)):
            var = self.vars[key]
            var.assign(tf.concat([var[:, 1:], tf.expand_dims(value, 1)], axis=1))
        return self._encode_graph()

    def _decode_graph(self, step: Any) -> Any:
        return self.model.decode(self.context, step)

    # host API
    def encode(self, note: dict[str, np.ndarray] | None) -> np.ndarray:
        if self.tf:
            if note is None:
                return self._encode().numpy()
            return self._encode_push(note["pitch"], note["step"], note["duration"], note["velocity"]).numpy()
        if note is not None:
            for key in ("pitch", "step", "duration", "velocity"):
                self.arrays[key] = np.concatenate([self.arrays[key][:, 1:], note[key][:, None]], axis=1)
        context, step_logits = self.model.encode(self.arrays)
        self.context_np = context
        return np.asarray(step_logits)

    def decode(self, step: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.tf:
            pitch, duration, velocity = self._decode(step.astype(np.int32))
        else:
            pitch, duration, velocity = self.model.decode(self.context_np, step.astype(np.int32))
        return np.asarray(pitch), np.asarray(duration), np.asarray(velocity)
