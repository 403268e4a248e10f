"""manage.py import_dataset / train / evaluate hand their arguments to the ml command lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from ml.data.datasets import NoteDataset
from tests.ml.conftest import write_midi


def test_import_dataset_writes_a_dataset_from_a_midi_folder(tmp_path: Path) -> None:
    folder = tmp_path / "midi"
    folder.mkdir()
    for i in range(3):
        write_midi(folder / f"tune{i}.mid", [(60 + k, k * 0.5, k * 0.5 + 0.5) for k in range(10)])
    (folder / "readme.txt").write_text("not music")
    call_command("import_dataset", "folder", str(folder), "--style", "reels", "--out", str(tmp_path / "d.npz"),
                 "--workers", "1")
    dataset = NoteDataset.load(tmp_path / "d.npz")
    assert dataset.styles == ["reels"] and dataset.pieces == 3


def test_import_dataset_exits_with_status_2_on_a_folder_that_is_not_maestro(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        call_command("import_dataset", "maestro", str(tmp_path), "--out", str(tmp_path / "d.npz"))
    assert exc.value.code == 2
    assert not (tmp_path / "d.npz").exists()
