from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_site(isolated_site: None) -> None:
    """Every test here runs against isolated media, inline tasks and the tiny model."""
