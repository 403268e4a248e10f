"""Fixtures for the ml library: tiny MIDI files written by the tests, and one shared generator."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pretty_midi
import pytest

if TYPE_CHECKING:
    from ml.generation.generator import Generator


def write_midi(path: Path, notes: list[tuple[int, float, float]], *, tempo: float = 120.0,
               time_signature: tuple[int, int] = (4, 4), drums: bool = False, velocity: int = 90) -> Path:
    """Write (pitch, start, end) notes in seconds to a one-track MIDI file."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(*time_signature, 0.0))
    inst = pretty_midi.Instrument(program=0, is_drum=drums)
    inst.notes = [pretty_midi.Note(velocity=velocity, pitch=p, start=s, end=e) for p, s, e in notes]
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


@pytest.fixture(scope="session")
def generator(tiny_model_path: Path) -> Generator:
    from ml.generation.generator import Generator

    return Generator(tiny_model_path)
