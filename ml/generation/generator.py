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

import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import CLOSES, NoteSequence, close_kind, estimate_key, major_or_minor, parse_key, piece_key
from ml.generation.chords import ChordSpan, chord_spans, progression_key
from ml.generation.constraints import PassingNotes, build_constraints
from ml.generation.form import FormPlan, cadence_beat, plan_form, style_form, style_phrase_bars
from ml.generation.harmonise import melody_line, melody_notes, melody_plan
from ml.generation.infill import Passage
from ml.generation.piece import GeneratedPiece
from ml.generation.request import GenerationRequest
from ml.generation.sampler import MAX_NOTES_PER_VARIATION, Batch, Line, Primer
from ml.generation.steps import CompiledSteps
from ml.model.config import (
    DENSITY_CLASSES,
    METRES,
    MODE_NAMES,
    ModelConfig,
    key_shift,
    metre_class,
    piece_density_class,
    read_model_info,
)


class _Network:
    """A model file's weights and compiled steps, shared by every Generator of one process that loads
    the file with the same engine: their constraints and switches differ, the network does not. The
    window variables of its steps are shared too, so one request at a time runs through it."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.steps: dict[int, CompiledSteps] = {}
        self.lock = threading.Lock()


# Held while a Generator holds it: a file no Generator reads any more is let go (a worker that
# activates a new model does not keep the old one). A file written again is another key.
_NETWORKS: weakref.WeakValueDictionary[tuple[str, int, int, str], _Network] = weakref.WeakValueDictionary()
_NETWORKS_LOCK = threading.Lock()


def _network(path: Path, engine: str) -> _Network:
    """The loaded network of `path` as it is now on disk, loaded once per process and engine."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, engine)
    with _NETWORKS_LOCK:
        network = _NETWORKS.get(key)
        if network is None:
            from ml.model.inference import NumpyNet, has_inference_weights

            if engine == "numpy" and has_inference_weights(path):
                network = _Network(NumpyNet.from_archive(path))
            else:
                from ml.model.network import load_model

                network = _Network(load_model(path))
            _NETWORKS[key] = network
        return network


class Generator:
    """Loads a model lazily and generates pieces. One per worker process; thread-safe. Generators of
    one model file share its loaded weights and compiled steps (`_Network`)."""

    def __init__(self, model_path: Path, *, off: Iterable[str] = (),
                 writer: Callable[[str, int], Any] | None = None, engine: str = "compiled",
                 calibrated: bool = True, drift: dict[str, Any] | None = None) -> None:
        """`off` names the constraints to switch off (ml.generation.constraints.CONSTRAINTS), so that
        the evaluation can measure what the model does alone. With `writer` (style, batch size ->
        an object with CompiledSteps' reset, encode and decode) something else writes instead of
        the network, through the same sampler and constraints: the evaluation's Markov chain, its
        fair baseline, comes in this way.

        `engine`: "compiled" (Keras, its steps compiled with XLA: for long-lived workers) or "numpy"
        (ml.model.inference, no TensorFlow imported: for one-shot runs; a model file without the
        NumPy engine's weights falls back to "compiled").

        `calibrated`: a request's temperatures are relative to the style's calibrated sampling that
        the model file carries (`extra["sampling"]`, written by ml.evaluation.calibration); False
        samples at the request's temperatures as they are (what the calibration itself measures). The
        calibration is the network's: something else writing (`writer`) samples at the request's own.

        `drift`: per style, the tables of the drift constraint (ml.generation.correction) in place of
        the model file's (`extra["correction"]`); `calibrated=False` leaves the file's out too. Like
        the temperatures they are the network's, so something else writing goes without them."""
        if engine not in ("compiled", "numpy"):
            raise ValueError(f"Unknown engine {engine!r}: 'compiled' or 'numpy'.")
        self.engine = engine
        self.model_path = Path(model_path)
        self.off = frozenset(off)
        build_constraints(self.off)  # an unknown name fails here, not at the first request
        self.writer = writer
        self.calibrated = calibrated
        self._drift = drift
        self._config: ModelConfig | None = None
        self._extra: dict[str, Any] = {}
        self._network: _Network | None = None  # the model file's, once loaded
        self._lock = threading.Lock()

    @property
    def _model(self) -> Any:
        """The loaded network's model, or None before `load`."""
        return None if self._network is None else self._network.model

    @property
    def _steps(self) -> dict[int, CompiledSteps]:
        """The loaded network's compiled steps, by batch size."""
        return {} if self._network is None else self._network.steps

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

    def sampling(self, style: str) -> dict[str, float]:
        """The style's calibrated temperatures: pitch ("temperature") and rhythm ("timing_temperature"),
        each 1.0 (the network's own distribution) unless the model file says otherwise."""
        self._info()
        calibrated = self.calibrated and self.writer is None
        found = self._extra.get("sampling", {}).get(style, {}) if calibrated else {}
        return {name: float(found.get(name, 1.0)) for name in ("temperature", "timing_temperature")}

    def drift(self, style: str) -> dict[str, Any] | None:
        """The style's drift tables (ml.generation.correction), or None: none stored, or something
        else writes, or sampling is not calibrated."""
        self._info()
        if self.writer is not None:
            return None
        if self._drift is not None:
            return self._drift.get(style)
        return self._extra.get("correction", {}).get(style) if self.calibrated else None

    def passing(self, style: str) -> list[float] | None:
        """The style's passing-note rates per voice (ml.generation.figuration), or None: none stored."""
        self._info()
        rates = self._extra.get("passing", {}).get(style)
        return list(rates) if rates else None

    def _sampled(self, request: GenerationRequest) -> GenerationRequest:
        """The request as the sampler reads it: its temperatures times the style's calibration."""
        scale = self.sampling(request.style)
        if scale == {"temperature": 1.0, "timing_temperature": 1.0}:
            return request
        # A request holds temperatures up to 3 (its controls' range), the scaled ones too.
        return replace(request, temperature=min(request.temperature * scale["temperature"], 3.0),
                       timing_temperature=min(request.timing_temperature * scale["timing_temperature"], 3.0))

    def load(self) -> None:
        if self.writer is not None:
            return
        with self._lock:
            if self._network is None:
                self._network = _network(self.model_path, self.engine)
                self._config, self._extra = self._network.model.config, self._network.model.extra

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
        numerator, denominator = request.metre
        bar_beats = numerator * 4.0 / denominator
        stats = self._stats(request.style)
        if request.seconds is not None:
            beats = request.seconds * self._tempo(request) / 60.0
        else:
            beats = float(request.notes or 8) / max(0.25, float(stats.get("notes_per_beat", 2.0)))
        form = style_form(request.style)[0]
        every = self.marks_phrases(request.style)
        polyphonic = float(stats.get("notes_per_onset", 1.0)) >= 1.5
        phrase_bars = request.phrase_bars or style_phrase_bars(request.style, request.metre)
        plan = plan_form(request.form or form, phrase_bars=phrase_bars,
                         total_bars=max(1, round(beats / bar_beats)), bar_beats=bar_beats,
                         cadences="every" if every else "sections", ending_bars=2 if polyphonic else 1,
                         mode=major_or_minor(request.mode),
                         cadence_beat=cadence_beat(request.style, request.metre))
        return replace(plan, signalled=every)

    def marks_phrases(self, style: str) -> bool:
        """Whether the style's training pieces marked their phrase ends (fermatas): only then is the
        network told of every phrase's cadence (FormPlan.signalled)."""
        return float(self._stats(style).get("phrase_marks", 0.0)) >= 0.5

    def tempo(self, request: GenerationRequest, plan: FormPlan) -> float:
        """The tempo a piece is written at: the request's, or the style's moved a little (by up to
        FIT_TEMPO) so that the plan's whole phrases last the seconds asked for."""
        tempo = self._tempo(request)
        if request.tempo_bpm is not None or request.primer is not None or request.seconds is None:
            return tempo
        fitted = plan.beats * 60.0 / request.seconds
        return round(fitted, 2) if abs(fitted / tempo - 1.0) <= FIT_TEMPO else tempo

    def learnt_metre(self, request: GenerationRequest) -> tuple[tuple[int, int], float]:
        """The time signature to write a request in, and how many of its beats make one requested beat.

        A style that never learnt the requested metre but learnt the same bar in other note values
        writes in that notation, at a tempo that keeps every note's length in seconds: renaissance
        music learnt 3/2 and no 3/4, so a 3/4 request is written as 3/2 at twice the quarter-note
        tempo, with halved note values in the result (as editions of such music transcribe it).
        A metre the network reads only as "other" (4/2: its class holds 9/8, 6/4 and 3/1 too) is
        written in its named twin where the style learnt the twin from more pieces than all of its
        "other" metres: a folk song in 4/2 moves in half notes as a 4/4 one moves in quarters (the
        network reading "other" wrote it in quarters and eighths, as busy as its 9/8 and 6/4 tunes),
        while Renaissance music, which learnt 4/2 from most of its pieces, stays in it.
        A request with a MIDI file to continue keeps that file's notation.
        """
        asked = request.metre
        seen = self._stats(request.style).get("metres")
        name = METRES[metre_class(asked)]
        if not seen or request.primer is not None or (name != "other" and seen.get(name, 0) > 0):
            return asked, 1.0
        # A twin must have been learnt from more pieces than the class the request falls in.
        least = float(seen.get(name, 0))
        numerator, denominator = asked
        options = [((numerator, denominator // 2), 2.0)] if denominator % 2 == 0 else []
        options.append(((numerator, denominator * 2), 0.5))
        tempo = self._tempo(request)
        for other, factor in options:
            twin = f"{other[0]}/{other[1]}"
            # Only a metre the model knows by name, at a tempo a request may have.
            if twin in METRES and float(seen.get(twin, 0)) > least and 20 <= tempo * factor <= 300:
                return other, factor
        return asked, 1.0

    def style_metres(self, style: str) -> dict[tuple[int, int], float]:
        """The style's metres, each with how many of its training pieces were written in it."""
        if style in STYLE_METRES:
            return dict(STYLE_METRES[style])
        seen = self._stats(style).get("metres") or {}
        named = {tuple(int(n) for n in name.split("/")): float(count) for name, count in seen.items()
                 if name != "other" and count}
        return named or {(4, 4): 1.0}  # type: ignore[return-value]

    def style_metre(self, style: str) -> tuple[int, int]:
        """The metre most of the style's pieces are written in."""
        metres = self.style_metres(style)
        return max(metres, key=lambda m: metres[m])

    def resolve(self, request: GenerationRequest, notes: NoteSequence | None = None) -> GenerationRequest:
        """The request with what "the style's default" stands for filled in: its metre is drawn from
        the style's metres as often as its pieces use them (with the request's seed, so that a seed
        gives the same metre again); music that is kept (`notes`, or a MIDI file to continue) keeps
        its own."""
        if request.time_signature is not None:
            return request
        kept = notes if notes is not None else request.primer
        if kept is not None:
            numerator, denominator = kept.time_signature
            return replace(request, time_signature=(int(numerator), int(denominator)))
        metres = self.style_metres(request.style)
        names = sorted(metres)
        weights = np.array([metres[m] for m in names], dtype=np.float64)
        rng = np.random.default_rng(None if request.seed is None else [request.seed, 7])
        return replace(request, time_signature=names[int(rng.choice(len(names), p=weights / weights.sum()))])

    def generate(self, request: GenerationRequest, progress: Callable[[float], None] | None = None
                 ) -> list[GeneratedPiece]:
        """Generate `request.variations` pieces in one batch."""
        request = self.resolve(request)
        self.validate(request)
        self.load()
        written, factor = self.learnt_metre(request)
        if factor != 1.0:
            inner = replace(request, time_signature=written, tempo_bpm=self._tempo(request) * factor)
            return [piece.renotated(request.metre, factor) for piece in self.generate(inner, progress)]
        config = self.config
        seeds, rngs = _seeds(request)
        plan = self.plan(request)
        tempo = self.tempo(request, plan)
        lines = [self._line(request, rng, config, plan) for rng in rngs]
        stats = self._stats(request.style)
        spans = self.chord_spans(request, plan)
        constraints = build_constraints(self.off, chords=spans, drift=self.drift(request.style),
                                        passing=self.passing(request.style))
        batch = Batch(self._sampled(request), config, tempo, plan, lines,
                      polyphonic=float(stats.get("notes_per_onset", 1.0)) >= 1.5,
                      constraints=constraints, spans=spans)
        self._run(batch, rngs, progress)
        pieces = [batch.piece(v, seeds[v]) for v in range(len(seeds))]
        figuration = next((c for c in constraints if isinstance(c, PassingNotes)), None)
        if figuration is not None:
            pieces = [figuration.figure(piece, request.style) for piece in pieces]
        return pieces

    def _run(self, batch: Batch, rngs: list[np.random.Generator], progress: Callable[[float], None] | None) -> None:
        """Sample every line of `batch` to its end: the network's two steps, the sampler between."""
        request, lines = batch.request, batch.lines
        network = self._network  # loaded by the caller, unless something else writes
        # One request at a time per network: the window variables of its steps are shared.
        with self._lock if network is None else network.lock:
            if self.writer is not None:
                steps: Any = self.writer(request.style, len(lines))
            else:
                assert network is not None
                steps = network.steps.get(len(lines))
                if steps is None:
                    steps = network.steps[len(lines)] = CompiledSteps(network.model, len(lines))
            reads_future = bool(self.writer is None and self.config.future)
            steps.reset(batch.window_arrays(), {
                "style": self.config.style_index(request.style), "metre": metre_class(request.metre),
                "mode": np.array([line.mode_index for line in lines], np.int32),
                **({"density": np.array([line.density for line in lines], np.int32)} if self.config.density else {})},
                batch.future_arrays() if reads_future else None)
            step_logits = steps.encode(None)
            reported = -1.0
            while not batch.done:
                step, position, cadence = batch.sample_steps(step_logits, rngs)
                pitch_logits, duration_logits, velocity = steps.decode(step, position, cadence, batch.next_until,
                                                                       batch.next_chord)
                note = batch.sample_notes(step, pitch_logits, duration_logits, velocity, rngs)
                if progress is not None and batch.progress - reported >= 0.02:
                    reported = batch.progress
                    progress(min(reported, 1.0))
                if batch.done:
                    break
                if reads_future and batch.future_changed():
                    steps.set_future(batch.future_arrays())
                step_logits = steps.encode(note)
        if progress is not None:
            progress(1.0)

    def harmonise(self, melody: NoteSequence, request: GenerationRequest,
                  progress: Callable[[float], None] | None = None) -> list[GeneratedPiece]:
        """Write voices under `melody` (its top line is kept note for note), one piece per variation.

        The key is the request's, or the melody's own; the tempo and metre are the melody's; the
        phrases end at its held notes (see ml.generation.harmonise).
        """
        line = melody_line(melody)
        time_signature = line.time_signature
        bar_beats = time_signature[0] * 4.0 / time_signature[1]
        notes, pickup = melody_notes(line, bar_beats)
        spb = 60.0 / float(line.tempo_bpm)
        marked = [(e - float(line.start[0])) / spb + pickup for e in line.phrase_ends] or None
        plan = melody_plan(notes, bar_beats, marked)
        request = replace(request, tempo_bpm=float(np.clip(line.tempo_bpm, 20, 300)), time_signature=time_signature,
                          primer=None)
        self.validate(request)
        self.load()
        seeds, rngs = _seeds(request)
        config = self.config
        if request.key != "any":
            tonic, mode = parse_key(request.key), request.mode
        else:  # a whole melody: the key its notes fit that it closes in
            tonic, mode = piece_key(line)
        lines = [self._keyed_line(tonic, mode) for _ in seeds]
        for voices, rng in zip(lines, rngs):  # a melody's close is the style's rule's, unless another was asked for
            voices.close = None if request.ending == "style" else request.ending
            if config.density:
                voices.density = self._style_density(request.style, request.metre, rng)
        melody_off = "melody" in self.off
        batch = Batch(self._sampled(request), config, float(request.tempo_bpm or line.tempo_bpm), plan, lines,
                      polyphonic=True,
                      constraints=build_constraints(self.off | {"repeats"}, melody=notes),
                      start=notes[0][0] if not melody_off else 0.0)
        self._run(batch, rngs, progress)
        # The piece starts at the melody's first bar line (a pickup is a rest in the lower voices too).
        return [batch.piece(v, seeds[v]) for v in range(len(seeds))]

    def regenerate(self, passage: Passage, request: GenerationRequest,
                   progress: Callable[[float], None] | None = None) -> GeneratedPiece:
        """Write `passage`'s bars again and keep every note outside them (see ml.generation.infill).

        `request.variations` candidates are written in one batch; the one whose notes lead best
        into the bars after the gap (the network's likelihood of those kept notes) is returned.
        """
        request = self.resolve(request, passage.notes)  # the piece's own metre
        self.validate(request)
        self.load()
        seeds, rngs = _seeds(request)
        config = self.config
        passage = replace(passage, plan=replace(passage.plan, signalled=self.marks_phrases(request.style)))
        lines = [self._keyed_line(*passage.key) for _ in seeds]
        # The close the piece has (what the bars after the gap keep), unless another was asked for.
        close = close_kind(passage.notes, passage.key[0]) if request.ending == "style" else request.ending
        for line in lines:
            line.primer = passage.primer(config, line.shift)
            line.close = close
            line.density = piece_density(passage.notes)  # the pace of the piece the bars belong to
        stats = self._stats(request.style)
        spans = self.chord_spans(request, passage.plan)
        constraints = build_constraints(self.off | {"repeats"}, chords=spans, drift=self.drift(request.style),
                                        passing=self.passing(request.style))
        batch = Batch(self._sampled(request), config, float(passage.notes.tempo_bpm), passage.plan, lines,
                      polyphonic=float(stats.get("notes_per_onset", 1.0)) >= 1.5,
                      constraints=constraints, spans=spans,
                      gap=passage.gap, after=[passage.after(line.shift) for line in lines])
        self._run(batch, rngs, progress)
        best = max(range(len(lines)), key=lambda v: (lines[v].join, -v))
        piece = passage.filled(lines[best], seed=seeds[best])
        figuration = next((c for c in constraints if isinstance(c, PassingNotes)), None)
        if figuration is not None:  # the passage's own notes, as a piece written whole has them
            start, end = passage.gap
            piece = figuration.figure(piece, request.style, within=(passage.plan_start + start * passage.spb,
                                                                    passage.plan_start + end * passage.spb))
        # A melody under requested chords keeps its accompaniment in the new version.
        return replace(piece, accompaniment=batch.backing(piece.notes, passage.plan_start))

    @staticmethod
    def chord_spans(request: GenerationRequest, plan: FormPlan) -> list[ChordSpan] | None:
        """The requested chords laid over the plan's bars (None when no chords were asked for)."""
        progression = request.progression
        if progression is None:
            return None
        letters = [(p.letter[:1], p.start, p.end) for p in plan.phrases]  # a section's phrases share its letter
        return chord_spans(progression, phrase_letters=letters, bar_beats=plan.bar_beats, total_beats=plan.beats)

    def _line(self, request: GenerationRequest, rng: np.random.Generator, config: ModelConfig,
              plan: FormPlan) -> Line:
        """One variation's key, and its primer moved into the key-relative space."""
        progression = request.progression
        if request.key != "any":
            tonic, mode = parse_key(request.key), request.mode
        elif progression is not None:  # chord names without a key: the key they suggest
            tonic, mode = progression_key(progression)
        elif request.primer is not None:
            tonic, mode = estimate_key(request.primer)
        else:
            tonic, mode = self._style_key(request.style, rng)
        line = self._keyed_line(tonic, mode)
        if request.ending != "style":
            line.close = request.ending
        elif request.key != "any" and mode in ("minor", "dorian"):
            line.close = "perfect"  # a minor key asked for closes with its leading note, as the mode promises
        else:
            line.close = self._style_close(request.style, mode, rng)
        if config.density:  # a primer's own pace, or one drawn as the style's pieces in the metre have it
            line.density = (piece_density(request.primer) if request.primer is not None
                            else self._style_density(request.style, request.metre, rng))
        if request.primer is not None:
            move = 0
            if request.key != "any":  # the primer is moved into the requested key, the nearer way
                move = key_shift((tonic - estimate_key(request.primer)[0]) % 12)
            line.primer = Primer.from_notes(request.primer, config, plan, move=move, shift=line.shift)
        return line

    def _keyed_line(self, tonic: int, mode: str) -> Line:
        """A variation in a key: how far the key-relative space moves to it, and the mode the model reads."""
        shift = key_shift(tonic) if self.config.key_relative else 0
        return Line(tonic=tonic, mode=mode, shift=shift, mode_index=MODE_NAMES.index(major_or_minor(mode)), primer=None)

    def _style_close(self, style: str, mode: str, rng: np.random.Generator) -> str | None:
        """How a piece closes (`ml.data.notes.CLOSES`), drawn from the closes of the style's training
        pieces in its mode (the dorian mode reads the minor pieces'). None where the model has no such
        counts: the cadence constraint then follows the style's rule. The draw comes from a stream of
        its own (spawned from the variation's), so every other draw of the piece is what it was."""
        counts = (self._stats(style).get("closes") or {}).get(major_or_minor(mode)) or {}
        return _spawned_draw(counts, CLOSES, rng)

    def _style_density(self, style: str, metre: tuple[int, int], rng: np.random.Generator) -> int:
        """How busy a piece is (`ModelConfig.density`), drawn from the style's training pieces in the
        metre (in every metre where none was in it), from a stream of its own like the close's."""
        table: dict[str, dict[str, float]] = self._stats(style).get("densities") or {}
        counts = dict(table.get(METRES[metre_class(metre)]) or {})
        if not counts:
            for counted in table.values():
                for name, count in counted.items():
                    counts[name] = counts.get(name, 0) + count
        drawn = _spawned_draw(counts, list(counts), rng)
        return int(drawn) if drawn is not None else DENSITY_CLASSES // 2

    def _style_key(self, style: str, rng: np.random.Generator) -> tuple[int, str]:
        """A key drawn from the keys of the style's training pieces."""
        keys = self._stats(style).get("keys") or {"0:major": 1}
        names = list(keys)
        weights = np.array([float(keys[k]) for k in names])
        tonic, mode = names[int(rng.choice(len(names), p=weights / weights.sum()))].split(":")
        return int(tonic), mode


def _spawned_draw(counts: dict[str, Any], names: Sequence[str], rng: np.random.Generator) -> str | None:
    """One of `names` drawn as often as `counts` has it (None where none is counted), from a stream
    spawned from `rng`, so that every other draw from `rng` is what it was without this one."""
    kept = [name for name in names if float(counts.get(name, 0)) > 0]
    if not kept:
        return None
    weights = np.array([float(counts[name]) for name in kept])
    return kept[int(rng.spawn(1)[0].choice(len(kept), p=weights / weights.sum()))]


def piece_density(seq: NoteSequence) -> int:
    """How busy a piece is, as a model that reads it learnt it (`ml.model.config.density_class`)."""
    return piece_density_class(seq.seconds_to_beats(seq.start)) if len(seq) else DENSITY_CLASSES // 2


# The metres of each corpus style's training pieces, counted (the corpus split of data/corpus-1500.npz;
# the rarest left out: under 20 pieces, or under 5 of the quartets' 35). A request for the style's
# default draws from them.
STYLE_METRES: dict[str, dict[tuple[int, int], int]] = {
    "chorale": {(4, 4): 293, (3, 4): 37},
    "fiddle": {(6, 8): 332, (2, 2): 319, (2, 4): 251, (4, 4): 112, (3, 4): 84, (9, 8): 50},
    "folk": {(2, 4): 355, (4, 4): 310, (3, 4): 221, (6, 8): 135, (4, 2): 46, (3, 8): 43},
    "renaissance": {(4, 2): 939, (3, 2): 90, (4, 4): 45, (2, 2): 23},
    "string-quartet": {(3, 4): 13, (4, 4): 7, (6, 8): 5},
}
# How far the style's tempo may move for whole phrases to fill the length asked for.
FIT_TEMPO = 0.2


def _seeds(request: GenerationRequest) -> tuple[list[int], list[np.random.Generator]]:
    """One seed per variation (the request's, or a random one, counting up), and its generator."""
    base_seed = request.seed if request.seed is not None else secrets.randbits(32)
    seeds = [(base_seed + v) % 2**32 for v in range(request.variations)]
    return seeds, [np.random.default_rng(s) for s in seeds]
