"""Uploaded zips of MIDI files: only acceptable MIDI files come out, and only inside the target."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ml.data.archives import ArchiveError, ZipLimits, extract_midi_zip
from tests.ml.hostile_midi import hostile_files, ordinary


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_midi_files_are_extracted_and_everything_else_is_skipped_with_a_reason(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "set.zip", {
        "tunes/a.mid": ordinary(), "tunes/b.MIDI": ordinary(), "readme.txt": b"hello",
        "../../escape.mid": ordinary(), "/etc/passwd.mid": ordinary(),
        "years.mid": hostile_files()["45 bytes that claim years"][0],
    })
    report = extract_midi_zip(archive, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(report.extracted)
    assert len(report.extracted) == 2
    assert report.skipped["not a MIDI file"] == 1 and report.skipped["path outside the archive"] == 2
    assert any(reason.startswith("refused: The MIDI file lasts") for reason in report.skipped)
    assert not (tmp_path / "escape.mid").exists() and all(p.parent == tmp_path / "out"
                                                            for p in (tmp_path / "out").iterdir())


def test_a_zip_bomb_member_is_skipped_and_a_huge_total_is_refused(tmp_path: Path) -> None:
    bomb = _zip(tmp_path / "bomb.zip", {"bomb.mid": b"MThd" + b"\0" * (3 * 1024 * 1024)})
    assert extract_midi_zip(bomb, tmp_path / "out").skipped["compressed too well (a zip bomb?)"] == 1
    many = _zip(tmp_path / "many.zip", {f"{i}.mid": ordinary() for i in range(30)}, zipfile.ZIP_STORED)
    with pytest.raises(ArchiveError, match="at most 10"):
        extract_midi_zip(many, tmp_path / "out2", ZipLimits(max_members=10))
    with pytest.raises(ArchiveError, match="unpacks to more than"):
        extract_midi_zip(many, tmp_path / "out3", ZipLimits(max_total_bytes=len(ordinary()) * 5))


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"<html>")
    with pytest.raises(ArchiveError, match="not a zip"):
        extract_midi_zip(tmp_path / "x.zip", tmp_path / "out")
