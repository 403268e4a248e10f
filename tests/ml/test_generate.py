from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from ml.generate import Generator, apply_dynamics, loop_completions
from ml.notes import NoteSequence, notes_to_midi, scale_pitch_classes
from ml.request import GenerationRequest


def midi_bytes(seq: NoteSequence) -> bytes:
    buffer = io.BytesIO()
    notes_to_midi(seq).write(buffer)
    return buffer.getvalue()


def test_same_seed_gives_byte_identical_midi(generator: Generator) -> None:
    request = GenerationRequest(style="alpha", seconds=8, seed=1234)
    first = generator.generate(request)[0]
    second = generator.generate(request)[0]
    assert midi_bytes(first.notes) == midi_bytes(second.notes)
    other = generator.generate(GenerationRequest(style="alpha", seconds=8, seed=4321))[0]
    assert midi_bytes(other.notes) != midi_bytes(first.notes)
    assert first.seed == 1234


def test_every_note_respects_the_key_and_range(generator: Generator) -> None:
    scale = scale_pitch_classes(6, "minor")  # F# minor: far from the tiny model's C major
    pieces = generator.generate(GenerationRequest(style="beta", notes=200, key="F#", mode="minor", seed=7,
                                                  pitch_low=50, pitch_high=80, temperature=2.5, variations=4))
    pitches = np.concatenate([p.notes.pitch for p in pieces])
    assert len(pitches) == 800
    assert {int(p) % 12 for p in pitches} <= scale
    assert pitches.min() >= 50 and pitches.max() <= 80


def test_length_in_seconds_is_met_within_one_note_and_every_note_ends_in_time(generator: Generator) -> None:
    for seconds, tempo in ((12, 90.0), (20, 150.0)):
        piece = generator.generate(GenerationRequest(style="alpha", seconds=seconds, tempo_bpm=tempo, seed=3))[0]
        seq = piece.notes
        ends = seq.start + seq.duration
        assert ends.max() == pytest.approx(seconds, abs=1e-4)  # the final chord is held to the end
        assert np.all(ends <= seconds + 1e-4)
        assert seq.tempo_bpm == tempo


def test_length_in_notes_is_exact(generator: Generator) -> None:
    piece = generator.generate(GenerationRequest(style="alpha", notes=37, seed=3))[0]
    assert len(piece.notes) == 37


def test_continuation_keeps_the_primer_intact_and_records_the_boundary(generator: Generator) -> None:
    pitches = np.array([60, 62, 64, 65, 67, 65, 64, 62, 60, 59])
    primer = NoteSequence.from_notes(start=np.arange(10) * 0.5, pitch=pitches,
                                     duration=np.full(10, 0.5), velocity=np.arange(60, 70), tempo_bpm=120.0)
    piece = generator.generate(GenerationRequest(style="alpha", seconds=6, primer=primer, seed=5))[0]
    seq = piece.notes
    assert piece.primer_length == 10
    np.testing.assert_array_equal(seq.pitch[:10], primer.pitch)
    np.testing.assert_allclose(seq.start[:10], primer.start, atol=1e-6)
    np.testing.assert_array_equal(seq.velocity[:10], primer.velocity)
    assert piece.primer_end >= primer.start[-1]
    assert len(seq) > 10 and seq.start[10] == pytest.approx(piece.primer_end)


def test_dynamics_shape_velocity_the_right_way(generator: Generator) -> None:
    def mean_velocity(dynamics: str) -> tuple[float, float]:
        seq = generator.generate(GenerationRequest(style="alpha", notes=60, dynamics=dynamics, seed=9))[0].notes
        third = len(seq) // 3
        return float(seq.velocity[:third].mean()), float(seq.velocity[-third:].mean())

    soft, loud = mean_velocity("soft"), mean_velocity("loud")
    assert np.mean(soft) + 30 < np.mean(loud)
    begin, end = mean_velocity("crescendo")
    assert end > begin + 30
    begin, end = mean_velocity("diminuendo")
    assert begin > end + 30
    shaped = apply_dynamics(np.full(5, 80.0), np.arange(5.0), "crescendo")
    assert np.all(np.diff(shaped) > 0)


def test_variations_come_from_one_batch_and_differ(generator: Generator) -> None:
    pieces = generator.generate(GenerationRequest(style="alpha", seconds=6, variations=3, seed=11))
    assert len(pieces) == 3
    assert len({midi_bytes(p.notes) for p in pieces}) == 3
    assert all(p.notes.program == 0 for p in pieces)


def test_loop_guard_bans_the_note_that_would_complete_a_loop() -> None:
    assert loop_completions([60] * 5) == {60}
    assert loop_completions([60, 62] * 3 + [60]) == {62}
    assert loop_completions([60, 62, 64, 65, 67]) == set()


def test_generated_pieces_have_no_degenerate_loops_even_when_hot(generator: Generator) -> None:
    from ml.mgeval import find_degenerate_loop

    for piece in generator.generate(GenerationRequest(style="beta", notes=300, seed=2, temperature=0.05,
                                                      variations=4)):
        step_beats, _ = piece.notes.to_beats()
        assert find_degenerate_loop(piece.notes.pitch, step_beats) is None


@pytest.mark.parametrize("fields, message", [
    ({"key": "H"}, "Unknown key"),
    ({"instrument": 128}, "Instrument"),
    ({"temperature": 0}, "Temperature"),
    ({"temperature": -1.0}, "Temperature"),
    ({"top_p": 0.0}, "Top-p"),
    ({"top_p": 1.5}, "Top-p"),
    ({"variations": 5}, "Variations"),
    ({"seconds": 3}, "between 5 and 600"),
    ({"seconds": float("nan")}, "between 5 and 600"),
    ({"seconds": 30, "notes": 10}, "not both"),
    ({"dynamics": "fortissimo"}, "dynamics"),
    ({"tempo_bpm": 1000}, "Tempo"),
    ({"pitch_low": 60, "pitch_high": 64}, "octave"),
])
def test_bad_requests_are_rejected_with_a_clear_message(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationRequest(**{"style": "alpha", **fields})


def test_unknown_style_and_unreachable_length_are_rejected_before_generating(generator: Generator) -> None:
    with pytest.raises(ValueError, match="Unknown style"):
        generator.validate(GenerationRequest(style="polka"))
    with pytest.raises(ValueError, match="more than"):
        generator.validate(GenerationRequest(style="beta", seconds=600, tempo_bpm=300))


def test_the_loop_guard_can_be_switched_off_for_the_evaluation(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ml.generate

    calls: list[int] = []
    original = ml.generate.loop_completions

    def spy(history: list[int]) -> set[int]:
        calls.append(len(history))
        return original(history)

    monkeypatch.setattr(ml.generate, "loop_completions", spy)
    request = GenerationRequest(style="alpha", notes=16, seed=3)
    ml.generate.Generator(tiny_model_path).generate(request)
    assert calls  # on by default: every pitch is checked
    calls.clear()
    ml.generate.Generator(tiny_model_path, loop_guard=False).generate(request)
    assert calls == []
