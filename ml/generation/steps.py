"""The network's two per-note calls, compiled: encode the window, then decode the chosen step."""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.model.config import ModelConfig


class CompiledSteps:
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
