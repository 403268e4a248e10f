"""The network's two per-note calls, compiled: encode the window, then decode the chosen step."""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.model.config import UNTIL_CLASSES, ModelConfig

# Per-note values that are not whole numbers: the velocity (0..1) and a chord's 12 pitch classes.
FLOAT_INPUTS = ("velocity", "chord")
FUTURE_NOTE_INPUTS = ("future_pitch", "future_step", "future_duration", "future_position")


def _is_tensorflow_model(model: Any) -> bool:
    """A Keras model under the TensorFlow backend (compiled with XLA); a NumpyNet or another backend is not."""
    from ml.model.inference import NumpyNet

    if isinstance(model, NumpyNet):
        return False
    import keras

    return bool(keras.backend.backend() == "tensorflow")


class CompiledSteps:
    """The model's two per-note calls, compiled once per batch size, with the window in variables.

    Under TensorFlow both calls are `tf.function`s compiled with XLA; the window (and the notes
    after a gap, for a model that reads them) lives in preallocated variables that the graph
    shifts in place. Other backends, and `ml.model.inference.NumpyNet` (a one-shot run that should
    not import TensorFlow at all), take eager calls on numpy arrays.

    Host API: `reset(window, piece, future)`, `encode(note)` (the note just written, or None for
    the first call; `note["until"]` is the beats-to-the-future class after it), `decode(step,
    position, cadence, until, chord)`, and `set_future(future)` when a line's notes ahead change.
    """

    def __init__(self, model: Any, batch: int) -> None:
        self.model = model
        self.config: ModelConfig = model.config
        c = self.config
        self.batch = batch
        self.window_inputs = c.window_inputs
        self.int_inputs = tuple(key for key in self.window_inputs if key not in FLOAT_INPUTS)
        self.tf = _is_tensorflow_model(model)
        w = c.window
        if self.tf:
            import tensorflow as tf

            from ml.model.network import context_size

            def zeros(shape: tuple[int, ...], key: str) -> Any:
                return tf.Variable(tf.zeros(shape, tf.float32 if key in FLOAT_INPUTS else tf.int32))

            self.vars = {key: zeros((batch, w, 12) if key == "chord" else (batch, w), key)
                         for key in self.window_inputs}
            per_piece = ("style", "metre", "mode") + (("density",) if c.density else ())
            for key in per_piece + (("until",) if c.future else ()):
                self.vars[key] = zeros((batch,), key)
            for key in FUTURE_NOTE_INPUTS if c.future else ():
                self.vars[key] = zeros((batch, c.future), key)
            self.context = tf.Variable(tf.zeros((batch, context_size(c)), tf.float32))
            # Concrete functions of fixed signatures: a call skips tf.function's per-call lookup of
            # which trace fits its arguments, and the note travels as a few tensors rather than many.
            ints = len(self.int_inputs) + (1 if c.future else 0)
            floats = 1 + (12 if c.chords else 0)
            self._encode = tf.function(self._encode_graph, jit_compile=True).get_concrete_function()
            self._encode_push = tf.function(self._encode_push_graph, jit_compile=True).get_concrete_function(
                tf.TensorSpec((batch, ints), tf.int32), tf.TensorSpec((batch, floats), tf.float32))
            self._decode = tf.function(self._decode_graph, jit_compile=True).get_concrete_function(
                tf.TensorSpec((batch, 4 if c.future else 3), tf.int32), tf.TensorSpec((batch, 12), tf.float32))
        else:
            self.arrays: dict[str, np.ndarray] = {}
            self.context_np: Any = None

    def reset(self, window: dict[str, np.ndarray], piece: dict[str, Any],
              future: dict[str, np.ndarray] | None = None) -> None:
        per_piece = {key: np.broadcast_to(np.asarray(value, np.int32), (self.batch,)).copy()
                     for key, value in piece.items()}
        window = {key: value for key, value in window.items() if key in self.window_inputs}
        if self.tf:
            for key, value in {**window, **per_piece}.items():
                self.vars[key].assign(value)
        else:
            self.arrays = {**{k: v.copy() for k, v in window.items()}, **per_piece}
        if self.config.future:
            self.set_future(future)

    def set_future(self, future: dict[str, np.ndarray] | None) -> None:
        """The notes after the gap each line leads into (see `Batch.future_arrays`)."""
        if not self.config.future or future is None:
            return
        for key in (*FUTURE_NOTE_INPUTS, "until"):
            if self.tf:
                self.vars[key].assign(future[key])
            else:
                self.arrays[key] = future[key].copy()

    # graph bodies
    def _encode_graph(self) -> Any:
        context, step_logits = self.model.encode({k: v for k, v in self.vars.items()})
        self.context.assign(context)
        return step_logits

    def _encode_push_graph(self, ints: Any, floats: Any) -> Any:
        import tensorflow as tf

        columns = {key: ints[:, i] for i, key in enumerate(self.int_inputs)}
        columns["velocity"] = floats[:, 0]
        if self.config.chords:
            columns["chord"] = floats[:, 1:13]
        for key in self.window_inputs:
            var = self.vars[key]
            var.assign(tf.concat([var[:, 1:], tf.expand_dims(columns[key], 1)], axis=1))
        if self.config.future:
            self.vars["until"].assign(ints[:, len(self.int_inputs)])
        return self._encode_graph()

    def _decode_graph(self, chosen: Any, chord: Any) -> Any:
        until = chosen[:, 3] if self.config.future else None
        return self.model.decode(self.context, chosen[:, 0], chosen[:, 1], chosen[:, 2], until,
                                 chord if self.config.chords else None)

    # host API
    def encode(self, note: dict[str, np.ndarray] | None) -> np.ndarray:
        c = self.config
        if self.tf:
            if note is None:
                return self._encode().numpy()
            ints = [note[key] for key in self.int_inputs] + ([note["until"]] if c.future else [])
            floats = [note["velocity"][:, None]] + ([note["chord"]] if c.chords else [])
            return self._encode_push(np.stack(ints, axis=1).astype(np.int32),
                                     np.concatenate(floats, axis=1).astype(np.float32)).numpy()
        if note is not None:
            for key in self.window_inputs:
                self.arrays[key] = np.concatenate([self.arrays[key][:, 1:], note[key][:, None]], axis=1)
            if c.future:
                self.arrays["until"] = note["until"].astype(np.int32)
        context, step_logits = self.model.encode(self.arrays)
        self.context_np = context
        return np.asarray(step_logits)

    def decode(self, step: np.ndarray, position: np.ndarray, cadence: np.ndarray,
               until: np.ndarray | None = None, chord: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        args = [step.astype(np.int32), position.astype(np.int32), cadence.astype(np.int32)]
        if c.future:
            args.append((until if until is not None else np.full(self.batch, UNTIL_CLASSES - 1)).astype(np.int32))
        chords = (chord if chord is not None else np.zeros((self.batch, 12))).astype(np.float32)
        if self.tf:
            pitch, duration, velocity = self._decode(np.stack(args, axis=1), chords)
        else:
            pitch, duration, velocity = self.model.decode(
                self.context_np, *args[:3], args[3] if c.future else None, chords if c.chords else None)
        return np.asarray(pitch), np.asarray(duration), np.asarray(velocity)
