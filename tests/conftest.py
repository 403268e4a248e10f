"""Shared fixtures: users, compositions, a tiny trained model, and isolated media storage."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pretty_midi
import pytest
from django.contrib.auth.models import User
from django.test import Client

from compositions.models import Composition

PASSWORD = "a-Long-enough-pa55word"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of the real architecture, trained once per test run (seconds)."""
    from tests.tiny import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def isolated_site(settings: Any, tmp_path: Path, tiny_model_path: Path) -> None:
    """Site tests write media to their own folder, run tasks inline and compose with the tiny model.

    Autoused by the conftest of each site test package. tests/ml does not use it: the ml library
    never imports Django (this conftest does, so pytest-django still sets Django up for them).
    """
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.Q_SYNC = True
    settings.MUSIC_MODEL_PATH = tiny_model_path
    settings.SOUNDFONT_PATH = ""


@pytest.fixture
def queued_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Record the tasks services queue, instead of running them."""
    from compositions.services import queueing

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(queueing, "async_task", lambda func, *args, **kwargs: calls.append((func, *args)))
    return calls


@pytest.fixture
def style(tiny_model_path: Path) -> str:
    """A style the tiny model knows."""
    from ml.model.config import read_model_info

    return read_model_info(tiny_model_path)["config"].styles[0]


@pytest.fixture
def user_factory(db: None) -> Callable[..., User]:
    counter = iter(range(1, 10_000))

    def make(username: str | None = None) -> User:
        return User.objects.create_user(username=username or f"user{next(counter)}", password=PASSWORD)

    return make


@pytest.fixture
def user(user_factory: Callable[..., User]) -> User:
    return user_factory("alice")


@pytest.fixture
def other_user(user_factory: Callable[..., User]) -> User:
    return user_factory("mallory")


@pytest.fixture
def client_for(db: None) -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def user_client(client_for: Callable[[User], Client], user: User) -> Client:
    return client_for(user)


@pytest.fixture
def composition_factory(db: None, style: str) -> Callable[..., Composition]:
    """Composition rows in any state, without running the generator."""

    def make(user: User, **fields: Any) -> Composition:
        """Request controls (style, seconds, key, ...) go into `params`; other fields are columns."""
        from ml.generation.request import CONTROLS, GenerationRequest

        controls = {name: fields.pop(name) for name in list(fields) if name in CONTROLS}
        params = GenerationRequest.from_dict({"style": style, "seconds": 5.0, **controls}).to_dict()
        return Composition.objects.create(user=user, style=params["style"], params=params, **fields)

    return make


def midi_bytes(pitches: list[int], *, step: float = 0.5, program: int = 0) -> bytes:
    """A one-track MIDI file with one note per pitch, `step` seconds apart."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    instrument = pretty_midi.Instrument(program=program)
    for i, pitch in enumerate(pitches):
        instrument.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=i * step, end=(i + 1) * step))
    pm.instruments.append(instrument)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()
