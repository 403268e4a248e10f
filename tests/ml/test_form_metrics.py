"""Form measures on small pieces written out note by note, where the right answer is known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.evaluation.form_metrics import (
    DEFINITIONS,
    against_real,
    downbeat_accent,
    downbeat_alignment,
    ending,
    form_scores,
    key_stability,
    motif_recurrence,
    off_grid_onsets,
    parallels_per_100,
    summarise,
)

BEAT = 0.5  # seconds per beat at 120 BPM


def piece(notes: Sequence[tuple[float, int, float]], time_signature: tuple[int, int] = (4, 4),
          bar_phase: float = 0.0) -> NoteSequence:
    """(onset in beats, pitch, duration in beats) at 120 BPM."""
    onset, pitch, duration = (np.array(column, dtype=float) for column in zip(*notes))
    return NoteSequence.from_notes(onset * BEAT, pitch.astype(int), duration * BEAT, np.full(len(notes), 80),
                                   tempo_bpm=120.0, time_signature=time_signature, bar_phase=bar_phase)


def scale_tune(tonic: int, bars: int = 4) -> list[tuple[float, int, float]]:
    steps = [0, 2, 4, 5, 7, 9, 11, 12]
    return [(float(i), tonic + steps[i % 8], 1.0) for i in range(bars * 4)]


def test_a_tune_that_stays_in_c_is_stable_and_one_that_leaves_is_not() -> None:
    stays = piece(scale_tune(60, bars=8))
    assert key_stability(stays, (0, "major")) == 1.0
    wanders = piece(scale_tune(60, bars=4) + [(16.0 + t, p + 6, d) for t, p, d in scale_tune(60, bars=4)])
    assert key_stability(wanders, (0, "major")) == pytest.approx(0.5)


def test_a_perfect_cadence_ends_on_the_tonic_in_the_bass() -> None:
    close = piece([(0, 55, 1), (0, 62, 1), (0, 67, 1), (1, 48, 2), (1, 64, 2), (1, 67, 2)])
    assert ending(close, (0, "major")) == (True, True)
    half = piece([(0, 48, 1), (0, 64, 1), (1, 55, 2), (1, 62, 2)])
    assert ending(half, (0, "major")) == (False, False)


def waltz(bars: int = 4) -> list[tuple[float, int, float]]:
    notes = []
    for bar in range(bars):
        notes += [(bar * 3.0, 48, 3.0), (bar * 3.0, 60, 1.0), (bar * 3.0 + 1, 64, 1.0), (bar * 3.0 + 2, 67, 1.0)]
    return notes


def test_a_waltz_accents_its_downbeats_in_three_and_not_in_four() -> None:
    assert downbeat_alignment(piece(waltz(), (3, 4))) == 1.0
    assert downbeat_accent(piece(waltz(), (3, 4))) == 1.0
    # In bars of four every bar still has a note on beat 1, but the accents fall elsewhere.
    assert downbeat_alignment(piece(waltz(), (4, 4))) == 1.0
    assert (downbeat_accent(piece(waltz(), (4, 4))) or 0) < 1.0


def test_a_bar_with_nothing_on_its_first_beat_is_not_aligned() -> None:
    syncopated = [(0.0, 60, 1.0), (1.0, 62, 2.0), (4.5, 64, 1.0), (8.0, 65, 4.0)]
    assert downbeat_alignment(piece(syncopated)) == pytest.approx(2 / 3)


def test_onsets_off_the_sixteenth_and_triplet_grids_are_counted() -> None:
    assert off_grid_onsets(piece([(0, 60, 1), (1 / 3, 62, 1), (0.75, 64, 1)])) == 0.0
    assert off_grid_onsets(piece([(0, 60, 1), (0.2, 62, 1), (0.45, 64, 1), (1, 65, 1)])) == pytest.approx(0.5)


def test_a_repeated_motif_recurs_and_a_wandering_line_does_not() -> None:
    motif = [(0, 60, 0.5), (0.5, 62, 0.5), (1, 64, 1.0), (2, 60, 1.0)]
    repeated = piece([(t + 4 * k, p, d) for k in range(4) for t, p, d in motif])
    rng = np.random.default_rng(0)
    wander = piece([(float(i), int(p), 1.0) for i, p in enumerate(rng.integers(48, 84, 16))])
    assert (motif_recurrence(repeated) or 0) > 0.6
    assert motif_recurrence(wander) == 0.0


def test_parallel_fifths_and_octaves_are_counted_per_hundred_chord_changes() -> None:
    # C E G C up a step to D F A D: bass and soprano move in octaves, bass and alto in fifths.
    parallel = piece([(0, p, 1) for p in (48, 52, 55, 60)] + [(1, p, 1) for p in (50, 53, 57, 62)])
    assert parallels_per_100(parallel) == pytest.approx(200.0)  # two parallels in one chord change
    # Contrary motion into the same chord: no parallels.
    contrary = piece([(0, p, 1) for p in (48, 55, 64, 72)] + [(1, p, 1) for p in (53, 53, 65, 69)])
    assert parallels_per_100(contrary) == 0.0
    assert parallels_per_100(piece(scale_tune(60))) is None  # no four-voice chords


def test_summary_rates_and_every_measure_is_defined() -> None:
    scores = [form_scores(piece(scale_tune(60, bars=8)))] * 2
    summary = summarise(scores, requested=(0, "major"))
    assert summary["requested_key"] == 1.0 and summary["pieces"] == 2
    assert set(DEFINITIONS) <= set(summary) | {"requested_key"}


def test_a_pickup_does_not_hide_the_downbeats() -> None:
    # One quarter-note pickup, then waltz bars: the bar lines fall a beat after the first note.
    pickup = [(0.0, 55, 1.0)] + [(t + 1.0, p, d) for t, p, d in waltz()]
    assert downbeat_accent(piece(pickup, (3, 4), bar_phase=2.0)) == 1.0
    assert downbeat_alignment(piece(pickup, (3, 4), bar_phase=2.0)) == pytest.approx(4 / 5)  # the pickup bar
    assert (downbeat_accent(piece(pickup, (3, 4))) or 0) < 0.5  # bar lines in the wrong place


def test_float_noise_in_onsets_does_not_move_a_note_into_the_previous_bar() -> None:
    noisy = [(t - 1e-4 if t % 3 == 0 and t else t, p, d) for t, p, d in waltz()]
    assert downbeat_alignment(piece(noisy, (3, 4))) == 1.0
    assert downbeat_accent(piece(noisy, (3, 4))) == 1.0


def test_a_set_is_like_the_real_pieces_only_when_neither_more_nor_less_repetitive_or_tonal() -> None:
    base = form_scores(piece(scale_tune(60)))
    real = [replace(base, motif_recurrence=r, tonic_ending=t)
            for r, t in [(0.0, True), (0.1, True), (0.2, False), (0.3, True), (0.4, False)]]  # IQR 0.1-0.3
    like = against_real([replace(base, motif_recurrence=0.28, tonic_ending=True)] * 4, real)
    assert like["motif_recurrence"]["within"] and like["motif_recurrence"]["real_iqr"] == [0.1, 0.3]
    assert like["tonic_ending"]["direction"] == "more"  # every piece against 60% of the real ones
    looped = against_real([replace(base, motif_recurrence=0.6)] * 4, real)["motif_recurrence"]
    assert (looped["within"], looped["direction"]) == (False, "more")
    aimless = against_real([replace(base, motif_recurrence=0.0)] * 4, real)["motif_recurrence"]
    assert (aimless["within"], aimless["direction"]) == (False, "less")
    assert "parallels_per_100" not in like  # not a share: it has its own target
