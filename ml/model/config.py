"""The one config object shared by the model builder, the data pipeline and the generator."""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Step and duration are predicted as classes over musical durations in quarter-note beats. The grid
# holds every common note value (sixteenths, triplets, dotted values) so that quantized scores are
# represented exactly and sampled rhythms stay on the grid; performances snap to the nearest value.
TIME_GRID_BEATS: tuple[float, ...] = (
    0.0, 1 / 16, 1 / 12, 1 / 8, 1 / 6, 3 / 16, 1 / 4, 1 / 3, 3 / 8, 5 / 12, 1 / 2, 7 / 12, 2 / 3, 3 / 4,
    5 / 6, 7 / 8, 1.0, 7 / 6, 5 / 4, 4 / 3, 3 / 2, 5 / 3, 7 / 4, 2.0, 9 / 4, 7 / 3, 5 / 2, 8 / 3, 11 / 4,
    3.0, 10 / 3, 7 / 2, 4.0, 9 / 2, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 16.0,
)
PITCHES = 128
PAD_PITCH = PITCHES  # input-only token for window positions before the piece starts
# Where a note falls in its bar, in classes of 1/12 beat: sixteenths and triplets are exact.
POSITION_RESOLUTION = 12
# Beats until the next cadence (a chorale's fermata, the end of a piece), in half beats; the last
# class is "8 beats or more away".
CADENCE_CLASSES = 17
METRES = ("4/4", "3/4", "2/4", "6/8", "3/8", "2/2", "3/2", "other")
MODE_NAMES = ("major", "minor")
# Beats from an onset to the first note after a gap (the notes a passage must lead into), in half
# beats up to 16 beats; the last class is "further, or nothing follows".
UNTIL_CLASSES = 34
# The model's inputs: per note of the window, per piece, and of the note to predict; its heads.
WINDOW_INPUTS = ("pitch", "step", "duration", "velocity", "position", "cadence")
INPUT_NAMES = (*WINDOW_INPUTS, "style", "metre", "mode", "next_step", "next_position", "next_cadence")
# A model with chord inputs also reads, per note and for the note it predicts, the pitch classes of
# the harmony of its half bar (12 values, key-relative; all zero where the harmony is not known).
CHORD_INPUTS = ("chord", "next_chord")
# A model that reads the future also reads the notes after a gap (pitch, step, duration, bar
# position: the first `future` of them) and the beats from the last onset of the window, and from
# the note it predicts, to the first of them.
FUTURE_INPUTS = ("future_pitch", "future_step", "future_duration", "future_position", "until", "next_until")
OUTPUT_NAMES = ("pitch", "step", "duration", "velocity")
# How busy a piece is: its onsets per beat over the whole piece, in classes between these edges (a
# chorale moving in quarters with a few eighths 1.0-1.25, one full of passing eighths 1.75-2.0).
DENSITY_EDGES = (0.6, 0.8, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
DENSITY_CLASSES = len(DENSITY_EDGES) + 1


def density_class(rate: np.ndarray | float) -> np.ndarray:
    """The class of DENSITY_EDGES a piece's onsets per beat fall in."""
    value = np.asarray(rate, np.float64)
    return np.searchsorted(np.asarray(DENSITY_EDGES), value, side="right").astype(np.int32)


def onsets_per_beat(onset_beats: np.ndarray) -> float:
    """Distinct onsets per beat from the first onset to the last (0 for fewer than two onsets)."""
    starts = np.unique(np.round(np.asarray(onset_beats, np.float64), 3))
    span = float(starts[-1] - starts[0]) if len(starts) > 1 else 0.0
    return (len(starts) - 1) / span if span > 0 else 0.0


def piece_density_class(onset_beats: np.ndarray) -> int:
    """The `density_class` of a piece with these onsets (beats): what a model with `density` reads."""
    return int(density_class(onsets_per_beat(onset_beats)))


def until_class(beats: np.ndarray | float) -> np.ndarray:
    """Class of the beats from an onset to the notes after the gap (negative, unknown or none: far)."""
    value = np.asarray(beats, dtype=np.float64)
    far = UNTIL_CLASSES - 1
    classes = np.clip(np.round(np.nan_to_num(value, nan=far, posinf=far) * 2), 0, far)
    return np.where(value < 0, far, classes).astype(np.int32)


def key_shift(tonic: int) -> int:
    """Semitones from the key-relative space (tonic on C) up to `tonic`, the nearer way: -5..6."""
    tonic = int(tonic) % 12
    return tonic if tonic <= 6 else tonic - 12


def metre_class(time_signature: tuple[int, int]) -> int:
    text = f"{int(time_signature[0])}/{int(time_signature[1])}"
    return METRES.index(text) if text in METRES else METRES.index("other")


def cadence_class(beats_to_cadence: np.ndarray | float) -> np.ndarray:
    """Class of the beats left until the next cadence (negative or unknown: far)."""
    value = np.asarray(beats_to_cadence, dtype=np.float64)
    far = CADENCE_CLASSES - 1
    classes = np.clip(np.round(np.nan_to_num(value, nan=far, posinf=far) * 2), 0, far)
    return np.where(value < 0, far, classes).astype(np.int32)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes, loss weights and vocabularies of a note model.

    Attributes:
        styles: Style names; the model is conditioned on their index.
        default_tempos: Typical tempo (BPM) of each style, used when the user gives none.
        window: Number of previous notes the model sees.
        pitch_embedding: Width of the pitch embedding.
        time_embedding: Width of the step and duration embeddings.
        style_embedding: Width of the style embedding.
        lstm_units: Units per direction of each bidirectional LSTM layer.
        lstm_layers: Number of stacked bidirectional LSTM layers.
        dropout: Dropout between layers during training.
        loss_weights: Weight of each head in the combined loss.
        time_grid: Step/duration classes in beats.
        learning_rate: Adam learning rate.
        batch_size: Training batch size.
        transpose_range: Training pieces are transposed by a random shift in [-r, r] semitones
            (absolute pitch models only; a key-relative model has every piece on C already).
        key_relative: Pitches are learnt relative to the piece's tonic (moved to C), with the mode
            as an input; generation moves the result to the requested key.
        positions: Bar-position classes (1/12 beat each): bars up to positions/12 beats.
        position_embedding, cadence_embedding, metre_embedding, mode_embedding: Widths of the
            embeddings of the note's place in the bar, the beats to the next cadence, the time
            signature and the mode.
        chords: Each note (and the note to predict) carries the pitch classes of its half bar's
            harmony: the chords a user asks for, or nothing.
        future: How many notes after a gap the model reads (0: it reads only the past). A passage
            written into a gap leads into what follows it.
        future_units: Units of the LSTM that reads the notes after the gap.
        until_embedding: Width of the embedding of the beats left to the notes after the gap.
        final_cadence: The piece's last cadence is told apart from the others (a chorale's inner
            fermatas): its beats-to-cadence classes are a second set, CADENCE_CLASSES on.
        input_noise: In training, the share of the window's notes whose pitch, step and duration
            are each replaced (independently) by those of another note: the network learns not to
            take every note it reads as certain, as it must when it reads its own (see
            ml.data.windows.noisy). Bar positions and cadence distances stay true.
        own_samples: In training, the share of the examples whose last window note is the network's
            own sample for it (its pitch, step and duration drawn from the network's prediction
            given the real notes before it), the targets staying true: scheduled sampling, one
            note deep (see ml.data.windows.own_samples).
        own_depth: How many of the window's last notes are the network's own in those examples. One
            note deep, its step is drawn too; deeper, the pitches and durations of the last
            `own_depth` notes are drawn one after another, each given the notes drawn before it and
            the real steps (a drawn rhythm would move the bar position of every note after it).
        own_fields: Which of a deeper own sample's notes' values are drawn: ("pitch", "duration")
            (the default), or one of them alone, the other staying real.
        unlikelihood: In training, the weight of a second pitch loss, -log(1 - p), where p is the
            probability the network gives the pitches that would move the note in parallel fifths or
            octaves with a voice below it (ml.data.windows.parallel_slots): unlikelihood training
            (Welleck et al. 2019). 0: none, the pitch target is the note alone.
        unlikelihood_styles: The styles whose notes get that loss (empty: every style): those whose
            composers avoid parallels (a string quartet doubles its lines in octaves).
        anchor: In training, the weight of a second loss on the pitch, step and duration heads: the
            cross-entropy against a frozen teacher's distribution for the same inputs (knowledge
            distillation; `ml.model.train --teacher`, by default the model a fine-tuning starts from).
            With `unlikelihood`, the pitches that would make parallels are taken out of the teacher's
            pitch distribution first. A fine-tuning stays near its teacher wherever the data and the
            rule say nothing new. 0: no teacher.
        contrary: With `anchor` and `unlikelihood`, the probability the teacher gives the pitches that
            would make parallels goes to the pitches that move against the voices below (contrary
            motion), in the teacher's proportions, rather than to every other pitch (standing still).
        density: The whole window carries how busy its piece is (`density_class` of the piece's
            onsets per beat), as it carries the style, so that a piece might keep the pace it was
            given rather than settle into the plainest one its own notes suggest. Generation draws it
            per piece from the style's training pieces. A fine-tuning of the shipped model did not
            learn to read it (the model card's "Tried").
        density_embedding: Width of its embedding.
    """

    styles: tuple[str, ...]
    default_tempos: tuple[float, ...] = ()
    window: int = 24
    pitch_embedding: int = 48
    time_embedding: int = 16
    style_embedding: int = 8
    lstm_units: int = 96
    lstm_layers: int = 3
    dropout: float = 0.2
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"pitch": 1.0, "step": 0.5, "duration": 0.5, "velocity": 1.0})
    time_grid: tuple[float, ...] = TIME_GRID_BEATS
    learning_rate: float = 2e-3
    batch_size: int = 256
    transpose_range: int = 5
    key_relative: bool = True
    positions: int = 96
    position_embedding: int = 12
    cadence_embedding: int = 8
    metre_embedding: int = 4
    mode_embedding: int = 2
    chords: bool = False
    future: int = 0
    future_units: int = 64
    until_embedding: int = 8
    final_cadence: bool = False
    input_noise: float = 0.0
    own_samples: float = 0.0
    own_depth: int = 1
    own_fields: tuple[str, ...] = ("pitch", "duration")
    unlikelihood: float = 0.0
    unlikelihood_styles: tuple[str, ...] = ()
    anchor: float = 0.0
    contrary: bool = False
    density: bool = False
    density_embedding: int = 4

    @property
    def window_inputs(self) -> tuple[str, ...]:
        """Inputs with one value (or row) per note of the window."""
        return WINDOW_INPUTS + (("chord",) if self.chords else ())

    @property
    def input_names(self) -> tuple[str, ...]:
        return INPUT_NAMES + (CHORD_INPUTS if self.chords else ()) + (FUTURE_INPUTS if self.future else ()) + (
            ("density",) if self.density else ())

    def __post_init__(self) -> None:
        object.__setattr__(self, "styles", tuple(self.styles))
        object.__setattr__(self, "time_grid", tuple(float(t) for t in self.time_grid))
        object.__setattr__(self, "own_fields", tuple(self.own_fields))
        object.__setattr__(self, "unlikelihood_styles", tuple(self.unlikelihood_styles))
        tempos = tuple(float(t) for t in self.default_tempos) or (100.0,) * len(self.styles)
        object.__setattr__(self, "default_tempos", tempos)
        if not self.styles or any(not isinstance(s, str) or not s for s in self.styles):
            raise ValueError("A model needs at least one style, and every style needs a name.")
        if len(set(self.styles)) != len(self.styles):
            raise ValueError("Style names must be unique.")
        if len(tempos) != len(self.styles) or any(not 20 <= t <= 300 for t in tempos):
            raise ValueError("Give one default tempo between 20 and 300 BPM per style.")
        for name in ("window", "pitch_embedding", "time_embedding", "style_embedding", "lstm_units",
                     "lstm_layers", "batch_size", "positions", "position_embedding", "cadence_embedding",
                     "metre_embedding", "mode_embedding", "future_units", "until_embedding", "density_embedding"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, not {value!r}.")
        if not isinstance(self.future, int) or not 0 <= self.future <= 64:
            raise ValueError(f"future must be a whole number of notes from 0 to 64, not {self.future!r}.")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1).")
        if not 0.0 <= self.input_noise < 1.0:
            raise ValueError("input_noise must be in [0, 1).")
        if not math.isfinite(self.unlikelihood) or self.unlikelihood < 0:
            raise ValueError(f"unlikelihood must be a finite weight of 0 or more, not {self.unlikelihood!r}.")
        if not math.isfinite(self.anchor) or self.anchor < 0:
            raise ValueError(f"anchor must be a finite weight of 0 or more, not {self.anchor!r}.")
        if self.contrary and not (self.anchor and self.unlikelihood):
            raise ValueError("contrary moves the teacher's parallels: it needs anchor and unlikelihood.")
        if not set(self.unlikelihood_styles) <= set(self.styles):
            raise ValueError(f"unlikelihood_styles must name the model's styles, not {self.unlikelihood_styles!r}.")
        if not 0.0 <= self.own_samples <= 1.0:
            raise ValueError("own_samples must be in [0, 1].")
        if not isinstance(self.own_depth, int) or not 1 <= self.own_depth <= self.window:
            raise ValueError(f"own_depth must be a whole number of notes from 1 to the window, not {self.own_depth!r}.")
        if not self.own_fields or not set(self.own_fields) <= {"pitch", "duration"}:
            raise ValueError(f"own_fields must name pitch, duration or both, not {self.own_fields!r}.")
        if set(self.loss_weights) != {"pitch", "step", "duration", "velocity"}:
            raise ValueError("loss_weights needs exactly pitch, step, duration and velocity.")
        if any(not math.isfinite(w) or w < 0 for w in self.loss_weights.values()):
            raise ValueError("Loss weights must be finite and not negative.")
        grid = np.array(self.time_grid)
        if len(grid) < 2 or grid[0] != 0 or np.any(np.diff(grid) <= 0):
            raise ValueError("time_grid must start at 0 and increase.")
        if not 0 <= self.transpose_range <= 12:
            raise ValueError("transpose_range must be between 0 and 12 semitones.")

    @property
    def time_classes(self) -> int:
        return len(self.time_grid)

    @property
    def pad_time(self) -> int:
        """Input-only time class for window positions before the piece starts."""
        return len(self.time_grid)

    def position_class(self, beats_in_bar: np.ndarray | float) -> np.ndarray:
        value = np.asarray(beats_in_bar, dtype=np.float64) * POSITION_RESOLUTION
        return np.clip(np.round(value), 0, self.positions - 1).astype(np.int32)

    @property
    def pad_position(self) -> int:
        return self.positions

    @property
    def cadence_classes(self) -> int:
        """Beats-to-cadence classes: one set, or two where the final cadence is told apart."""
        return CADENCE_CLASSES * (2 if self.final_cadence else 1)

    @property
    def pad_cadence(self) -> int:
        """Input-only cadence class for window positions before the piece starts."""
        return self.cadence_classes

    def cadence_input(self, beats_to_cadence: np.ndarray | float, final: np.ndarray | bool) -> np.ndarray:
        """The model's beats-to-cadence class: `cadence_class`, moved to the second set when the
        cadence is the piece's last and the model tells it apart."""
        classes = cadence_class(beats_to_cadence)
        if not self.final_cadence:
            return classes
        near = np.asarray(final, dtype=bool) & (classes < CADENCE_CLASSES - 1)
        return np.where(near, classes + CADENCE_CLASSES, classes).astype(np.int32)

    def style_index(self, style: str) -> int:
        try:
            return self.styles.index(style)
        except ValueError:
            raise ValueError(f"Unknown style {style!r}: choose one of {', '.join(self.styles)}.") from None

    def default_tempo(self, style: str) -> float:
        return self.default_tempos[self.style_index(style)]

    def quantize_beats(self, beats: np.ndarray) -> np.ndarray:
        """Index of the nearest grid value, measured in log space so that short values keep detail."""
        grid = np.log(np.array(self.time_grid) + 1 / 48)
        values = np.log(np.clip(np.asarray(beats, dtype=np.float64), 0, None) + 1 / 48)
        mid = (grid[1:] + grid[:-1]) / 2
        return np.searchsorted(mid, values).astype(np.int32)

    def beats_of(self, classes: np.ndarray) -> np.ndarray:
        return np.array(self.time_grid, dtype=np.float32)[np.asarray(classes)]

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["styles"] = list(self.styles)
        data["default_tempos"] = list(self.default_tempos)
        data["time_grid"] = list(self.time_grid)
        data["own_fields"] = list(self.own_fields)
        data["unlikelihood_styles"] = list(self.unlikelihood_styles)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)  # type: ignore[arg-type]


def write_model_extra(path: Path, key: str, value: Any) -> None:
    """Set one entry of a saved `.keras` archive's extras (config.json), every other member copied as
    it is: what is learnt about a model after training (its sampling calibration) travels with it."""
    path = Path(path)
    scratch = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(scratch, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                document = json.loads(data)
                document["config"].setdefault("extra", {})[key] = value
                data = json.dumps(document).encode()
            target.writestr(item, data)
    scratch.replace(path)


def read_model_info(path: Path) -> dict[str, Any]:
    """Config and extras of a saved `.keras` model, read from the archive's config.json.

    This is the web processes' way to learn the styles, tempos and statistics of a model: it reads
    a zip entry and parses JSON, and never imports Keras or builds the network.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))["config"]
        return {"config": ModelConfig.from_dict(config["model_config"]), "extra": config.get("extra", {})}
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"The model file {Path(path).name} is broken or missing.") from exc
