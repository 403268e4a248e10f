"""verify_media finds rows without their files and files without a row, and repairs both."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from pydub import AudioSegment

from compositions import tasks
from compositions.models import Composition


def _verify(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_media", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_verify_media_reports_and_repairs_lost_and_unnamed_files(
        user: User, composition_factory: Callable[..., Composition], settings: Any) -> None:
    piece, waiting = composition_factory(user), composition_factory(user)
    tasks.composition_generate(piece.id)
    piece.refresh_from_db()
    assert _verify() == (0, "0 missing, 0 orphaned\n")

    Path(piece.mp3_file.path).unlink()
    Composition.objects.filter(id=waiting.id).update(primer_file="primers/gone.mid")
    stray = default_storage.save("mp3/stray.mp3", ContentFile(b"ID3"))
    code, out = _verify()
    assert code == 1
    assert f"missing: composition {piece.id}: {piece.mp3_file.name}" in out
    assert f"missing: composition {waiting.id}: primers/gone.mid" in out
    assert f"orphan: {stray}" in out

    code, out = _verify("--repair")
    assert "1 rendered again, 1 failed, 1 moved" in out
    piece.refresh_from_db()
    waiting.refresh_from_db()
    assert AudioSegment.from_file(piece.mp3_file.path, format="mp3").duration_seconds > 4
    assert waiting.status == Composition.Status.FAILED and "lost" in waiting.error
    assert not default_storage.exists(stray) and default_storage.exists(f"orphans/{stray}")
    assert _verify() == (0, "0 missing, 0 orphaned\n")
