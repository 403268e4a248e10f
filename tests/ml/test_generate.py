from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import NoteSequence, notes_to_midi, scale_pitch_classes
from ml.generation.constraints import loop_completions
from ml.generation.generator import Generator
from ml.generation.piece import GeneratedPiece, apply_dynamics
from ml.generation.request import GenerationRequest


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


def test_the_key_holds_most_notes_and_the_range_every_note(generator: Generator) -> None:
    scale = scale_pitch_classes(6, "minor")  # F# minor: far from the tiny model's C major
    request = dict(style="beta", notes=200, mode="minor", seed=7, pitch_low=50, pitch_high=80, temperature=2.5,
                   variations=4)
    pieces = generator.generate(GenerationRequest(key="F#", **request))  # type: ignore[arg-type]
    pitches = np.concatenate([p.notes.pitch for p in pieces])
    assert len(pitches) > 400
    inside = np.mean([int(p) % 12 in scale for p in pitches])
    # The key makes other notes rarer without forbidding them: without it, the tiny model's own
    # C major comes through far more often.
    free = np.concatenate([p.notes.pitch for p in generator.generate(GenerationRequest(key="any", **request))])  # type: ignore[arg-type]
    assert inside >= 0.8 and inside > np.mean([int(p) % 12 in scale for p in free]) + 0.1
    assert pitches.min() >= 50 and pitches.max() <= 80


def test_length_is_whole_phrases_at_the_style_tempo_fitted_to_the_request(generator: Generator) -> None:
    for seconds, tempo, signature in ((12, 90.0, (4, 4)), (20, 150.0, (3, 4)), (15, 120.0, (6, 8))):
        # At a tempo asked for, the piece is whole phrases: within half a phrase of the length asked.
        piece = generator.generate(GenerationRequest(style="alpha", seconds=seconds, tempo_bpm=tempo, seed=3,
                                                     time_signature=signature))[0]
        seq = piece.notes
        assert piece.plan is not None
        bar_seconds = signature[0] * 4 / signature[1] * 60 / tempo
        phrase_bars = {round(p.bars / piece.plan.bar_beats) for p in piece.plan.phrases}
        ends = seq.start + seq.duration
        assert abs(ends.max() - seconds) <= max(phrase_bars) * bar_seconds / 2 + 1e-6
        bars = ends.max() / bar_seconds
        assert bars == pytest.approx(round(bars), abs=1e-6)  # a whole number of bars
        last = seq.start >= seq.start.max() - 1e-6
        assert np.allclose(ends[last], ends.max())  # the final chord sounds to the end
        assert seq.tempo_bpm == tempo
        # At the style's tempo, the tempo moves a little instead, and the length is as asked.
        fitted = generator.generate(GenerationRequest(style="alpha", seconds=seconds, seed=3,
                                                      time_signature=signature))[0].notes
        assert abs(float((fitted.start + fitted.duration).max()) - seconds) < 0.01
        assert abs(fitted.tempo_bpm / generator.default_tempo("alpha") - 1) <= 0.2


def test_a_length_in_notes_plans_about_that_many(generator: Generator) -> None:
    piece = generator.generate(GenerationRequest(style="alpha", notes=64, seed=3))[0]
    assert 32 <= len(piece.notes) <= 128


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
    # The continuation starts on the bar line after the primer: its last note starts on beat 9
    # (bar 3 of 4/4 at 120 BPM), so the continuation opens bar 4, at 6 s.
    assert piece.primer_end == pytest.approx(6.0)


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
    # The model's own contrast (a loud passage, accents) is kept around the chosen level.
    written = np.array([40.0, 40.0, 100.0, 100.0, 60.0])
    kept = apply_dynamics(written, np.arange(5.0), "soft")
    assert np.allclose(kept - kept.mean(), written - written.mean()) and kept.mean() == 50


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
    from ml.evaluation.mgeval import find_degenerate_loop

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
    calls: list[int] = []
    original = loop_completions

    def spy(history: list[int]) -> set[int]:
        calls.append(len(history))
        return original(history)

    monkeypatch.setattr("ml.generation.constraints.loop_completions", spy)
    request = GenerationRequest(style="alpha", notes=16, seed=3)
    Generator(tiny_model_path).generate(request)
    assert calls  # on by default: every pitch is checked
    calls.clear()
    Generator(tiny_model_path, off=("loop",)).generate(request)
    assert calls == []


def _phrase_notes(piece: GeneratedPiece, index: int) -> list[tuple[float, int, float]]:
    """(onset beats from the phrase's start, pitch, duration beats) of the notes starting in a phrase."""
    assert piece.plan is not None
    phrase = piece.plan.phrases[index]
    seq = piece.notes
    onset = np.round(seq.seconds_to_beats(seq.start), 4)
    duration = np.round(seq.duration * seq.tempo_bpm / 60, 4)
    inside = (onset >= phrase.start) & (onset < phrase.start + phrase.copy_until if phrase.copy_of is not None
                                        else onset < phrase.end)
    return [(float(o - phrase.start), int(p), float(d)) for o, p, d in zip(onset[inside], seq.pitch[inside],
                                                                           duration[inside])]


def test_a_repeat_in_the_form_is_the_same_music_again(generator: Generator) -> None:
    piece = generator.generate(GenerationRequest(style="alpha", seconds=32, tempo_bpm=120, form="AABB",
                                                 phrase_bars=4, seed=21))[0]
    assert piece.plan is not None and piece.plan.letters == "AABB"
    first_a, second_a = _phrase_notes(piece, 0), _phrase_notes(piece, 1)
    assert len(first_a) >= 4
    # The second A leads on to B: it is the first A up to its second ending (its last bar, new).
    ending = piece.plan.phrases[1].copy_until
    assert ending == 12.0
    assert [n for n in second_a if n[0] < ending] == [n for n in first_a if n[0] < ending]
    first_b, second_b = _phrase_notes(piece, 2), _phrase_notes(piece, 3)
    # The last B copies all but its ending (the last bar of a single line), which closes the piece V-I:
    # the note before the final tonic may be moved to a tone of the dominant, as a changed ending is.
    copied = [n for n in first_b if n[0] < piece.plan.phrases[3].copy_until]
    assert len(second_b) == len(copied) and second_b[:-1] == copied[:-1]
    (onset, pitch, duration), (onset_then, pitch_then, duration_then) = second_b[-1], copied[-1]
    assert onset == onset_then and duration <= duration_then  # held no further than the copy reaches
    tonic = piece.key[0]
    assert pitch == pitch_then or (pitch - tonic) % 12 in (2, 7, 11)
    form = piece.form()
    assert form is not None and [p["letter"] for p in form["phrases"]] == ["A", "A", "B", "B"]
    assert [p["varied"] for p in form["phrases"]] == [False, True, False, True]  # shown A A′ B B′
    assert form["phrases"][1]["start_s"] == pytest.approx(8.0)


def test_the_piece_closes_on_the_tonic_of_the_requested_key(generator: Generator) -> None:
    for key, mode, tonic in (("D", "minor", 2), ("Bb", "major", 10), ("F#", "major", 6)):
        for piece in generator.generate(GenerationRequest(style="beta", seconds=10, key=key, mode=mode, seed=4,
                                                          variations=2, ending="tonic")):
            seq = piece.notes
            last = seq.start >= seq.start.max() - 1e-6
            assert int(seq.pitch[last].min()) % 12 == tonic  # the tonic in the bass
            assert piece.key == (tonic, mode)
            # It opens in its key too: the first notes are tones of the tonic triad.
            first = seq.start <= seq.start.min() + 1e-6
            triad = {tonic, (tonic + (3 if mode == "minor" else 4)) % 12, (tonic + 7) % 12}
            assert {int(p) % 12 for p in seq.pitch[first]} <= triad


def test_the_metre_changes_the_music_not_only_the_header(generator: Generator) -> None:
    common = generator.generate(GenerationRequest(style="alpha", seconds=12, seed=8))[0].notes
    waltz = generator.generate(GenerationRequest(style="alpha", seconds=12, seed=8, time_signature=(3, 4)))[0].notes
    assert waltz.time_signature == (3, 4)
    assert len(common) != len(waltz) or not np.array_equal(common.pitch, waltz.pitch) or not np.allclose(
        common.start, waltz.start)


def test_the_voice_guard_keeps_consecutive_chords_free_of_parallel_fifths_and_octaves() -> None:
    from ml.generation.constraints import no_parallels as _no_parallels

    before, chord = [48, 55, 64], [50]  # C-G fifth in the lower voices; the bass moves up to D
    allowed = _no_parallels(before, chord)
    assert not allowed[57]  # D-A: parallel fifths
    assert allowed[55] and allowed[53]  # oblique or contrary motion
    octave = _no_parallels([48, 60], [50])
    assert not octave[62] and octave[59]
    assert _no_parallels([48, 55], [48]).all()  # the bass holds: nothing above it can move in parallel


def test_a_metre_the_style_never_learnt_is_written_in_the_notation_it_did_learn(tiny_model_path: Path) -> None:
    # The tiny styles learnt 4/4 only: 4/8 is the same bar in halved note values, written as 4/4 at
    # twice the tempo; 3/4 has no such twin among what they learnt and stays as it is.
    generator = Generator(tiny_model_path)
    generator.load()
    assert set(generator._stats("alpha")["metres"]) == {"4/4"}  # its training pieces
    asked = GenerationRequest(style="alpha", seconds=16, tempo_bpm=60, time_signature=(4, 8), form="AB",
                              phrase_bars=2, seed=5)
    assert generator.learnt_metre(asked) == ((4, 4), 2.0)
    assert generator.learnt_metre(GenerationRequest(style="alpha", seconds=16, time_signature=(3, 4))) == ((3, 4), 1.0)
    assert generator.learnt_metre(GenerationRequest(style="alpha", seconds=16, tempo_bpm=200,
                                                    time_signature=(4, 8))) == ((4, 8), 1.0)  # 400 BPM is no tempo

    piece = generator.generate(asked)[0]
    written = generator.generate(GenerationRequest(style="alpha", seconds=16, tempo_bpm=120, time_signature=(4, 4),
                                                   form="AB", phrase_bars=2, seed=5))[0]
    # The same sounds, notated as asked: 4/8 at 60 quarter notes a minute, bars of two quarter beats.
    np.testing.assert_allclose(piece.notes.start, written.notes.start)
    assert piece.notes.pitch.tolist() == written.notes.pitch.tolist()
    assert (piece.notes.time_signature, piece.notes.tempo_bpm) == ((4, 8), 60.0)
    assert piece.plan is not None and written.plan is not None and piece.plan.bar_beats == 2.0
    assert piece.form() == {**written.form(), "bar_beats": 2.0, "phrases": [  # type: ignore[dict-item]
        {**p, "start": p["start"] / 2, "end": p["end"] / 2, "cadence_at": p["cadence_at"] / 2}
        for p in written.form()["phrases"]]}  # type: ignore[index]
    midi = notes_to_midi(piece.notes)
    assert [(ts.numerator, ts.denominator) for ts in midi.time_signature_changes] == [(4, 8)]
    assert midi.get_tempo_changes()[1].tolist() == [60.0]


def test_a_metre_read_only_as_other_is_written_in_its_twin_where_the_style_learnt_the_twin_better(
        tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4/2 has no class of its own: the network reads it as "other", with 9/8, 6/4 and 3/1.
    generator = Generator(tiny_model_path)
    stats: dict[str, dict[str, object]] = {"metres": {"4/4": 310, "other": 86, "3/4": 221}}
    monkeypatch.setattr(generator, "_stats", lambda style: stats)
    half_notes = GenerationRequest(style="alpha", seconds=16, tempo_bpm=96, time_signature=(4, 2))
    assert generator.learnt_metre(half_notes) == ((4, 4), 0.5)  # folk: 4/4 learnt from more pieces
    stats["metres"] = {"other": 939, "4/4": 45, "3/2": 90}
    assert generator.learnt_metre(half_notes) == ((4, 2), 1.0)  # Renaissance music: its own 4/2
    assert generator.learnt_metre(replace(half_notes, time_signature=(9, 8))) == ((9, 8), 1.0)  # no twin by name
    stats["metres"] = {"4/4": 310, "other": 86, "3/2": 21}
    assert generator.learnt_metre(replace(half_notes, time_signature=(3, 2))) == ((3, 2), 1.0)  # learnt by name
    assert generator.learnt_metre(replace(half_notes, tempo_bpm=30)) == ((4, 2), 1.0)  # 15 BPM is no tempo
    # Written as 4/4 at half the quarter-note tempo, the piece is notated in 4/2 at the tempo asked for.
    stats["metres"] = {"4/4": 10, "other": 1}
    piece = generator.generate(replace(half_notes, seed=3))[0]
    assert (piece.notes.time_signature, piece.notes.tempo_bpm) == ((4, 2), 96.0)
    assert piece.plan is not None and piece.plan.bar_beats == 8.0


def test_the_loop_guard_sees_a_loop_that_would_run_on_into_a_copied_repeat() -> None:
    from ml.generation.constraints import loops_across as _loops_across

    # The repeat starts 55 52 55 52 55; after ... 52 55 52 55, a last 52 would make the figure
    # 52 55 sound five times in a row across the bar line, which neither side does alone.
    history, upcoming = [48, 59, 52, 55, 52], [55, 52, 55, 52, 55, 48]
    assert _loops_across(history, np.array([55]), upcoming).tolist() == []  # 55 then 55: the figure breaks
    assert _loops_across(history + [55], np.array([52, 59]), upcoming).tolist() == [52]
    # A loop inside the copied passage alone is the plan's repeat, not the note before it.
    assert _loops_across([48, 50], np.array([53]), [60] * 7).tolist() == []


def test_a_style_with_written_dynamics_gets_a_level_per_phrase_and_hairpins_between() -> None:
    from ml.generation.form import plan_form
    from ml.generation.piece import phrase_dynamics

    plan = plan_form("AABA", phrase_bars=2, total_bars=8, bar_beats=4.0)
    onsets = np.arange(0.0, 32.0, 1.0)
    levels = phrase_dynamics(plan, onsets, 14.0, np.random.default_rng(3))
    base = [float(levels[onsets == p.start][0]) for p in plan.phrases]  # each phrase's marking, where it starts
    assert abs(np.mean(base)) < 1e-9  # the piece's chosen level on average
    assert base[3] == base[0]  # A after B comes back at its level
    assert base[1] != base[0] and base[2] != base[0]  # A straight again is an echo; B has its own marking
    swell = [float(levels[onsets == p.start + 2][0]) - b for p, b in zip(plan.phrases, base)]
    assert all(s >= 0 for s in swell) and any(s > 1 for s in swell)  # each phrase swells towards its cadence
    last_bar_of_a2 = levels[(onsets >= 12) & (onsets < 16)]
    assert np.all(np.diff(last_bar_of_a2) * np.sign(base[2] - base[1]) >= 0)  # a hairpin into B
    assert not phrase_dynamics(plan, onsets, 0.0, np.random.default_rng(3)).any()


def test_a_phrase_is_about_sixteen_beats_whatever_the_bar(generator: Generator) -> None:
    bars = {}
    for signature in ((4, 4), (2, 4), (3, 8), (4, 2), (3, 4)):
        request = GenerationRequest(style="alpha", seconds=60, tempo_bpm=120, time_signature=signature)
        plan = generator.plan(request)
        bars[signature] = {round(p.bars / plan.bar_beats) for p in plan.phrases}
    assert bars == {(4, 4): {4}, (2, 4): {8}, (3, 8): {8}, (4, 2): {2}, (3, 4): {4}}
    assert generator.plan(GenerationRequest(style="alpha", seconds=60, tempo_bpm=120, time_signature=(2, 4),
                                            phrase_bars=3)).phrases[0].bars == 6.0  # as asked: 3 bars of 2 beats


def test_the_style_default_metre_is_drawn_from_the_style_and_kept_by_the_seed(generator: Generator) -> None:
    drawn = {generator.resolve(GenerationRequest(style="renaissance", seed=s)).time_signature for s in range(40)}
    assert (4, 2) in drawn and drawn <= {(4, 2), (3, 2), (4, 4), (2, 2)}
    again = [generator.resolve(GenerationRequest(style="folk", seed=9)).time_signature for _ in range(3)]
    assert len(set(again)) == 1
    assert generator.resolve(GenerationRequest(style="folk", seed=9, time_signature=(6, 8))).time_signature == (6, 8)


def test_a_repeat_with_a_new_ending_starts_that_ending_on_another_note(generator: Generator) -> None:
    checked = 0
    for seed in range(6):
        piece = generator.generate(GenerationRequest(style="alpha", seconds=40, tempo_bpm=120, seed=seed,
                                                     form="AABB", time_signature=(4, 4), temperature=0.3))[0]
        assert piece.plan is not None
        beats = np.round((piece.notes.start - piece.plan_start) * 2.0, 6)  # 120 BPM: two beats a second
        for phrase in piece.plan.phrases:
            if phrase.copy_of is None or phrase.copy_until >= phrase.bars:
                continue
            model = piece.plan.phrases[phrase.copy_of]
            was = set(piece.notes.pitch[beats == round(model.start + phrase.copy_until, 6)].tolist())
            now = set(piece.notes.pitch[beats == round(phrase.start + phrase.copy_until, 6)].tolist())
            if was and now:
                checked += 1
                assert min(now) not in was  # the lowest new note is not one its model had there
    assert checked >= 3


@pytest.mark.parametrize("metre, strong", [((4, 4), 2.0), ((3, 4), 3.0), ((6, 8), 3.0), ((2, 4), 2.0)])
def test_an_ornamented_return_keeps_its_models_strong_beats_and_writes_between_them(
        generator: Generator, metre: tuple[int, int], strong: float) -> None:
    from ml.generation.constraints import strong_beats

    bar = metre[0] * 4.0 / metre[1]
    assert strong_beats(bar, 1.5 if metre == (6, 8) else 4.0 / metre[1]) == strong
    changed = 0
    for seed in range(3):
        piece = generator.generate(GenerationRequest(style="alpha", seconds=3 * 4 * bar / 2, tempo_bpm=120, seed=seed,
                                                     form="ABA", phrase_bars=4, time_signature=metre))[0]
        assert piece.plan is not None and piece.plan.letters == "ABA"
        ret = piece.plan.phrases[2]
        assert ret.ornamented and ret.copy_of == 0
        first, again = _phrase_notes(piece, 0), _phrase_notes(piece, 2)
        on_strong = [(o, p) for o, p, _ in first if o < ret.copy_until - bar and abs(o % strong) < 1e-6]
        assert on_strong  # the bars before the close: its new ending leads to the final cadence
        # Every strong-beat note of the model comes back, at its place, with its pitch.
        assert set(on_strong) <= {(o, p) for o, p, _ in again}
        between = [(o, p) for o, p, _ in again if abs(o % strong) > 1e-6]
        # Between two kept notes, at most one note more than the model had there (a 600-s piece
        # stays within its notes).
        for beat in np.arange(0.0, ret.copy_until - strong, strong):
            def count(notes: list[tuple[float, int, float]], beat: float = beat) -> int:
                return sum(beat + 1e-6 < o < beat + strong - 1e-6 for o, _, _ in notes)
            if any(abs(o - beat - strong) < 1e-6 for o, _, _ in first):
                assert count(again) <= count(first) + 1
        changed += between != [(o, p) for o, p, _ in first if abs(o % strong) > 1e-6 and o < ret.copy_until]
    assert changed >= 2  # what lies between the strong beats is written anew
    form = piece.form()
    assert form is not None and [p["varied"] for p in form["phrases"]] == [False, False, True]


def test_generators_of_one_file_share_its_network_and_write_one_request_at_a_time(tiny_model_path: Path,
                                                                                  tmp_path: Path) -> None:
    import gc
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from ml.generation import generator as generation
    from ml.model.config import write_model_extra

    plain, without_loops = Generator(tiny_model_path), Generator(tiny_model_path, off=["loop"])
    plain.load()
    without_loops.load()
    assert plain._network is without_loops._network  # loaded and compiled once
    copy = tmp_path / "copy.keras"
    shutil.copy(tiny_model_path, copy)
    other = Generator(copy)
    other.load()
    assert other._network is not plain._network
    write_model_extra(copy, "note", {"written": "again"})  # the file changed: it is read again
    again = Generator(copy)
    again.load()
    assert again._network is not other._network and again._extra["note"] == {"written": "again"}
    # Requests through two Generators of one network at once write what each writes alone.
    requests = [GenerationRequest(style="alpha", notes=48, seed=seed, key="C", mode="major") for seed in (3, 4)]
    alone = [plain.generate(requests[0])[0].notes.pitch, without_loops.generate(requests[1])[0].notes.pitch]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda pair: pair[0].generate(pair[1])[0].notes.pitch,
                                 [(plain, requests[0]), (without_loops, requests[1])] * 3))
    for i, pitches in enumerate(together):
        np.testing.assert_array_equal(pitches, alone[i % 2])
    # A network that no Generator holds any more is let go.
    held = {key[0] for key in generation._NETWORKS.keys()}
    assert str(copy.resolve()) in held
    del other, again
    gc.collect()
    assert str(copy.resolve()) not in {key[0] for key in generation._NETWORKS.keys()}
