from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_site(isolated_site: None) -> None:
    """Every test here runs against isolated media, inline tasks and the tiny model."""


@pytest.fixture
def busiest_style(tiny_model_path: Path) -> str:
    """The tiny model's style with the most notes per beat: 600 s of it at 300 BPM is out of reach."""
    from ml.model.config import read_model_info

    stats = read_model_info(tiny_model_path)["extra"]["stats"]
    return max(stats, key=lambda style: stats[style]["notes_per_beat"])
