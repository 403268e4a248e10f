"""Workers load and compile the model as they start (django-q2's post_spawn), after the fork.

What the site's state explains (no database for a moment, no model file, a broken one) is logged
and the worker starts; a bug is not swallowed: the worker process dies with it, loudly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django_q.signals import post_spawn

from compositions import runtime, worker

pytestmark = pytest.mark.django_db


def _spawn() -> None:
    post_spawn.send(sender="django_q", proc_name="Process-1")


@pytest.fixture
def cluster(settings: Any) -> None:
    """A real cluster's worker: sync mode runs the worker loop per task and skips the warm-up."""
    settings.Q_SYNC = False
    runtime._generators.clear()


def test_a_spawned_worker_loads_the_model_before_its_first_task(cluster: None) -> None:
    _spawn()
    generator = runtime.get_generator()
    assert generator._model is not None  # loaded, and its one-variation step compiled
    assert 1 in generator._steps


def test_warm_up_can_be_switched_off(cluster: None, settings: Any) -> None:
    settings.Q_WARMUP = False
    _spawn()
    assert runtime.get_generator()._model is None


@pytest.mark.parametrize(("model_file", "reason"), [
    (None, "The music model file is missing"), (b"not a keras archive", "The model file is broken"),
], ids=["missing", "broken"])
def test_a_missing_or_broken_model_is_logged_and_the_worker_starts_anyway(
        cluster: None, settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        model_file: bytes | None, reason: str) -> None:
    path = tmp_path / "model.keras"
    if model_file is not None:
        path.write_bytes(model_file)
    settings.MUSIC_MODEL_PATH = path
    with caplog.at_level(logging.WARNING, logger="compositions.worker"):
        _spawn()  # returns: the worker goes on to take tasks, which fail with the same reason
    [record] = [r for r in caplog.records if r.name == "compositions.worker"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"Worker started without the music model: {reason}")


def test_a_database_that_does_not_answer_at_start_is_logged_and_the_model_still_loads(
        cluster: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def unreachable() -> None:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(worker, "composition_reconcile", unreachable)
    with caplog.at_level(logging.WARNING, logger="compositions.worker"):
        _spawn()
    assert "Could not reconcile compositions at worker start" in caplog.text
    assert runtime.get_generator()._model is not None


def test_a_bug_at_worker_start_is_not_swallowed(cluster: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug() -> None:
        raise TypeError("unsupported operand")

    monkeypatch.setattr(worker, "composition_reconcile", bug)
    with pytest.raises(TypeError, match="unsupported operand"):
        _spawn()


def test_a_bug_while_compiling_the_loaded_model_is_not_swallowed(
        cluster: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml.generation.generator import Generator

    def bug(self: Generator) -> None:
        raise IndexError("list index out of range")

    monkeypatch.setattr(Generator, "warm_up", bug)
    with pytest.raises(IndexError):
        _spawn()


def test_sync_mode_does_not_warm_up_for_every_task(settings: Any) -> None:
    runtime._generators.clear()
    _spawn()
    assert runtime.get_generator()._model is None
