"""Tiny models and datasets for tests: the real architecture, trained in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.data.datasets import NoteDataset
from ml.data.notes import NoteSequence
from ml.model.config import ModelConfig
from ml.model.train import train


def tiny_dataset(styles: tuple[str, ...] = ("alpha", "beta"), pieces_per_style: int = 6, notes: int = 48,
                 seed: int = 0) -> NoteDataset:
    """Scale fragments in two styles: enough structure to learn from in seconds, for tests."""
    rng = np.random.default_rng(seed)
    pieces = []
    for s, style in enumerate(styles):
        for k in range(pieces_per_style):
            scale = np.array([0, 2, 4, 5, 7, 9, 11, 12]) + 60 + (k % 3) - s * 12
            pitch = np.array([scale[(i * (1 + s)) % len(scale)] for i in range(notes)])
            step = np.full(notes, 0.5 if s == 0 else 0.25)
            step[0] = 0
            seq = NoteSequence(pitch=pitch, step=step, duration=step.copy() + (step == 0) * 0.5,
                               velocity=rng.integers(60, 90, notes), tempo_bpm=120.0)
            name = f"{style}-{k}"
            split = [0, 0, 0, 0, 1, 2][k % 6]
            pieces.append((name, style, seq, split))
    return NoteDataset.from_pieces(list(styles), pieces)


def tiny_config(dataset: NoteDataset, *, reads: bool = True) -> ModelConfig:
    """The shipped architecture in miniature; `reads=False` leaves out the chord inputs, the notes
    after a gap and the final cadence's own classes (the architecture of the models before them)."""
    return ModelConfig(styles=tuple(dataset.styles), default_tempos=(120.0,) * len(dataset.styles),
                       window=8, pitch_embedding=8, time_embedding=4, style_embedding=2, lstm_units=8,
                       batch_size=32, dropout=0.0, transpose_range=2, learning_rate=1e-2,
                       chords=reads, future=6 if reads else 0, future_units=4, until_embedding=2,
                       final_cadence=reads)


def train_tiny_model(out_dir: Path, epochs: int = 2, *, reads: bool = True) -> Path:
    """A tiny model of the real architecture, trained in seconds, for tests."""
    dataset = tiny_dataset()
    result = train(dataset, tiny_config(dataset, reads=reads), Path(out_dir) / "tiny.keras", epochs=epochs,
                   verbose=0)
    return result.model_path
