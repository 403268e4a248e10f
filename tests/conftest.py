"""Shared fixtures: users, compositions, a tiny trained model, and isolated media storage."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pretty_midi
import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from compositions.models import Composition, CompositionVersion

PASSWORD = "a-Long-enough-pa55word"

_multi_host: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember how the multi-host tests went, to say so at the end of the run (CI's log shows it)."""
    if "multi_host" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        why = f" ({report.longrepr[2]})" if report.skipped and isinstance(report.longrepr, tuple) else ""
        _multi_host.append(f"{report.nodeid.split('::')[-1]}: {report.outcome} in {report.duration:.0f} s{why}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _multi_host:
        terminalreporter.section("multi-host test (web and worker hosts in network namespaces)")
        for line in _multi_host:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of the real architecture, trained once per test run (seconds)."""
    from tests.tiny import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def old_tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that reads neither chords nor what follows a gap, as the first models did (one epoch)."""
    from tests.tiny import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("old-tiny-model"), epochs=1, reads=False)


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
    settings.SCORE_TIMEOUT_SECONDS = 0  # engraving takes a child process per piece: the score tests turn it on


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


# A piece's own columns; everything else a factory is given belongs to its version.
PIECE_FIELDS = ("title", "is_favourite", "play_count", "visibility", "share_token", "hidden", "batch_id",
                "variation_index")


def _give_files(version: CompositionVersion) -> None:
    version.mp3_file.save("piece.mp3", ContentFile(b"ID3fake-mp3"), save=False)
    version.midi_file.save("piece.mid", ContentFile(midi_bytes([60, 64, 67])), save=False)
    version.save()


@pytest.fixture
def composition_factory(db: None, style: str) -> Callable[..., Composition]:
    """Pieces in any state, each with its first version, without running the generator."""

    def make(user: User, *, files: bool = False, **fields: Any) -> Composition:
        """Request controls (style, seconds, key, ...) go into the version's `params`; the piece's own
        columns (title, visibility, ...) onto the piece; the rest (status, progress, notes_json, ...)
        onto its version 1. With `files`, the version gets a small MP3 and MIDI file."""
        from ml.generation.request import CONTROLS, GenerationRequest

        controls = {name: fields.pop(name) for name in list(fields) if name in CONTROLS}
        params = GenerationRequest.from_dict({"style": style, "seconds": 5.0, **controls}).to_dict()
        own = {name: fields.pop(name) for name in list(fields) if name in PIECE_FIELDS}
        composition = Composition.objects.create(user=user, style=params["style"], **own)
        version = CompositionVersion.objects.create(composition=composition, number=1, params=params,
                                                    batch_id=composition.batch_id, **fields)
        if files:
            _give_files(version)
        composition.current_version = version
        composition.save(update_fields=["current_version"])
        return composition

    return make


@pytest.fixture
def version_factory(db: None) -> Callable[..., CompositionVersion]:
    """A piece's next version (done by default), made current with `current=True`."""

    def make(composition: Composition, *, files: bool = True, current: bool = False,
             **fields: Any) -> CompositionVersion:
        number = composition.versions.count() + 1
        base = composition.versions.order_by("number").last()
        fields = {"kind": CompositionVersion.Kind.CONTINUE, "change": f"continued from version {number - 1}",
                  "status": CompositionVersion.Status.DONE, "params": base.params if base else {}, **fields}
        version = CompositionVersion.objects.create(composition=composition, number=number, source=base, **fields)
        if files:
            _give_files(version)
        if current:
            Composition.objects.filter(id=composition.id).update(current_version=version)
            composition.refresh_from_db()
        return version

    return make


def current(composition: Composition) -> CompositionVersion:
    """The piece's current version, as the database has it now."""
    composition.refresh_from_db()
    assert composition.current_version is not None
    return composition.current_version


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
