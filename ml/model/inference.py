"""The note model's forward pass in NumPy, for one-shot runs that should not pay for TensorFlow.

Importing TensorFlow, building the Keras model and compiling its steps with XLA cost a one-shot
`manage.py compose` more than the whole piece takes to write. The network is small (embeddings,
a dense projection, three bidirectional LSTM layers over a short window, one backwards LSTM over
the notes after a gap, dense heads), so its forward pass is a few matrix products per step in
NumPy. `save_model` stores the weights under the names used here in the `.keras` archive
(`inference.npz`), read back by `NumpyNet.from_archive` with zipfile and NumPy alone.

Long-lived workers keep the compiled Keras steps (`ml.generation.steps.CompiledSteps`), which are
faster per note once compiled; the tests hold the two to the same outputs.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ml.model.config import ModelConfig, read_model_info

ARCHIVE_MEMBER = "inference.npz"


def export_weights(model: Any) -> dict[str, np.ndarray]:
    """A NoteModel's weights by name (`pitch_embed`, `bilstm_0/forward/kernel`, `project/bias`...)."""
    c: ModelConfig = model.config
    weights: dict[str, np.ndarray] = {}

    def put(name: str, variable: Any) -> None:
        weights[name] = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, np.float32)

    embeddings = ["pitch_embed", "step_embed", "duration_embed", "style_embed", "next_step_embed",
                  "position_embed", "cadence_embed", "metre_embed", "mode_embed"]
    denses = ["project", "step_head", "decoder_hidden", "pitch_head", "duration_head", "velocity_head"]
    if c.future:
        embeddings.append("until_embed")
    if c.density:
        embeddings.append("density_embed")
    for name in embeddings:
        put(name, getattr(model, name).embeddings)
    for name in denses:
        layer = getattr(model, name)
        put(f"{name}/kernel", layer.kernel)
        put(f"{name}/bias", layer.bias)
    for index, bilstm in enumerate(model.lstms):
        for direction, layer in (("forward", bilstm.forward_layer), ("backward", bilstm.backward_layer)):
            cell = layer.cell
            put(f"bilstm_{index}/{direction}/kernel", cell.kernel)
            put(f"bilstm_{index}/{direction}/recurrent_kernel", cell.recurrent_kernel)
            put(f"bilstm_{index}/{direction}/bias", cell.bias)
    if c.future:
        cell = model.future_lstm.cell
        put("future_lstm/kernel", cell.kernel)
        put("future_lstm/recurrent_kernel", cell.recurrent_kernel)
        put("future_lstm/bias", cell.bias)
    return weights


def add_to_archive(model: Any, path: Path) -> None:
    """Append the named weights to a saved `.keras` archive (Keras itself ignores the member)."""
    buffer = io.BytesIO()
    np.savez(buffer, **export_weights(model))  # type: ignore[arg-type]  # numpy's stub reads **kwds as flags
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(ARCHIVE_MEMBER, buffer.getvalue())


def has_inference_weights(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return ARCHIVE_MEMBER in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # = 1 / (1 + e^-x), without overflow warnings


def _lstm(xw: np.ndarray, recurrent: np.ndarray, units: int, reverse: bool) -> np.ndarray:
    """Run an LSTM (Keras gate order i, f, c, o) over time given x·W + b for every step.

    Args:
        xw: (batch, time, 4 * units), the inputs already multiplied by the kernel, bias added.
        recurrent: (units, 4 * units).
        reverse: read the sequence from its end (Keras `go_backwards`, or a Bidirectional's backward
            layer); the outputs are returned in the sequence's own order.

    Returns:
        (batch, time, units), the hidden state after each step.
    """
    batch, steps, _ = xw.shape
    h = np.zeros((batch, units), np.float32)
    c = np.zeros((batch, units), np.float32)
    out = np.empty((batch, steps, units), np.float32)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        z = xw[:, t] + h @ recurrent
        i, f, g, o = _sigmoid(z[:, :units]), _sigmoid(z[:, units:2 * units]), np.tanh(z[:, 2 * units:3 * units]), \
            _sigmoid(z[:, 3 * units:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[:, t] = h
    return out


class NumpyNet:
    """NoteModel's `encode` and `decode`, in NumPy, from the weights `export_weights` names."""

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.config = config
        self.extra = extra
        self.w = weights

    @classmethod
    def from_archive(cls, path: Path) -> NumpyNet:
        """Read a `.keras` archive that `save_model` wrote with its named weights; ValueError if it has none."""
        info = read_model_info(path)
        try:
            with zipfile.ZipFile(path) as archive, archive.open(ARCHIVE_MEMBER) as member:
                data = np.load(io.BytesIO(member.read()))
                weights = {name: data[name] for name in data.files}
        except (KeyError, OSError, zipfile.BadZipFile, ValueError) as exc:
            raise ValueError(f"The model file {Path(path).name} has no weights for the NumPy engine.") from exc
        return cls(info["config"], weights, info["extra"])

    def _dense(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.w[f"{name}/kernel"] + self.w[f"{name}/bias"]

    def _embed(self, name: str, ids: Any) -> np.ndarray:
        return self.w[name][np.asarray(ids, np.int64)]

    def encode(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Window (and the notes after a gap) -> (context vector, step logits), as NoteModel.encode."""
        c = self.config
        units = c.lstm_units
        piece = np.concatenate([self._embed("style_embed", inputs["style"]),
                                self._embed("metre_embed", inputs["metre"]),
                                self._embed("mode_embed", inputs["mode"])]
                               + ([self._embed("density_embed", inputs["density"])] if c.density else []), axis=-1)
        window = np.asarray(inputs["pitch"]).shape[1]
        parts = [
            self._embed("pitch_embed", inputs["pitch"]),
            self._embed("step_embed", inputs["step"]),
            self._embed("duration_embed", inputs["duration"]),
            np.asarray(inputs["velocity"], np.float32)[..., None],
            self._embed("position_embed", inputs["position"]),
            self._embed("cadence_embed", inputs["cadence"]),
            np.repeat(piece[:, None, :], window, axis=1),
        ]
        if c.chords:
            parts.append(np.asarray(inputs["chord"], np.float32))
        x = np.tanh(self._dense("project", np.concatenate(parts, axis=-1)))
        for index in range(c.lstm_layers):
            last = index == c.lstm_layers - 1
            directions = []
            for direction in ("forward", "backward"):
                prefix = f"bilstm_{index}/{direction}"
                xw = x @ self.w[f"{prefix}/kernel"] + self.w[f"{prefix}/bias"]
                directions.append(_lstm(xw, self.w[f"{prefix}/recurrent_kernel"], units, direction == "backward"))
            if last:  # the forward layer's last state and the backward layer's (at the first note)
                x = np.concatenate([directions[0][:, -1], directions[1][:, 0]], axis=-1)
            else:
                x = np.concatenate(directions, axis=-1)
        context = [x, piece]
        if c.future:
            future = np.concatenate([
                self._embed("pitch_embed", inputs["future_pitch"]), self._embed("step_embed", inputs["future_step"]),
                self._embed("duration_embed", inputs["future_duration"]),
                self._embed("position_embed", inputs["future_position"]),
            ], axis=-1)
            xw = future @ self.w["future_lstm/kernel"] + self.w["future_lstm/bias"]
            states = _lstm(xw, self.w["future_lstm/recurrent_kernel"], c.future_units, reverse=True)
            context.append(states[:, 0])  # go_backwards: the last state read is at the first note
        joined = np.concatenate(context, axis=-1).astype(np.float32)
        step_in = [joined, self._embed("until_embed", inputs["until"])] if c.future else [joined]
        return joined, self._dense("step_head", np.concatenate(step_in, axis=-1))

    def decode(self, context: np.ndarray, next_step: Any, next_position: Any, next_cadence: Any,
               next_until: Any = None, next_chord: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Context and the chosen step -> (pitch logits, duration logits, velocity 0..1), as NoteModel.decode."""
        c = self.config
        parts = [context, self._embed("next_step_embed", next_step), self._embed("position_embed", next_position),
                 self._embed("cadence_embed", next_cadence)]
        if c.future:
            parts.append(self._embed("until_embed", next_until))
        if c.chords:
            parts.append(np.asarray(next_chord, np.float32))
        h = np.maximum(self._dense("decoder_hidden", np.concatenate(parts, axis=-1)), 0.0)
        return (self._dense("pitch_head", h), self._dense("duration_head", h),
                _sigmoid(self._dense("velocity_head", h)))
