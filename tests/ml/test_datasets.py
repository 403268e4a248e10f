from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ml.data.datasets import (
    SPLITS,
    NoteDataset,
    corpus_jobs,
    import_maestro,
    import_midi_folder,
    score_to_notes,
    split_of,
)
from ml.data.notes import NoteSequence
from tests.ml.conftest import write_midi


def scale(start: float = 0.0, base: int = 60, n: int = 12) -> list[tuple[int, float, float]]:
    return [(base + i, start + i * 0.25, start + (i + 1) * 0.25) for i in range(n)]


def test_split_is_by_piece_deterministic_and_leaks_nothing(tmp_path: Path) -> None:
    for i in range(30):
        write_midi(tmp_path / f"piece{i:02d}.mid", scale(base=48 + i))
    dataset, report = import_midi_folder(tmp_path, "jazz", workers=1)
    assert report.imported == 30
    again, _ = import_midi_folder(tmp_path, "jazz", workers=1)
    assert dataset.piece_split.tolist() == again.piece_split.tolist()
    names = {split: set(dataset.piece_name[dataset.indices(split)]) for split in SPLITS}
    assert not (names["train"] & names["validation"]) and not (names["train"] & names["test"])
    assert not (names["validation"] & names["test"])
    assert sum(len(v) for v in names.values()) == 30
    # Every note belongs to exactly one piece, so windows built per piece never cross splits.
    assert dataset.offsets[-1] == len(dataset.pitch) == 30 * 12
    assert [split_of("a/b.mid")] * 3 == [split_of("a/b.mid") for _ in range(3)]


def test_bad_files_are_skipped_and_counted_by_reason(tmp_path: Path) -> None:
    write_midi(tmp_path / "good.mid", scale())
    write_midi(tmp_path / "drums.mid", scale(), drums=True)
    write_midi(tmp_path / "empty.mid", [])
    (tmp_path / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x05")
    (tmp_path / "fake.mid").write_bytes(b"just text")
    (tmp_path / "notes.txt").write_text("not music")
    dataset, report = import_midi_folder(tmp_path, "test", workers=1)
    assert report.imported == 1 and dataset.pieces == 1
    assert report.skipped == {"drums only": 1, "empty": 1, "corrupt": 1, "not MIDI": 2}
    assert "2 not MIDI" in report.summary()


def test_maestro_importer_keeps_its_own_split(tmp_path: Path) -> None:
    rows = [("2004", "train"), ("2004", "validation"), ("2006", "test"), ("2006", "train")]
    with (tmp_path / "maestro-v3.0.0.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["canonical_composer", "canonical_title", "split", "year", "midi_filename",
                         "audio_filename", "duration"])
        for i, (year, split) in enumerate(rows):
            (tmp_path / year).mkdir(exist_ok=True)
            name = f"{year}/MIDI-Unprocessed_{i}.midi"
            write_midi(tmp_path / name, scale(base=50 + i))
            writer.writerow(["Chopin", f"Etude {i}", split, year, name, name.replace(".midi", ".wav"), 3.0])
        writer.writerow(["Liszt", "Missing", "train", "2008", "2008/gone.midi", "", 1.0])
    dataset, report = import_maestro(tmp_path, workers=1)
    assert dataset.styles == ["piano"]
    by_name = {Path(str(n)).name: SPLITS[s] for n, s in zip(dataset.piece_name, dataset.piece_split)}
    assert by_name == {"MIDI-Unprocessed_0.midi": "train", "MIDI-Unprocessed_1.midi": "validation",
                       "MIDI-Unprocessed_2.midi": "test", "MIDI-Unprocessed_3.midi": "train"}
    assert report.skipped["missing file"] == 1


def test_maestro_importer_refuses_a_folder_without_its_csv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="maestro"):
        import_maestro(tmp_path)


def test_dataset_cache_round_trips_without_pickle(tmp_path: Path) -> None:
    for i in range(5):
        write_midi(tmp_path / f"p{i}.mid", scale(base=55 + i), tempo=90)
    dataset, _ = import_midi_folder(tmp_path, "folk", workers=1)
    dataset.save(tmp_path / "cache.npz")
    loaded = NoteDataset.load(tmp_path / "cache.npz")
    assert loaded.styles == ["folk"]
    np.testing.assert_array_equal(loaded.pitch, dataset.pitch)
    np.testing.assert_allclose(loaded.step_beats[1:12], 0.375, atol=5e-3)  # 0.25 s at 90 BPM, tick-rounded
    with np.load(tmp_path / "cache.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


def test_corpus_styles_find_pieces_and_a_chorale_parses_with_its_four_voices() -> None:
    jobs = corpus_jobs(["chorale"], max_pieces_per_style=5)
    assert len(jobs) == 5 and all(style == "chorale" for _, _, style in jobs)
    seq = score_to_notes(jobs[0][0], jobs[0][1], default_tempo=72.0)
    assert len(seq) > 50
    assert (seq.step == 0).mean() > 0.3  # four voices: most onsets are chords
    assert seq.tempo_bpm > 0


def test_pieces_keep_tempo_changes_time_signatures_and_chord_labels() -> None:
    # A C major chord for two seconds at 60 BPM, then a melody at 120 BPM in 3/4.
    seq = NoteSequence.from_notes(start=np.array([0.0, 0.0, 0.0, 2.0, 2.5, 3.0]),
                                  pitch=np.array([60, 64, 67, 72, 74, 76]),
                                  duration=np.array([2.0, 2.0, 2.0, 0.5, 0.5, 0.5]), velocity=np.full(6, 80),
                                  tempo_bpm=60.0, tempo_changes=[(0.0, 60.0), (2.0, 120.0)],
                                  time_signatures=[(0.0, 4, 4), (2.0, 3, 4)])
    dataset = NoteDataset.from_pieces(["test"], [("p", "test", seq, 0)])
    piece = dataset.piece(0)
    assert piece.tempo_changes == [(0.0, 60.0), (2.0, 120.0)]
    assert piece.time_signatures == [(0.0, 4, 4), (2.0, 3, 4)]
    # Two seconds at 60 BPM are two beats; then half a second at 120 BPM is one beat.
    np.testing.assert_allclose(dataset.step_beats, [0, 0, 0, 2, 1, 1], atol=1e-6)
    assert dataset.chords(0)[:3] == ["C major triad"] * 3
    assert dataset.chords(0)[3] is None


def _melody(seed: int, n: int = 60) -> np.ndarray:
    return 60 + np.random.default_rng(seed).integers(-7, 8, n)


def _piece(top: np.ndarray, bass: np.ndarray | None = None) -> NoteSequence:
    onsets = np.arange(len(top), dtype=float) * 0.5
    if bass is None:
        return NoteSequence.from_notes(onsets, top, np.full(len(top), 0.5), np.full(len(top), 80))
    return NoteSequence.from_notes(np.concatenate([onsets, onsets]), np.concatenate([top, bass]),
                                   np.full(2 * len(top), 0.5), np.full(2 * len(top), 80))


def test_content_groups_drop_copies_and_keep_reharmonisations_in_one_split() -> None:
    from ml.data.datasets import content_groups

    tune = _melody(1)
    pieces = {
        "a-tune.krn": _piece(tune, tune - 24),
        "b-same-tune.mxl": _piece(tune + 2, tune - 22),  # the same music, transposed: a copy
        "c-reharmonised": _piece(tune, _melody(7) - 24),  # the melody again, another bass
        "d-other-tune": _piece(_melody(2), _melody(3) - 24),
    }
    names = list(pieces)
    groups, duplicate = content_groups(names, list(pieces.values()))
    assert duplicate == [False, True, False, False]
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_a_long_shared_passage_puts_two_pieces_in_one_group() -> None:
    from ml.data.datasets import content_groups

    passage = _melody(4, 90)
    first = _piece(np.concatenate([_melody(5, 400), passage]))
    second = _piece(np.concatenate([passage, _melody(6, 400)]))
    groups, duplicate = content_groups(["first", "second"], [first, second])
    assert groups[0] == groups[1] and duplicate == [False, False]


def test_a_pickup_bar_puts_the_first_notes_late_in_the_bar(tmp_path: Path) -> None:
    score = tmp_path / "pickup.abc"
    score.write_text("X:1\nT:Pickup\nM:3/4\nL:1/4\nK:C\nG|c d e|f2 e|d3|]\n")
    seq = score_to_notes(str(score), 1, default_tempo=90.0)
    assert seq.bar_phase == pytest.approx(2.0)
    position, bar, length = seq.bar_positions()
    assert position[:4].tolist() == [2.0, 0.0, 1.0, 2.0]
    assert bar[:2].tolist() == [0, 1] and set(length.tolist()) == {3.0}


def test_the_well_tempered_prelude_is_not_a_chorale() -> None:
    names = [Path(path).name for path, _, _ in corpus_jobs(["chorale"])]
    assert names and not any(name.startswith(("bwv846", "bwv1080")) for name in names)


def test_repeat_signs_and_second_endings_are_written_out_as_the_tune_is_played(tmp_path: Path) -> None:
    # |: C D E F |1 G4 :|2 c4 || then A B once: played C D E F G, C D E F c, A B.
    score = tmp_path / "repeats.abc"
    score.write_text("X:1\nT:Repeats\nM:4/4\nL:1/4\nK:C\n|:CDEF|1G4:|2c4||AB2z|]\n")
    seq = score_to_notes(str(score), 1, default_tempo=120.0)
    assert seq.pitch.tolist() == [60, 62, 64, 65, 67, 60, 62, 64, 65, 72, 69, 71]
    position, bar, _ = seq.bar_positions()
    assert bar.tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 4, 4]
    # A score without repeat signs is read as written.
    plain = tmp_path / "plain.abc"
    plain.write_text("X:1\nT:Plain\nM:4/4\nL:1/4\nK:C\nCDEF|G4|]\n")
    assert score_to_notes(str(plain), 1, default_tempo=120.0).pitch.tolist() == [60, 62, 64, 65, 67]
