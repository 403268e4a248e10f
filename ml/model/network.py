"""The note model: a 3-layer bidirectional LSTM over the previous notes, conditioned on style.

Each note in the window carries, beside its pitch, step, duration and velocity, where it falls
in its bar and how many beats remain to the next cadence; the whole window carries the style,
the time signature and the mode. Pitches are relative to the piece's tonic (on C), so the key is
something the model knows, not something a mask hints at. The decoder also gets the place in
the bar and the beats to the cadence of the note it predicts, which the chosen step fixes.

It predicts the next note in two stages. The encoder reads the window and predicts the step
(time since the previous onset). The decoder then predicts pitch, duration and velocity given
that step: a note inside a chord (step 0) and a note on a new beat have very different pitches.
Training feeds the true step to the decoder (teacher forcing); generation feeds the sampled one.

Written in backend-agnostic Keras 3 (`keras.layers`, `keras.ops`), so weights trained under JAX
on a GPU load unchanged under TensorFlow on the web workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from ml.model.config import (
    DENSITY_CLASSES,
    METRES,
    MODE_NAMES,
    PAD_PITCH,
    PITCHES,
    UNTIL_CLASSES,
    ModelConfig,
    read_model_info,
)
from ml.model.inference import add_to_archive


@keras.saving.register_keras_serializable(package="musicgen")
class NoteModel(keras.Model):
    """Next-note model. `extra` carries what generation needs besides weights (primers, metrics)."""

    def __init__(self, model_config: dict[str, Any], extra: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = ModelConfig.from_dict(model_config)
        self.extra = extra or {}
        c = self.config
        self.pitch_embed = layers.Embedding(PITCHES + 1, c.pitch_embedding, name="pitch_embed")
        self.step_embed = layers.Embedding(c.time_classes + 1, c.time_embedding, name="step_embed")
        self.duration_embed = layers.Embedding(c.time_classes + 1, c.time_embedding, name="duration_embed")
        self.style_embed = layers.Embedding(len(c.styles), c.style_embedding, name="style_embed")
        self.next_step_embed = layers.Embedding(c.time_classes, c.time_embedding, name="next_step_embed")
        self.position_embed = layers.Embedding(c.positions + 1, c.position_embedding, name="position_embed")
        self.cadence_embed = layers.Embedding(c.cadence_classes + 1, c.cadence_embedding, name="cadence_embed")
        self.metre_embed = layers.Embedding(len(METRES), c.metre_embedding, name="metre_embed")
        self.mode_embed = layers.Embedding(len(MODE_NAMES), c.mode_embedding, name="mode_embed")
        if c.density:
            self.density_embed = layers.Embedding(DENSITY_CLASSES, c.density_embedding, name="density_embed")
        self.project = layers.Dense(c.lstm_units, activation="tanh", name="project")
        self.lstms = [
            layers.Bidirectional(
                layers.LSTM(c.lstm_units, return_sequences=i < c.lstm_layers - 1, dropout=0.0),
                name=f"bilstm_{i}")
            for i in range(c.lstm_layers)
        ]
        self.dropouts = [layers.Dropout(c.dropout) for _ in range(c.lstm_layers)]
        self.step_head = layers.Dense(c.time_classes, name="step_head")
        self.decoder_hidden = layers.Dense(2 * c.lstm_units, activation="relu", name="decoder_hidden")
        self.pitch_head = layers.Dense(PITCHES, name="pitch_head")
        self.duration_head = layers.Dense(c.time_classes, name="duration_head")
        self.velocity_head = layers.Dense(1, activation="sigmoid", name="velocity_head")
        if c.future:
            # The notes after a gap, read from the furthest to the nearest, so that the state it
            # ends in weighs most the note the passage must lead into.
            self.future_lstm = layers.LSTM(c.future_units, go_backwards=True, name="future_lstm")
            self.until_embed = layers.Embedding(UNTIL_CLASSES, c.until_embedding, name="until_embed")
        # Create every weight now, so a loaded model can take its weights without a first call.
        self(dummy_inputs(c, batch=1))

    def encode(self, inputs: dict[str, Any], training: bool = False) -> tuple[Any, Any]:
        """Window (and the notes after a gap) -> (context vector, step logits).

        Every Dense layer reads its inputs in the order `dense_inputs` lists them, new inputs
        last, so that a model with more inputs starts from one with fewer (`warm_start`).
        """
        piece_parts = [self.style_embed(inputs["style"]), self.metre_embed(inputs["metre"]),
                       self.mode_embed(inputs["mode"])]
        if self.config.density:
            piece_parts.append(self.density_embed(inputs["density"]))
        piece = ops.concatenate(piece_parts, axis=-1)
        window = ops.shape(inputs["pitch"])[1]
        parts = [
            self.pitch_embed(inputs["pitch"]),
            self.step_embed(inputs["step"]),
            self.duration_embed(inputs["duration"]),
            ops.expand_dims(ops.cast(inputs["velocity"], "float32"), -1),
            self.position_embed(inputs["position"]),
            self.cadence_embed(inputs["cadence"]),
            ops.repeat(ops.expand_dims(piece, 1), window, axis=1),
        ]
        if self.config.chords:
            parts.append(ops.cast(inputs["chord"], "float32"))
        x = self.project(ops.concatenate(parts, axis=-1))
        for lstm, dropout in zip(self.lstms, self.dropouts):
            x = dropout(lstm(x, training=training), training=training)
        context = [x, piece]
        if self.config.future:
            future = ops.concatenate([
                self.pitch_embed(inputs["future_pitch"]), self.step_embed(inputs["future_step"]),
                self.duration_embed(inputs["future_duration"]), self.position_embed(inputs["future_position"]),
            ], axis=-1)
            context.append(self.future_lstm(future, training=training))
        joined = ops.concatenate(context, axis=-1)
        step_in = [joined, self.until_embed(inputs["until"])] if self.config.future else [joined]
        return joined, self.step_head(ops.concatenate(step_in, axis=-1))

    def decode(self, context: Any, next_step: Any, next_position: Any, next_cadence: Any,
               next_until: Any = None, next_chord: Any = None) -> tuple[Any, Any, Any]:
        """Context and the chosen step (with the place in the bar, the beats to the cadence and to
        the notes after a gap that it gives, and the harmony there) -> (pitch logits, duration
        logits, velocity 0..1)."""
        parts = [context, self.next_step_embed(next_step), self.position_embed(next_position),
                 self.cadence_embed(next_cadence)]
        if self.config.future:
            parts.append(self.until_embed(next_until))
        if self.config.chords:
            parts.append(ops.cast(next_chord, "float32"))
        h = self.decoder_hidden(ops.concatenate(parts, axis=-1))
        return self.pitch_head(h), self.duration_head(h), self.velocity_head(h)

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        context, step_logits = self.encode(inputs, training=training)
        pitch_logits, duration_logits, velocity = self.decode(
            context, inputs["next_step"], inputs["next_position"], inputs["next_cadence"],
            inputs.get("next_until"), inputs.get("next_chord"))
        return {"pitch": pitch_logits, "step": step_logits, "duration": duration_logits, "velocity": velocity}

    def get_config(self) -> dict[str, Any]:
        return {"model_config": self.config.to_dict(), "extra": self.extra, "name": self.name}


def context_size(config: ModelConfig) -> int:
    """Width of the context vector that `encode` hands to `decode`."""
    c = config
    return 2 * c.lstm_units + c.style_embedding + c.metre_embedding + c.mode_embedding + (
        c.density_embedding if c.density else 0) + (c.future_units if c.future else 0)


def dense_inputs(config: ModelConfig) -> dict[str, list[tuple[str, int]]]:
    """The named blocks of rows each Dense layer that reads several inputs reads, in order."""
    c = config
    piece = [("style", c.style_embedding), ("metre", c.metre_embedding), ("mode", c.mode_embedding)] + (
        [("density", c.density_embedding)] if c.density else [])
    context = [("lstm", 2 * c.lstm_units), *piece] + ([("future", c.future_units)] if c.future else [])
    until = [("until", c.until_embedding)] if c.future else []
    return {
        "project": [("pitch", c.pitch_embedding), ("step", c.time_embedding), ("duration", c.time_embedding),
                    ("velocity", 1), ("position", c.position_embedding), ("cadence", c.cadence_embedding),
                    *piece] + ([("chord", 12)] if c.chords else []),
        "step_head": context + until,
        "decoder_hidden": context + [("next_step", c.time_embedding), ("next_position", c.position_embedding),
                                     ("next_cadence", c.cadence_embedding)]
                          + ([("next_until", c.until_embedding)] if c.future else [])
                          + ([("next_chord", 12)] if c.chords else []),
    }


def dummy_inputs(config: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    w = config.window
    extra: dict[str, np.ndarray] = {}
    if config.density:
        extra["density"] = np.zeros((batch,), dtype="int32")
    if config.chords:
        extra["chord"] = np.zeros((batch, w, 12), dtype="float32")
        extra["next_chord"] = np.zeros((batch, 12), dtype="float32")
    if config.future:
        f = config.future
        extra.update({
            "future_pitch": np.full((batch, f), PAD_PITCH, dtype="int32"),
            "future_step": np.full((batch, f), config.pad_time, dtype="int32"),
            "future_duration": np.full((batch, f), config.pad_time, dtype="int32"),
            "future_position": np.full((batch, f), config.pad_position, dtype="int32"),
            "until": np.full((batch,), UNTIL_CLASSES - 1, dtype="int32"),
            "next_until": np.full((batch,), UNTIL_CLASSES - 1, dtype="int32"),
        })
    return {**extra,
        "pitch": np.full((batch, w), PAD_PITCH, dtype="int32"),
        "step": np.full((batch, w), config.pad_time, dtype="int32"),
        "duration": np.full((batch, w), config.pad_time, dtype="int32"),
        "velocity": np.zeros((batch, w), dtype="float32"),
        "position": np.full((batch, w), config.pad_position, dtype="int32"),
        "cadence": np.full((batch, w), config.pad_cadence, dtype="int32"),
        "style": np.zeros((batch,), dtype="int32"),
        "metre": np.zeros((batch,), dtype="int32"),
        "mode": np.zeros((batch,), dtype="int32"),
        "next_step": np.zeros((batch,), dtype="int32"),
        "next_position": np.zeros((batch,), dtype="int32"),
        "next_cadence": np.zeros((batch,), dtype="int32"),
    }


def build_model(config: ModelConfig, extra: dict[str, Any] | None = None) -> NoteModel:
    return NoteModel(config.to_dict(), extra=extra, name="note_model")


def warm_start(model: NoteModel, source: NoteModel) -> list[str]:
    """Copy the weights of every layer of `source` whose name and shapes match; returns their names.

    A model with new inputs keeps the recurrent layers, embeddings and heads of an earlier one, so
    it starts from what that one learnt instead of from nothing. A Dense layer that reads more
    inputs than the source's takes the source's rows for the inputs both have, and zeros for the
    new ones: the new model starts out computing exactly what the old one did, and training
    teaches it what the new inputs say. A model that tells the final cadence apart starts with the
    final classes equal to the others (`widen_cadence_embedding`).
    """
    copied = []
    theirs = {layer.name: layer for layer in source.layers}
    mine_blocks, their_blocks = dense_inputs(model.config), dense_inputs(source.config)
    for layer in model.layers:
        other = theirs.get(layer.name)
        if other is None:
            continue
        mine, given = layer.get_weights(), other.get_weights()
        if mine and len(mine) == len(given) and all(a.shape == b.shape for a, b in zip(mine, given)):
            layer.set_weights(given)
            copied.append(layer.name)
        elif layer.name == "cadence_embed" and len(mine) == len(given) == 1 and mine[0].shape[1] == given[0].shape[1]:
            layer.set_weights([widen_cadence_embedding(given[0], mine[0].shape[0] - 1)])
            copied.append(layer.name)
        elif layer.name in mine_blocks and len(mine) == len(given) == 2 and mine[1].shape == given[1].shape:
            old_rows = _block_rows(their_blocks[layer.name])
            kernel = np.zeros_like(mine[0])
            for name, rows in _block_rows(mine_blocks[layer.name]).items():
                if name in old_rows and rows.stop - rows.start == old_rows[name].stop - old_rows[name].start:
                    kernel[rows] = given[0][old_rows[name]]
            layer.set_weights([kernel, given[1]])
            copied.append(layer.name)
    return copied


def widen_cadence_embedding(table: np.ndarray, classes: int) -> np.ndarray:
    """A cadence embedding of one set of classes (and its pad row) as one of `classes`: the second
    set, where there is one, starts as a copy of the first."""
    rows = table.shape[0] - 1
    if classes % rows:
        raise ValueError(f"Cannot widen {rows} cadence classes to {classes}.")
    return np.concatenate([np.tile(table[:rows], (classes // rows, 1)), table[rows:]])


def _block_rows(blocks: list[tuple[str, int]]) -> dict[str, slice]:
    rows, first = {}, 0
    for name, size in blocks:
        rows[name] = slice(first, first + size)
        first += size
    return rows


def warm_start_from_v1(model: NoteModel, path: Path) -> list[str]:
    """Start from a model of the first architecture (no bar position, cadence, metre or mode inputs).

    Its LSTMs, embeddings and heads are copied as they are; the projection and the decoder keep
    their weights for the inputs both models have and start the new inputs from their own
    initialisation. Returns the names of the layers that were (partly) copied.
    """
    import io
    import json
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
        def read(name: str) -> list[np.ndarray]:
            group = f[name]["vars"] if "vars" in f[name] else f[name]
            return [np.asarray(group[str(i)]) for i in range(len(group))]

        def bilstm(name: str) -> list[np.ndarray]:
            return [np.asarray(f[f"layers/{name}/{side}/cell/vars/{i}"]) for side in ("forward_layer", "backward_layer")
                    for i in range(3)]

        c = model.config
        copied = []
        # Styles are matched by name: a new dataset may list them in another order.
        old_styles = json.loads(archive.read("config.json"))["config"]["model_config"]["styles"]
        old_style_rows = read("layers/embedding_3")[0]
        style_rows = np.array(model.style_embed.get_weights()[0])
        for i, style in enumerate(c.styles):
            if style in old_styles:
                style_rows[i] = old_style_rows[old_styles.index(style)]
        for layer, weights in (
            (model.pitch_embed, read("layers/embedding")), (model.step_embed, read("layers/embedding_1")),
            (model.duration_embed, read("duration_embed")), (model.style_embed, [style_rows]),
            (model.next_step_embed, read("layers/embedding_4")), (model.pitch_head, read("layers/dense_3")),
            (model.duration_head, read("duration_head")), (model.velocity_head, read("layers/dense_5")),
            *[(lstm, bilstm("bidirectional" + (f"_{i}" if i else ""))) for i, lstm in enumerate(model.lstms)],
        ):
            if all(a.shape == b.shape for a, b in zip(layer.get_weights(), weights)):
                layer.set_weights(weights)
                copied.append(layer.name)
        notes = c.pitch_embedding + 2 * c.time_embedding + 1  # pitch, step, duration, velocity
        context = 2 * c.lstm_units
        for layer, old, rows in (
            # (new layer, old weights, [(old rows, new first row)])
            (model.project, read("layers/dense"),
             [(slice(0, notes), 0), (slice(notes, notes + c.style_embedding),
                                     notes + c.position_embedding + c.cadence_embedding)]),
            (model.step_head, read("layers/dense_1"), [(slice(0, context + c.style_embedding), 0)]),
            (model.decoder_hidden, read("decoder_hidden"),
             [(slice(0, context + c.style_embedding), 0),
              (slice(context + c.style_embedding, context + c.style_embedding + c.time_embedding),
               context + c.style_embedding + c.metre_embedding + c.mode_embedding)]),
        ):
            kernel, bias = (np.array(w) for w in layer.get_weights())
            if old[0].shape[1] != kernel.shape[1]:
                continue
            for source, first in rows:
                block = old[0][source]
                kernel[first:first + len(block)] = block
            layer.set_weights([kernel, old[1]])
            copied.append(layer.name)
    return copied


def anchored_loss(anchor: float, unlikelihood: float = 0.0, *, avoid: bool = False) -> Any:
    """The loss of a head of a config with `anchor`: the cross-entropy of the class (the first column
    of the target) plus `anchor` times the cross-entropy against the teacher's distribution (the last
    columns, `ml.data.windows.anchored_targets`). With `avoid` (the pitch head) the columns between
    mark the pitches that would make parallels, and `unlikelihood` weighs -log(1 - p) on them."""
    def loss(y_true: Any, logits: Any) -> Any:
        classes = logits.shape[-1]
        note = ops.cast(y_true[:, 0], "int32")
        total = keras.losses.sparse_categorical_crossentropy(note, logits, from_logits=True)
        if anchor:
            teacher = ops.cast(y_true[:, -classes:], logits.dtype)
            total = total - anchor * ops.sum(teacher * ops.log_softmax(logits, axis=-1), axis=-1)
        if avoid and unlikelihood:
            marked = ops.cast(y_true[:, 1:1 + classes], logits.dtype)
            p = ops.sum(ops.softmax(logits, axis=-1) * marked, axis=-1)
            total = total - unlikelihood * ops.log(ops.clip(1.0 - p, 1e-6, 1.0))
        return total

    return loss


def parallels_loss(weight: float) -> Any:
    """The pitch loss of a config with `unlikelihood` and no anchor: the cross-entropy of the note (the
    first column of the target) plus `weight` times -log(1 - p), p the probability given to the pitches
    the rest of the target marks (those that would make parallels, `ml.data.windows.parallel_mask`)."""
    return anchored_loss(0.0, weight, avoid=True)


def parallels_accuracy(y_true: Any, logits: Any) -> Any:
    """Pitch accuracy against the note in the first column of a `parallels_loss` target."""
    return ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), ops.cast(y_true[:, 0], "int32")),
                    "float32")


def compile_model(model: NoteModel) -> None:
    c = model.config
    pitch_loss: Any = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pitch_accuracy: Any = keras.metrics.SparseCategoricalAccuracy(name="acc")
    time_loss: Any = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if c.unlikelihood or c.anchor:  # the pitch target is a row: the note, the pitches to avoid, (the teacher's)
        pitch_loss = anchored_loss(c.anchor, c.unlikelihood, avoid=True)
        pitch_accuracy = keras.metrics.MeanMetricWrapper(parallels_accuracy, name="acc")
    if c.anchor:
        time_loss = anchored_loss(c.anchor)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=c.learning_rate, clipnorm=1.0),
        loss={
            "pitch": pitch_loss,
            "step": time_loss,
            "duration": time_loss,
            "velocity": keras.losses.MeanSquaredError(),
        },
        loss_weights=dict(c.loss_weights),
        metrics={"pitch": [pitch_accuracy]},
    )


def load_model(path: Path) -> NoteModel:
    """Load a `.keras` file written by `save_model`; raises ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The model file {path} does not exist.")
    info = read_model_info(path)  # ValueError for an archive that is not a note model
    # The network is built here from its config and only the weights are read from the archive:
    # keras.saving.load_model rebuilds the layers inside its object-sharing scope, where a
    # Bidirectional's backward LSTM could now and then come back as the forward one (a cache keyed
    # on object ids, which Python reuses), and the file would fail to load at random.
    model = build_model(info["config"], extra=info["extra"])
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises many types for truncated or foreign archives
        raise ValueError(f"The model file {path.name} is broken or not a note model ({type(exc).__name__}).") from exc
    return model


def save_model(model: NoteModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    add_to_archive(model, tmp)  # the same weights by name, for the NumPy engine of one-shot runs
    tmp.replace(path)  # never leave a half-written model where workers load from
