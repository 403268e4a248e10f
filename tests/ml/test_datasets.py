from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ml.datasets import SPLITS, NoteDataset, corpus_jobs, import_maestro, import_midi_folder, score_to_notes, split_of
from ml.notes import NoteSequence
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
