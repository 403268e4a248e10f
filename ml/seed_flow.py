"""The seed project's way of writing a piece, kept as the baseline that `make bench` times
`manage.py compose` against. Its steps are fixed and never tuned:

load the Keras model in the process, call `model.predict` once per note (sampling on the host),
write the MIDI file with music21, render it with the `fluidsynth` command, encode with `ffmpeg`.

    python -m ml.seed_flow --model ml/pretrained/default.keras --style chorale --notes 400 --out piece.mp3

It prints one JSON line with the time of each step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--notes", type=int, required=True)
    parser.add_argument("--tempo", type=float, default=100.0)
    parser.add_argument("--soundfont", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - since, 3)
        return now

    t = started
    import keras  # noqa: F401  (the seed imported Keras, and TensorFlow with it, first)

    from ml.model.network import dummy_inputs, load_model

    t = lap("import", t)
    model = load_model(args.model)
    config = model.config
    inputs = dummy_inputs(config, batch=1)
    inputs["style"][:] = config.style_index(args.style)
    t = lap("model_load", t)
    rng = np.random.default_rng(args.seed)
    written: list[tuple[int, float, float, float]] = []  # pitch, step (beats), duration (beats), velocity
    grid = np.asarray(config.time_grid)
    for _ in range(args.notes):
        out = model.predict(inputs, verbose=0)
        probabilities = {key: _softmax(out[key][0]) for key in ("step", "pitch", "duration")}
        step = int(rng.choice(len(probabilities["step"]), p=probabilities["step"]))
        pitch = int(rng.choice(len(probabilities["pitch"]), p=probabilities["pitch"]))
        duration = int(rng.choice(len(probabilities["duration"]), p=probabilities["duration"]))
        velocity = float(out["velocity"][0, 0])
        written.append((pitch, float(grid[inputs["next_step"][0]]), float(grid[duration]), velocity))
        written_note = {"pitch": pitch, "step": inputs["next_step"][0], "duration": duration, "velocity": velocity}
        for key, value in written_note.items():
            inputs[key] = np.concatenate([inputs[key][:, 1:], np.array([[value]], inputs[key].dtype)], 1)
        inputs["next_step"][0] = step
    t = lap("generate", t)

    from music21 import instrument, meter, stream, tempo
    from music21 import note as m21note

    part = stream.Part()
    part.append(instrument.Piano())
    part.append(tempo.MetronomeMark(number=args.tempo))
    part.append(meter.TimeSignature("4/4"))
    offset = 0.0
    for pitch, gap, length, velocity in written:
        offset += gap
        n = m21note.Note(min(max(pitch + 48, 21), 108), quarterLength=max(length, 0.25))  # relative to C
        n.volume.velocity = int(np.clip(velocity * 127, 1, 127))
        part.insert(offset, n)
    with tempfile.TemporaryDirectory(prefix="seed-flow-") as tmp:
        midi = Path(tmp) / "piece.mid"
        stream.Score([part]).write("midi", fp=str(midi))
        t = lap("write_midi", t)
        wav = Path(tmp) / "piece.wav"
        subprocess.run([shutil.which("fluidsynth") or "fluidsynth", "-ni", "-q", "-F", str(wav), "-r", "44100",
                        str(args.soundfont), str(midi)], check=True, capture_output=True)
        t = lap("render", t)
        subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), "-b:a",
                        "192k", str(args.out)], check=True)
        t = lap("encode", t)
    print(json.dumps({"notes": len(written), "steps": steps, "seconds": round(time.perf_counter() - started, 3)}))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(np.asarray(logits, np.float64) - float(np.max(logits)))
    return np.asarray(z / z.sum())


if __name__ == "__main__":
    main()
