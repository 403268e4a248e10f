"""The note model: a 3-layer bidirectional LSTM over the previous notes, conditioned on style.

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

from ml.config import PAD_PITCH, PITCHES, ModelConfig

INPUT_NAMES = ("pitch", "step", "duration", "velocity", "style", "next_step")
OUTPUT_NAMES = ("pitch", "step", "duration", "velocity")


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
        # Create every weight now, so a loaded model can take its weights without a first call.
        self(dummy_inputs(c, batch=1))

    def encode(self, inputs: dict[str, Any], training: bool = False) -> tuple[Any, Any]:
        """Window -> (context vector, step logits)."""
        style = self.style_embed(inputs["style"])
        window = ops.shape(inputs["pitch"])[1]
        x = ops.concatenate([
            self.pitch_embed(inputs["pitch"]),
            self.step_embed(inputs["step"]),
            self.duration_embed(inputs["duration"]),
            ops.expand_dims(ops.cast(inputs["velocity"], "float32"), -1),
            ops.repeat(ops.expand_dims(style, 1), window, axis=1),
        ], axis=-1)
        x = self.project(x)
        for lstm, dropout in zip(self.lstms, self.dropouts):
            x = dropout(lstm(x, training=training), training=training)
        context = ops.concatenate([x, style], axis=-1)
        return context, self.step_head(context)

    def decode(self, context: Any, next_step: Any) -> tuple[Any, Any, Any]:
        """Context and the chosen step class -> (pitch logits, duration logits, velocity 0..1)."""
        h = self.decoder_hidden(ops.concatenate([context, self.next_step_embed(next_step)], axis=-1))
        return self.pitch_head(h), self.duration_head(h), self.velocity_head(h)

    def call(self, inputs: dict[str, Any], training: bool = False) -> dict[str, Any]:
        context, step_logits = self.encode(inputs, training=training)
        pitch_logits, duration_logits, velocity = self.decode(context, inputs["next_step"])
        return {"pitch": pitch_logits, "step": step_logits, "duration": duration_logits, "velocity": velocity}

    def get_config(self) -> dict[str, Any]:
        return {"model_config": self.config.to_dict(), "extra": self.extra, "name": self.name}


def dummy_inputs(config: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    w = config.window
    return {
        "pitch": np.full((batch, w), PAD_PITCH, dtype="int32"),
        "step": np.full((batch, w), config.pad_time, dtype="int32"),
        "duration": np.full((batch, w), config.pad_time, dtype="int32"),
        "velocity": np.zeros((batch, w), dtype="float32"),
        "style": np.zeros((batch,), dtype="int32"),
        "next_step": np.zeros((batch,), dtype="int32"),
    }


def build_model(config: ModelConfig, extra: dict[str, Any] | None = None) -> NoteModel:
    return NoteModel(config.to_dict(), extra=extra, name="note_model")


def compile_model(model: NoteModel) -> None:
    c = model.config
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=c.learning_rate, clipnorm=1.0),
        loss={
            "pitch": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "step": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "duration": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "velocity": keras.losses.MeanSquaredError(),
        },
        loss_weights=dict(c.loss_weights),
        metrics={"pitch": [keras.metrics.SparseCategoricalAccuracy(name="acc")]},
    )


def load_model(path: Path) -> NoteModel:
    """Load a `.keras` file written by `save_model`; raises ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The model file {path} does not exist.")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for truncated or foreign archives
        raise ValueError(f"The model file {path.name} is broken or not a note model ({type(exc).__name__}).") from exc
    if not isinstance(model, NoteModel):
        raise ValueError(f"{path.name} is a Keras model, but not a note model.")
    return model


def save_model(model: NoteModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    tmp.replace(path)  # never leave a half-written model where workers load from
