"""Workers load and compile the model as they start (django-q2's post_spawn), after the fork."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django_q.signals import post_spawn

from compositions import runtime

pytestmark = pytest.mark.django_db


def test_a_spawned_worker_loads_the_model_before_its_first_task(settings: Any) -> None:
    settings.Q_SYNC = False  # a real cluster: sync mode runs the worker loop per task and skips this
    runtime._generators.clear()
    post_spawn.send(sender="django_q", proc_name="Process-1")
    generator = runtime.get_generator()
    assert generator._model is not None  # loaded, and its one-variation step compiled
    assert 1 in generator._steps


def test_warm_up_can_be_switched_off(settings: Any) -> None:
    settings.Q_SYNC = False
    settings.Q_WARMUP = False
    runtime._generators.clear()
    post_spawn.send(sender="django_q", proc_name="Process-1")
    assert runtime.get_generator()._model is None


def test_a_missing_model_does_not_stop_the_worker_from_starting(settings: Any, tmp_path: Path) -> None:
    settings.Q_SYNC = False
    settings.MUSIC_MODEL_PATH = tmp_path / "gone.keras"
    runtime._generators.clear()
    post_spawn.send(sender="django_q", proc_name="Process-1")  # logs, does not raise


def test_sync_mode_does_not_warm_up_for_every_task(settings: Any) -> None:
    runtime._generators.clear()
    post_spawn.send(sender="django_q", proc_name="Process-1")
    assert runtime.get_generator()._model is None
