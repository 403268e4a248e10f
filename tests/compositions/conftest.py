from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from compositions.models import CompositionVersion


@pytest.fixture(autouse=True)
def _isolated_site(isolated_site: None) -> None:
    """Every test here runs against isolated media, inline tasks and the tiny model."""


@pytest.fixture
def busiest_style(tiny_model_path: Path) -> str:
    """The tiny model's style with the most notes per beat: 600 s of it at 300 BPM is out of reach."""
    from ml.model.config import read_model_info

    stats = read_model_info(tiny_model_path)["extra"]["stats"]
    return max(stats, key=lambda style: stats[style]["notes_per_beat"])


@pytest.fixture
def compose(user: User, style: str, settings: Any, django_capture_on_commit_callbacks: Callable
            ) -> Callable[..., CompositionVersion]:
    """A piece written the way the site writes it, scores on; its current version once every task ran."""
    from compositions.services.composing import composition_request
    from tests.conftest import current

    settings.SCORE_TIMEOUT_SECONDS = 60

    def make(**params: Any) -> CompositionVersion:
        with django_capture_on_commit_callbacks(execute=True):
            [row] = composition_request(user=user, params={"style": style, "seconds": 5, "seed": 2, **params})
        version = current(row)
        version.refresh_from_db()
        return version

    return make
