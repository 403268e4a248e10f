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
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from pydub import AudioSegment

from compositions import tasks
from compositions.models import Composition, CompositionVersion
from compositions.services.composing import primer_upload
from tests.conftest import current, midi_bytes


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
    tasks.composition_version_generate(current(piece).id)
    version = current(piece)
    kept = primer_upload(user=user, upload=SimpleUploadedFile("kept.mid", midi_bytes([60, 62, 64])))
    assert _verify() == (0, "0 missing, 0 orphaned\n")  # an uploaded primer is named by its row

    Path(version.mp3_file.path).unlink()
    CompositionVersion.objects.filter(id=current(waiting).id).update(primer_file="primers/gone.mid")
    stray = default_storage.save("mp3/stray.mp3", ContentFile(b"ID3"))
    code, out = _verify()
    assert code == 1
    assert f"missing: composition {piece.id} version 1: {version.mp3_file.name}" in out
    assert f"missing: composition {waiting.id} version 1: primers/gone.mid" in out
    assert f"orphan: {stray}" in out

    code, out = _verify("--repair")
    assert "1 rendered again, 1 failed, 1 moved" in out
    version, lost = current(piece), current(waiting)
    assert AudioSegment.from_file(version.mp3_file.path, format="mp3").duration_seconds > 4
    assert lost.status == CompositionVersion.Status.FAILED and "lost" in lost.error
    assert default_storage.exists(kept.file.name)
    assert not default_storage.exists(stray) and default_storage.exists(f"orphans/{stray}")
    assert _verify() == (0, "0 missing, 0 orphaned\n")
